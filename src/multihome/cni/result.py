"""CNI results in every spec version, and the conversions between them.

A delegate answers in the version its configuration names, the runtime wants
the version it asked for, and the Multus shim API speaks 1.0.0.  multihome
keeps one model of a result (the richest one, 1.1.0's) and converts at the
edges exactly as libcni does (containernetworking/cni ``pkg/types/020``,
``040``, ``100`` and ``internal/convert.go``): the same fields survive, the
same fields are lost, and the wire form has the keys Go's marshaller writes.
A runtime reading multihome's answer therefore reads what it would read from
a Go plugin.

The versions fall into three wire forms:

* 0.1.0, 0.2.0: ``ip4``/``ip6`` objects, one address per family, routes
  inside them; no interfaces.
* 0.3.0, 0.3.1, 0.4.0: ``interfaces`` (name, mac, sandbox), ``ips`` with a
  ``version`` of "4" or "6", ``routes``.
* 1.0.0, 1.1.0: no ``version`` in ``ips``; interfaces may carry mtu,
  socketPath and pciID.  libcni uses one Go type for both versions, so
  converting between them loses nothing.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn

from . import version as versions
from .errors import CNIError, Code

_Form = Literal["020", "040", "100"]
_FORMS: dict[str, _Form] = {
    "0.1.0": "020",
    "0.2.0": "020",
    "0.3.0": "040",
    "0.3.1": "040",
    "0.4.0": "040",
    "1.0.0": "100",
    "1.1.0": "100",
}

# Go decodes these fields into `int`: anything outside int64 fails to decode.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

log = logging.getLogger(__name__)


def _family_of(address: str) -> int:
    # Addresses are kept in Go's printed form, where only IPv6 has a colon.
    return 6 if ":" in address else 4


@dataclass(frozen=True)
class Interface:
    """An interface a plugin created or configured (``sandbox`` set: inside the container)."""

    name: str
    mac: str = ""
    mtu: int | None = None
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@dataclass(frozen=True)
class IPConfig:
    """An address with its prefix length, e.g. ``10.1.1.2/24`` or ``fd00::2/64``."""

    address: str
    gateway: str = ""
    #: Index into `Result.interfaces`; None when the plugin did not say.
    interface: int | None = None

    @property
    def family(self) -> int:
        """4 or 6."""
        return _family_of(self.address)


@dataclass(frozen=True)
class Route:
    """A route; ``dst`` keeps its host bits as written (``192.168.0.5/16``), as libcni does."""

    dst: str
    gw: str = ""
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None

    @property
    def family(self) -> int:
        """4 or 6, the family of the destination."""
        return _family_of(self.dst)


@dataclass(frozen=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: only the members that are set."""
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class Result:
    """A CNI result; `cni_version` is the version it is in (and is written as by default)."""

    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    @classmethod
    def parse(cls, data: str | bytes | Mapping[str, Any]) -> Result:
        """A result in any version's wire form.

        Tolerant where libcni's JSON decoding is: unknown keys, and keys that
        the version does not have, are ignored; a missing or empty
        ``cniVersion`` means 0.1.0 (``create.DecodeVersion``).  A value of the
        wrong type or an address that is not an address is error 6 naming the
        field; a version multihome does not know is error 1.
        """
        obj = _decode(data) if isinstance(data, str | bytes | bytearray) else data
        if not isinstance(obj, Mapping):
            _invalid("the result", obj, "a JSON object")
        raw_version = obj.get("cniVersion")
        if raw_version is not None and not isinstance(raw_version, str):
            _invalid("cniVersion", raw_version, f"a string, one of {', '.join(versions.ALL)}")
        # libcni's create.DecodeVersion: a result without a version is a 0.1.0 one.
        cni_version = versions.check_supported(raw_version or "0.1.0", "result cniVersion")
        form = _FORMS[cni_version]
        dns = _parse_dns(obj.get("dns"))
        if form == "020":
            ips: list[IPConfig] = []
            routes: list[Route] = []
            for key in ("ip4", "ip6"):
                ipc = _obj(obj.get(key), key)
                if ipc is None:
                    continue
                gateway = _ip(ipc.get("gateway"), f"{key}.gateway")
                if ipc.get("ip") is None:
                    _dropped(key, "ip", ipc)
                else:
                    ips.append(IPConfig(_cidr(ipc.get("ip"), f"{key}.ip"), gateway))
                routes.extend(_parse_routes(ipc.get("routes"), f"{key}.routes"))
            return cls(cni_version, (), tuple(ips), tuple(routes), dns)
        interfaces = tuple(
            _parse_interface(item, f"interfaces[{i}]", form)
            for i, item in enumerate(_list(obj.get("interfaces"), "interfaces"))
        )
        parsed_ips = tuple(
            ip
            for i, item in enumerate(_list(obj.get("ips"), "ips"))
            if (ip := _parse_ipconfig(item, f"ips[{i}]", form)) is not None
        )
        return cls(
            cni_version, interfaces, parsed_ips, _parse_routes(obj.get("routes"), "routes"), dns
        )

    def convert(self, version: str) -> Result:
        """This result as a result of ``version`` holds it, losing what libcni loses.

        Going to 0.1.0/0.2.0 from a later version keeps the first IPv4 and the
        first IPv6 address, the routes of a family that kept an address (only
        their dst and gw), and no interfaces; a result without any address
        cannot go there (error 1), as in libcni's ``convertTo02x``.
        """
        versions.check_supported(version)
        versions.check_supported(self.cni_version)
        if version == self.cni_version:
            return self
        source, target = _FORMS[self.cni_version], _FORMS[version]
        if target == "020" and source != "020":
            return self._down_to_020(version)
        return replace(self._held_by(source)._held_by(target), cni_version=version)

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """The wire form of ``version`` (default: the result's own), keys as Go writes them."""
        result = self.convert(version) if version else self
        form = _FORMS[versions.check_supported(result.cni_version)]
        if form == "020":
            return result._dict_020()
        return result._dict_current(form)

    def to_json(self, version: str | None = None, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(version), indent=indent)

    def sandbox_interfaces(self) -> tuple[Interface, ...]:
        """The interfaces inside the container (those with a ``sandbox``), in order."""
        return tuple(intf for intf in self.interfaces if intf.sandbox)

    def ips_for(self, index: int) -> tuple[IPConfig, ...]:
        """The addresses whose ``interface`` is ``index`` (an index into `interfaces`)."""
        return tuple(ip for ip in self.ips if ip.interface == index)

    # -- conversion -------------------------------------------------------

    def _held_by(self, form: _Form) -> Result:
        """What a result of that wire form can hold of this one, without any conversion loss."""
        if form == "100":
            return self
        if form == "040":
            # types100.convertInterfaceTo040 copies name, mac and sandbox only.
            return replace(
                self,
                interfaces=tuple(
                    Interface(i.name, i.mac, sandbox=i.sandbox) for i in self.interfaces
                ),
            )
        ip4, ip6, routes4, routes6 = self._view_020()
        return replace(
            self,
            interfaces=(),
            ips=tuple(ip for ip in (ip4, ip6) if ip is not None),
            routes=routes4 + routes6,
        )

    def _down_to_020(self, version: str) -> Result:
        ip4, ip6, routes4, routes6 = self._view_020()
        if ip4 is None and ip6 is None:
            raise CNIError(
                Code.INCOMPATIBLE_VERSION,
                f"cannot convert a CNI {self.cni_version} result without IP addresses"
                f" to CNI {version}",
                "0.1.0 and 0.2.0 results carry an IPv4 and/or an IPv6 address;"
                " use cniVersion 0.3.0 or later",
            )
        # types040.convertTo02x: each route keeps only dst and gw (types.Route
        # keeps mtu, advmss, priority, table and scope in every other version).
        routes = tuple(Route(r.dst, r.gw) for r in routes4 + routes6)
        return Result(
            version, (), tuple(ip for ip in (ip4, ip6) if ip is not None), routes, self.dns
        )

    def _view_020(
        self,
    ) -> tuple[IPConfig | None, IPConfig | None, tuple[Route, ...], tuple[Route, ...]]:
        """First IPv4 and IPv6 address (no interface index), and the routes that go with each.

        libcni picks by the ``version`` field of 0.3.x/0.4.0 ips; the model
        derives it from the address, which is what a well-formed result says.
        """
        ip4 = next((ip for ip in self.ips if ip.family == 4), None)
        ip6 = next((ip for ip in self.ips if ip.family == 6), None)
        if ip4 is not None:
            ip4 = replace(ip4, interface=None)
        if ip6 is not None:
            ip6 = replace(ip6, interface=None)
        routes4 = tuple(r for r in self.routes if r.family == 4) if ip4 else ()
        routes6 = tuple(r for r in self.routes if r.family == 6) if ip6 else ()
        return ip4, ip6, routes4, routes6

    # -- wire forms -------------------------------------------------------

    def _dict_020(self) -> dict[str, Any]:
        ip4, ip6, routes4, routes6 = self._view_020()
        out: dict[str, Any] = {"cniVersion": self.cni_version}
        for key, ipc, routes in (("ip4", ip4, routes4), ("ip6", ip6, routes6)):
            if ipc is None:
                continue
            entry: dict[str, Any] = {"ip": ipc.address}
            if ipc.gateway:
                entry["gateway"] = ipc.gateway
            if routes:
                entry["routes"] = [_route_dict(r) for r in routes]
            out[key] = entry
        # types020.Result has no MarshalJSON: `omitempty` does not apply to a struct.
        out["dns"] = self.dns.to_dict()
        return out

    def _dict_current(self, form: _Form) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": self.cni_version}
        if self.interfaces:
            out["interfaces"] = [_interface_dict(i, form) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ipconfig_dict(ip, form) for ip in self.ips]
        if self.routes:
            out["routes"] = [_route_dict(r) for r in self.routes]
        # types100.Result.MarshalJSON drops an empty dns; types040.Result writes "dns": {}.
        if self.dns or form == "040":
            out["dns"] = self.dns.to_dict()
        return out


def _interface_dict(intf: Interface, form: _Form) -> dict[str, Any]:
    out: dict[str, Any] = {"name": intf.name}
    if intf.mac:
        out["mac"] = intf.mac
    if form == "100" and intf.mtu:
        out["mtu"] = intf.mtu
    if intf.sandbox:
        out["sandbox"] = intf.sandbox
    if form == "100":
        if intf.socket_path:
            out["socketPath"] = intf.socket_path
        if intf.pci_id:
            out["pciID"] = intf.pci_id
    return out


def _ipconfig_dict(ip: IPConfig, form: _Form) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if form == "040":
        out["version"] = str(ip.family)
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = ip.address
    if ip.gateway:
        out["gateway"] = ip.gateway
    return out


def _route_dict(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": route.dst}
    if route.gw:
        out["gw"] = route.gw
    # mtu, advmss and priority are Go ints with omitempty; table and scope are
    # *int, so a 0 (main table, universe scope) is written.
    if route.mtu:
        out["mtu"] = route.mtu
    if route.advmss:
        out["advmss"] = route.advmss
    if route.priority:
        out["priority"] = route.priority
    if route.table is not None:
        out["table"] = route.table
    if route.scope is not None:
        out["scope"] = route.scope
    return out


# -- decoding ------------------------------------------------------------
#
# Go's encoding/json semantics, field by field: a JSON null leaves a field at
# its zero value, a value of the wrong type fails.  libcni also takes a route
# without ``dst``, an IP without ``address`` and a null list element, keeping
# a zero address that it prints as "<nil>" (which the next plugin of a chain
# then cannot parse).  multihome takes them too, as libcni does, but drops
# the route or address that names none, with a warning: nothing can be
# configured from it, and passing "<nil>" on would break the chain.  Entries
# of ``interfaces`` are kept whatever they hold: ``ips`` point into that list
# by index.


def _decode(data: str | bytes | bytearray) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CNIError(Code.DECODE_FAILURE, f"failed to decode CNI result: {err}") from err


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _invalid(path: str, value: Any, expected: str) -> NoReturn:
    shown = "missing" if value is None else _show(value)
    raise CNIError(
        Code.DECODE_FAILURE, f"invalid CNI result: {path} is {shown}", f"expected {expected}"
    )


def _obj(value: Any, path: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        _invalid(path, value, "a JSON object")
    return value


def _list(value: Any, path: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        _invalid(path, value, "a JSON array")
    return value


def _str(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        _invalid(path, value, "a string")
    return value


def _strings(value: Any, path: str) -> tuple[str, ...]:
    return tuple(_str(item, f"{path}[{i}]") for i, item in enumerate(_list(value, path)))


def _int(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _INT64_MIN <= value <= _INT64_MAX
    ):
        _invalid(path, value, "an integer")
    return value


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # Go's net.ParseIP takes no zone ("%eth0") and no surrounding spaces.
    if "%" in text or text.strip() != text:
        raise ValueError(text)
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # Go prints an IPv4-mapped address as IPv4
    return address


def _ip(value: Any, path: str) -> str:
    text = _str(value, path)
    if not text:
        return ""
    try:
        return str(_address(text))
    except ValueError:
        _invalid(path, value, "an IP address such as 10.1.1.1 or fd00::1")


def _cidr(value: Any, path: str) -> str:
    """An address with prefix length, host bits kept, printed as Go's IPNet.String() does."""
    if isinstance(value, str):
        text, _, prefix = value.partition("/")
        if prefix.isascii() and prefix.isdigit():
            try:
                written = ipaddress.ip_address(text)
                address, length = _address(text), int(prefix)
            except ValueError:
                pass
            else:
                if length <= written.max_prefixlen:
                    if address.version != written.version:
                        # IPv4-mapped: IPNet.String() prints the mask's last 32 bits.
                        length = max(length - 96, 0)
                    return f"{address}/{length}"
    _invalid(path, value, "an IP address with a prefix length, such as 10.1.1.2/24 or fd00::2/64")


def _parse_dns(value: Any) -> DNS:
    obj = _obj(value, "dns")
    if obj is None:
        return DNS()
    return DNS(
        nameservers=_strings(obj.get("nameservers"), "dns.nameservers"),
        domain=_str(obj.get("domain"), "dns.domain"),
        search=_strings(obj.get("search"), "dns.search"),
        options=_strings(obj.get("options"), "dns.options"),
    )


def _dropped(where: str, what: str, item: Any) -> None:
    log.warning("ignoring %s of a CNI result: it has no %s: %s", where, what, _show(item))


def _parse_routes(value: Any, path: str) -> tuple[Route, ...]:
    routes: list[Route] = []
    for i, item in enumerate(_list(value, path)):
        where = f"{path}[{i}]"
        obj = _obj(item, where) or {}
        gw = _ip(obj.get("gw"), f"{where}.gw")
        if obj.get("dst") is None:
            _dropped(where, "dst", item)
            continue
        routes.append(
            Route(
                dst=_cidr(obj.get("dst"), f"{where}.dst"),
                gw=gw,
                # Go ints with omitempty: a 0 is the same as no value.
                mtu=_int(obj.get("mtu"), f"{where}.mtu") or None,
                advmss=_int(obj.get("advmss"), f"{where}.advmss") or None,
                priority=_int(obj.get("priority"), f"{where}.priority") or None,
                table=_int(obj.get("table"), f"{where}.table"),
                scope=_int(obj.get("scope"), f"{where}.scope"),
            )
        )
    return tuple(routes)


def _parse_interface(value: Any, path: str, form: _Form) -> Interface:
    obj = _obj(value, path) or {}
    intf = Interface(
        name=_str(obj.get("name"), f"{path}.name"),
        mac=_str(obj.get("mac"), f"{path}.mac"),
        sandbox=_str(obj.get("sandbox"), f"{path}.sandbox"),
    )
    if form == "040":
        return intf  # types040.Interface has no other fields: they are not read
    return replace(
        intf,
        mtu=_int(obj.get("mtu"), f"{path}.mtu") or None,
        socket_path=_str(obj.get("socketPath"), f"{path}.socketPath"),
        pci_id=_str(obj.get("pciID"), f"{path}.pciID"),
    )


def _parse_ipconfig(value: Any, path: str, form: _Form) -> IPConfig | None:
    """An entry of ``ips``; None (dropped, see above) when it has no address."""
    obj = _obj(value, path) or {}
    if form == "040":
        # Decoded as a string by libcni; the model derives the family from the address.
        _str(obj.get("version"), f"{path}.version")
    index = _int(obj.get("interface"), f"{path}.interface")
    if index is not None and index < 0:
        # The spec says uint; Go's *int would take it, Python's indexing would misread it.
        _invalid(f"{path}.interface", index, "a non-negative index into interfaces")
    gateway = _ip(obj.get("gateway"), f"{path}.gateway")
    if obj.get("address") is None:
        _dropped(path, "address", value)
        return None
    return IPConfig(
        address=_cidr(obj.get("address"), f"{path}.address"),
        gateway=gateway,
        interface=index,
    )
