"""The network-status annotation: what each network gave the pod.

``k8s.v1.cni.cncf.io/network-status`` is read by people (``kubectl get pod
-o yaml``) and by programs written against Multus' output (KubeVirt, the
dynamic-networks controller, service meshes), mostly through the NAD
client's Go ``NetworkStatus`` type.  multihome writes what Multus writes --
one entry per sandbox interface of each result, addresses without prefix
length, ``gateway`` for the default routes' gateways, ``dns`` always -- in the
same layout (each entry indented by four spaces, joined by commas), with
three differences that no such reader notices and the NPWG spec asks for:

* ``default`` is always written (the spec requires it; Multus omits false);
* the gateways are written under the spec's key ``default-route`` as well;
* a result without a sandbox interface (CNI < 0.3.0, or a plugin that
  reports none) still gets an entry, named after the attachment's interface
  (spec §5.1.1); Multus writes nothing, so the cluster network could vanish.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multihome.cni.result import IPConfig, Result

from . import addresses

STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"


@dataclass(frozen=True)
class NetworkStatus:
    name: str
    interface: str = ""
    ips: tuple[str, ...] = ()
    mac: str = ""
    mtu: int | None = None
    default: bool = False
    dns: Mapping[str, Any] = field(default_factory=dict)
    device_info: Mapping[str, Any] | None = None
    gateway: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The entry's JSON object, keys in the order Multus writes them."""
        out: dict[str, Any] = {"name": self.name}
        if self.interface:
            out["interface"] = self.interface
        if self.ips:
            out["ips"] = list(self.ips)
        if self.mac:
            out["mac"] = self.mac
        if self.mtu:
            out["mtu"] = self.mtu
        out["default"] = self.default
        out["dns"] = dict(self.dns)
        if self.device_info:
            out["device-info"] = dict(self.device_info)
        if self.gateway:
            out["gateway"] = list(self.gateway)
            out["default-route"] = list(self.gateway)
        return out


def _plain_address(cidr: str) -> str:
    address = addresses.address_of(cidr)
    return str(address) if address is not None else cidr.split("/", maxsplit=1)[0]


def _gateways(result: Result) -> tuple[str, ...]:
    out = []
    for route in result.routes:
        destination = addresses.parse_requested_ip(route.dst)
        if destination is not None and destination.prefix == 0 and route.gw:
            out.append(route.gw)
    return tuple(out)


def _ips(ips: Iterable[IPConfig]) -> tuple[str, ...]:
    return tuple(_plain_address(ip.address) for ip in ips)


def network_statuses(
    result: Result,
    *,
    name: str,
    default: bool = False,
    ifname: str = "",
    device_info: Mapping[str, Any] | None = None,
) -> list[NetworkStatus]:
    """The network-status entries of one attachment's result.

    One entry per sandbox interface, each with the addresses whose
    ``interface`` index points at it; addresses without an index go to the
    interface named ``ifname`` (the attachment's), else to the last entry, as
    in Multus.  For the cluster network (``default``), the entry of the first
    address that has a gateway is the default one, else the first entry.
    """
    common: dict[str, Any] = {
        "name": name,
        "dns": result.dns.to_dict(),
        "device_info": device_info,
        "gateway": _gateways(result),
    }
    sandboxes = [(i, intf) for i, intf in enumerate(result.interfaces) if intf.sandbox]
    if not sandboxes:
        return [NetworkStatus(interface=ifname, ips=_ips(result.ips), default=default, **common)]

    assigned: dict[int, list[IPConfig]] = {i: [] for i, _ in sandboxes}
    fallback = next((i for i, intf in sandboxes if intf.name == ifname), sandboxes[-1][0])
    for ip in result.ips:
        index = ip.interface if ip.interface in assigned else None
        if ip.interface is not None and index is None:
            continue  # an address of a host-side interface
        assigned[fallback if index is None else index].append(ip)

    default_index = None
    if default:
        with_gateway = next(
            (ip.interface for ip in result.ips if ip.gateway and ip.interface in assigned), None
        )
        default_index = with_gateway if with_gateway is not None else sandboxes[0][0]
    return [
        NetworkStatus(
            interface=intf.name,
            ips=_ips(assigned[index]),
            mac=intf.mac,
            mtu=intf.mtu,
            default=index == default_index,
            **common,
        )
        for index, intf in sandboxes
    ]


def _go_escape(text: str) -> str:
    # Go's encoder escapes these for safe embedding in HTML; readers don't care,
    # but byte-identical output keeps diffs against Multus clean.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def serialise(statuses: Sequence[NetworkStatus]) -> str:
    """The annotation value, laid out as Multus lays it out."""
    entries = [_go_escape(json.dumps(s.to_dict(), indent=4, ensure_ascii=False)) for s in statuses]
    return "[" + ",".join(entries) + "]"


def parse_statuses(text: str) -> list[NetworkStatus]:
    """Read an annotation value (multihome's or Multus'); ValueError if it is not one."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("network-status must be a JSON list")
    out = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError("each network-status entry must be an object with a name")
        gateway = item.get("gateway") or item.get("default-route") or ()
        out.append(
            NetworkStatus(
                name=item["name"],
                interface=str(item.get("interface") or ""),
                ips=tuple(str(ip) for ip in item.get("ips") or ()),
                mac=str(item.get("mac") or ""),
                mtu=item.get("mtu") if isinstance(item.get("mtu"), int) else None,
                default=item.get("default") is True,
                dns=dns if isinstance(dns := item.get("dns"), dict) else {},
                device_info=item.get("device-info")
                if isinstance(item.get("device-info"), dict)
                else None,
                gateway=tuple(str(g) for g in gateway),
            )
        )
    return out
