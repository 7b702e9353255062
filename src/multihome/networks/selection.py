"""The network selection annotation: which networks a pod asks for, and how.

``k8s.v1.cni.cncf.io/networks`` comes in two forms (NPWG spec §4.1):

* text: ``[namespace/]name[@interface]`` items separated by commas, with
  whitespace around each part ignored: ``net-a, other-ns/net-b@eth5``;
* JSON: a list of objects with every key of spec v1.3 -- ``name``,
  ``namespace``, ``interface``, ``ips``, ``mac``, ``default-route``,
  ``portMappings``, ``bandwidth``, ``cni-args``, ``infiniband-guid``,
  ``ipam-claim-reference`` -- plus Multus' ``deviceID`` and the pre-3.2
  alias ``interfaceRequest``.

As in Multus, a value containing ``[``, ``{`` or ``"`` is the JSON form, and
keys match with any letter case (Go's decoder).  Unlike Multus, parsing never
stops at the first problem and never raises on user input: it returns what it
could read and a `Finding` for everything wrong, each with its path
(``networks[1].mac``).  Checks that need the network's configuration
(capabilities, static IPAM, address families) are in `validation`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import addresses, gojson, names
from .findings import Finding, Findings

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"

_FIELDS = (
    "name",
    "namespace",
    "interface",
    "interfaceRequest",
    "ips",
    "mac",
    "infiniband-guid",
    "portMappings",
    "bandwidth",
    "cni-args",
    "default-route",
    "deviceID",
    "ipam-claim-reference",
)
_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str = ""
    host_ip: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``portMappings`` capability entry, as Multus (Go) writes it."""
        out: dict[str, Any] = {"hostPort": self.host_port, "containerPort": self.container_port}
        if self.protocol:
            out["protocol"] = self.protocol
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@dataclass(frozen=True)
class Bandwidth:
    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0

    def to_dict(self) -> dict[str, int]:
        """The ``bandwidth`` capability value: all four keys, as Multus sends them."""
        return {
            "ingressRate": self.ingress_rate,
            "ingressBurst": self.ingress_burst,
            "egressRate": self.egress_rate,
            "egressBurst": self.egress_burst,
        }


@dataclass(frozen=True, eq=False)
class NetworkSelection:
    """One requested attachment, with its namespace resolved."""

    name: str
    namespace: str
    #: Where the request was written, e.g. ``networks[1]``: the root of its findings' paths.
    path: str
    interface: str = ""
    ips: tuple[str, ...] = ()
    mac: str = ""
    #: None: not asked; an empty tuple: asked with an empty list.
    default_route: tuple[str, ...] | None = None
    port_mappings: tuple[PortMapping, ...] = ()
    bandwidth: Bandwidth | None = None
    cni_args: Mapping[str, Any] | None = None
    infiniband_guid: str = ""
    ipam_claim_reference: str = ""
    device_id: str = ""

    @property
    def ref(self) -> str:
        """``namespace/name``, the network's name in events and network-status."""
        return f"{self.namespace}/{self.name}"


#: Networks one pod may ask for: far above any real pod, and a bound on the
#: plugin processes one request starts (each network is a chain of plugins).
MAX_NETWORKS_PER_POD = 100


def is_json_form(value: str) -> bool:
    return any(c in value for c in '[{"')


def parse_selection(
    value: str, *, namespace: str, root: str = "networks"
) -> tuple[list[NetworkSelection], list[Finding]]:
    """Every selection in an annotation value, and the findings about it.

    ``namespace`` is where networks without a namespace are (the pod's; the
    multus namespace for the default-network annotation).  ``root`` names
    the annotation in finding paths.
    """
    findings = Findings()
    if not isinstance(value, str):
        findings.add(
            "pod-invalid", root, f"the annotation value is {type(value).__name__}, not a string"
        )
        return [], findings.as_list()
    if not value.strip():
        return [], []
    if is_json_form(value):
        selections = _parse_json(value, namespace, root, findings)
    else:
        selections = _parse_text(value, namespace, root, findings)
    if len(selections) > MAX_NETWORKS_PER_POD:
        findings.add(
            "selection-too-many",
            root,
            f"the pod asks for {len(selections)} networks; at most {MAX_NETWORKS_PER_POD} "
            "are attached to one pod",
        )
    return selections, findings.as_list()


# -- text form -----------------------------------------------------------------


def _parse_text(
    value: str, namespace: str, root: str, findings: Findings
) -> list[NetworkSelection]:
    out = []
    for index, raw_item in enumerate(value.split(",")):
        path = f"{root}[{index}]"
        item = raw_item.strip()
        if not item:
            findings.add("selection-empty-item", path, f"empty item in {value!r}")
            continue
        slash = item.split("/")
        if len(slash) > 2:
            findings.add(
                "selection-text-invalid", path, f"{item!r} has more than one '/' (failed at '/')"
            )
            continue
        ns, rest = (slash[0].strip(), slash[1]) if len(slash) == 2 else ("", slash[0])
        at = rest.split("@")
        if len(at) > 2:
            findings.add(
                "selection-text-invalid", path, f"{item!r} has more than one '@' (failed at '@')"
            )
            continue
        name = at[0].strip()
        interface = at[1].strip() if len(at) == 2 else ""
        ok = _check_name(name, f"{path}.name", findings)
        ok = _check_namespace(ns, f"{path}.namespace", findings) and ok
        if interface and not _check_interface(interface, f"{path}.interface", findings):
            interface = ""
        if ok:
            out.append(NetworkSelection(name, ns or namespace, path, interface=interface))
    return out


# -- JSON form -----------------------------------------------------------------


def _parse_json(
    value: str, namespace: str, root: str, findings: Findings
) -> list[NetworkSelection]:
    try:
        decoded = gojson.loads_pairs(value)
    except (ValueError, RecursionError) as err:
        findings.add("selection-json-invalid", root, f"cannot parse {_short(value)}: {err}")
        return []
    if not isinstance(decoded, list) or isinstance(decoded, gojson.Pairs):
        findings.add(
            "selection-not-list",
            root,
            f"the JSON form must be a list of objects, not {_kind(decoded)}",
        )
        return []
    out = []
    for index, element in enumerate(decoded):
        path = f"{root}[{index}]"
        if not isinstance(element, gojson.Pairs):
            findings.add(
                "selection-element-invalid", path, f"expected an object, found {_kind(element)}"
            )
            continue
        selection = _parse_element(element, namespace, path, findings)
        if selection is not None:
            out.append(selection)
    return out


def _parse_element(
    element: gojson.Pairs, namespace: str, path: str, findings: Findings
) -> NetworkSelection | None:
    matched = gojson.match_fields(element, _FIELDS)
    for key in matched.unknown:
        if "." not in key:
            findings.add(
                "selection-key-unknown", f"{path}.{key}", f"unknown key {key!r} is ignored"
            )
    for written, field in matched.folded:
        findings.add(
            "selection-key-case",
            f"{path}.{written}",
            f"key {written!r} is read as {field!r}",
            hint=f"write {field!r}",
        )
    values = matched.values
    reader = _Reader(values, path, findings)

    name = reader.string("name")
    if not name:
        findings.add("selection-name-missing", f"{path}.name", 'the element has no "name"')
        ok = False
    else:
        ok = _check_name(name, f"{path}.name", findings)
    ns = reader.string("namespace")
    ok = _check_namespace(ns, f"{path}.namespace", findings) and ok

    interface = reader.string("interface") or reader.string("interfaceRequest")
    field = "interface" if reader.string("interface") else "interfaceRequest"
    if interface and not _check_interface(interface, f"{path}.{field}", findings):
        interface = ""

    mac = reader.string("mac")
    if mac and not _check_mac(mac, f"{path}.mac", findings):
        mac = ""

    guid = reader.string("infiniband-guid")
    if guid and addresses.parse_mac(guid) is None:
        findings.add(
            "infiniband-guid-invalid", f"{path}.infiniband-guid", f"{guid!r} is not a GUID"
        )
        guid = ""

    ips = _parse_ips(reader.strings("ips"), f"{path}.ips", findings)
    claim = reader.string("ipam-claim-reference")
    if ips and claim:
        findings.add(
            "ipam-claim-with-ips",
            path,
            f"both ips {list(ips)} and ipam-claim-reference {claim!r} are given",
        )
    default_route = _parse_gateways(reader, f"{path}.default-route", findings)
    port_mappings = _parse_port_mappings(reader, f"{path}.portMappings", findings)
    bandwidth = _parse_bandwidth(reader, f"{path}.bandwidth", findings)
    cni_args = reader.object("cni-args")
    device_id = reader.string("deviceID")
    if not ok:
        return None
    return NetworkSelection(
        name,
        ns or namespace,
        path,
        interface=interface,
        ips=ips,
        mac=mac,
        default_route=default_route,
        port_mappings=port_mappings,
        bandwidth=bandwidth,
        cni_args=cni_args,
        infiniband_guid=guid,
        ipam_claim_reference=claim,
        device_id=device_id,
    )


class _Reader:
    """Typed access to an element's fields; a wrong type is a finding and reads as absent."""

    def __init__(self, values: dict[str, Any], path: str, findings: Findings) -> None:
        self.values = values
        self.path = path
        self.findings = findings

    def _wrong(self, key: str, value: Any, expected: str) -> None:
        self.findings.add(
            "selection-field-invalid",
            f"{self.path}.{key}",
            f"{key!r} is {_kind(value)} {_short(gojson.plain(value))}, expected {expected}",
        )

    def string(self, key: str) -> str:
        value = self.values.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self._wrong(key, value, "a string")
            return ""
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key)
        if value is None:
            return ()
        if (
            not isinstance(value, list)
            or isinstance(value, gojson.Pairs)
            or not all(isinstance(v, str) for v in value)
        ):
            self._wrong(key, value, "a list of strings")
            return ()
        return tuple(value)

    def items(self, key: str) -> list[Any] | None:
        value = self.values.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or isinstance(value, gojson.Pairs):
            self._wrong(key, value, "a list")
            return None
        return value

    def object(self, key: str) -> dict[str, Any] | None:
        value = self.values.get(key)
        if value is None:
            return None
        if not isinstance(value, gojson.Pairs):
            self.findings.add(
                "cni-args-invalid" if key == "cni-args" else "selection-field-invalid",
                f"{self.path}.{key}",
                f"{key!r} is {_kind(value)} {_short(gojson.plain(value))}, expected an object",
            )
            return None
        result: dict[str, Any] = gojson.plain(value)
        return result


def _check_name(name: str, path: str, findings: Findings) -> bool:
    problem = names.subdomain_problem(name)
    if problem:
        findings.add("selection-name-invalid", path, f"network name {name!r}: {problem}")
    return problem is None


def _check_namespace(namespace: str, path: str, findings: Findings) -> bool:
    if not namespace:
        return True
    problem = names.label_problem(namespace)
    if problem:
        findings.add("selection-namespace-invalid", path, f"namespace {namespace!r}: {problem}")
    return problem is None


def _check_interface(name: str, path: str, findings: Findings) -> bool:
    problem = names.interface_problem(name)
    if problem:
        findings.add("interface-invalid", path, f"interface name {name!r}: {problem}")
    return problem is None


def _check_mac(mac: str, path: str, findings: Findings) -> bool:
    data = addresses.parse_mac(mac)
    if data is None:
        findings.add("mac-invalid", path, f"{mac!r} is not a MAC address")
        return False
    if len(data) not in (6, 20):
        findings.add("mac-length", path, f"{mac!r} is a {len(data)}-byte address")
        return True
    problem = addresses.mac_problem(data)
    if problem:
        code, reason = problem
        findings.add(
            code,
            path,
            f"MAC {mac!r} cannot be an interface's address: {reason}",
            hint=f"use a locally administered unicast MAC such as {addresses.suggest_mac(data)}",
        )
        return False
    if len(data) == 6 and not addresses.is_locally_administered(data):
        findings.add(
            "mac-universal",
            path,
            f"MAC {mac!r} is a universally administered (vendor) address",
            hint=f"a locally administered one such as {addresses.suggest_mac(data)} cannot "
            "collide with hardware",
        )
    return True


def _parse_ips(ips: tuple[str, ...], path: str, findings: Findings) -> tuple[str, ...]:
    out = []
    for index, text in enumerate(ips):
        requested = addresses.parse_requested_ip(text)
        if requested is None:
            findings.add("ip-invalid", f"{path}[{index}]", f"{text!r} is not an IP address")
            continue
        if requested.prefix is None:
            findings.add(
                "ip-no-prefix",
                f"{path}[{index}]",
                f"{text!r} has no prefix length",
                hint=f"write it with its prefix length, e.g. {text}/"
                f"{24 if requested.family == 4 else 64}",
            )
        out.append(text)
    return tuple(out)


def _parse_gateways(reader: _Reader, path: str, findings: Findings) -> tuple[str, ...] | None:
    if "default-route" not in reader.values:
        return None
    gateways = reader.strings("default-route")
    if gateways == () and reader.values["default-route"] != []:
        return None  # wrong type: already a finding
    out = []
    for index, text in enumerate(gateways):
        if addresses.parse_ip(text) is None:
            findings.add(
                "default-route-invalid", f"{path}[{index}]", f"{text!r} is not an IP address"
            )
        else:
            out.append(text)
    if not gateways:
        findings.add(
            "default-route-empty",
            path,
            "default-route is an empty list: this attachment gives the pod no default route",
        )
    return tuple(out)


def _parse_port_mappings(reader: _Reader, path: str, findings: Findings) -> tuple[PortMapping, ...]:
    items = reader.items("portMappings")
    if not items:
        return ()
    out = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        if not isinstance(item, gojson.Pairs):
            findings.add(
                "port-mapping-invalid", item_path, f"expected an object, found {_kind(item)}"
            )
            continue
        fields = gojson.match_fields(item, ("hostPort", "containerPort", "protocol", "hostIP"))
        values = fields.values
        problems = []
        ports: dict[str, int] = {}
        for key in ("hostPort", "containerPort"):
            port = values.get(key)
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                problems.append(f"{key} is {_short(gojson.plain(port))}, expected 1-65535")
            else:
                ports[key] = port
        protocol = values.get("protocol", "")
        if not isinstance(protocol, str) or (protocol and protocol.lower() not in _PROTOCOLS):
            problems.append(
                f"protocol is {_short(gojson.plain(protocol))}, expected tcp, udp or sctp"
            )
        host_ip = values.get("hostIP", "")
        if not isinstance(host_ip, str) or (host_ip and addresses.parse_ip(host_ip) is None):
            problems.append(f"hostIP is {_short(gojson.plain(host_ip))}, expected an IP address")
        if problems:
            findings.add("port-mapping-invalid", item_path, "; ".join(problems))
            continue
        out.append(
            PortMapping(ports["hostPort"], ports["containerPort"], str(protocol), str(host_ip))
        )
    return tuple(out)


def _parse_bandwidth(reader: _Reader, path: str, findings: Findings) -> Bandwidth | None:
    value = reader.values.get("bandwidth")
    if value is None:
        return None
    if not isinstance(value, gojson.Pairs):
        findings.add("bandwidth-invalid", path, f"expected an object, found {_kind(value)}")
        return None
    keys = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
    values = gojson.match_fields(value, keys).values
    problems = []
    numbers = {}
    for key in keys:
        number = values.get(key, 0)
        if not _is_int(number) or number < 0:
            problems.append(f"{key} is {_short(gojson.plain(number))}, expected an integer >= 0")
        else:
            numbers[key] = number
    # The bandwidth plugin refuses a rate without a burst and the reverse.
    for direction in ("ingress", "egress"):
        rate, burst = numbers.get(f"{direction}Rate"), numbers.get(f"{direction}Burst")
        if rate is not None and burst is not None and bool(rate) != bool(burst):
            problems.append(f"{direction}Rate and {direction}Burst must both be set or both be 0")
    if problems:
        findings.add("bandwidth-invalid", path, "; ".join(problems))
        return None
    return Bandwidth(*(numbers[k] for k in keys))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if isinstance(value, gojson.Pairs | dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null"


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
