"""Addresses, gateways and routes checked against the subnets of their attachment.

An ADD finds out that a gateway is off-subnet when the kernel refuses the
route ("network is unreachable"), and never finds out that a route to
10.0.0.0/8 on a LAN interface swallows the pod's traffic to services.  These
checks read the IPAM configuration of a network (static, host-local,
whereabouts) and what a pod requests of it, and say so ahead of time: in
``multihome lint`` and in the admission webhook.

The *connected* subnets of an attachment are the subnets its IPAM
configuration names; when it names none (static IPAM fed by the ``ips``
capability), the prefixes of the pod's requested addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from multihome.cni.config import NetConfList

from . import addresses
from .findings import Finding, Findings
from .nad import Network
from .selection import NetworkSelection
from .validation import ipam_subnets

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Route:
    path: str
    dst: IPNetwork
    gw: addresses.IPAddress | None


def conf_path(network: Network) -> str:
    """Where the network's configuration is, as finding paths spell it."""
    source = network.source or network.name
    return f"{source}.spec.config" if source.startswith("nad[") else source


def _ipam_blocks(
    conf: NetConfList, base: str, *, is_list: bool
) -> Iterator[tuple[str, dict[str, Any]]]:
    for index, plugin in enumerate(conf.plugins):
        ipam = plugin.raw.get("ipam")
        if isinstance(ipam, dict):
            yield (f"{base}.plugins[{index}].ipam" if is_list else f"{base}.ipam"), ipam


def _network(text: Any) -> IPNetwork | None:
    if not isinstance(text, str) or "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def routes_of(network: Network) -> tuple[list[Route], list[Finding]]:
    """Every IPAM route of the chain (and a `route-invalid` finding for each bad one)."""
    findings = Findings()
    out: list[Route] = []
    for path, ipam in _ipam_blocks(network.conf, conf_path(network), is_list=network.is_list):
        routes = ipam.get("routes")
        for index, route in enumerate(routes if isinstance(routes, list) else ()):
            where = f"{path}.routes[{index}]"
            if not isinstance(route, dict):
                findings.add("route-invalid", where, f"route {route!r} is not an object")
                continue
            dst = _network(route.get("dst"))
            if dst is None:
                findings.add(
                    "route-invalid", f"{where}.dst", f"dst {route.get('dst')!r} is not a subnet"
                )
                continue
            gw_text = route.get("gw")
            gw = addresses.parse_ip(gw_text) if gw_text not in (None, "") else None
            if gw_text not in (None, "") and gw is None:
                findings.add("route-invalid", f"{where}.gw", f"gw {gw_text!r} is not an address")
                continue
            out.append(Route(where, dst, gw))
    return out, findings.as_list()


def _check_in(
    findings: Findings, code: str, path: str, text: Any, *, subnet: IPNetwork, what: str
) -> None:
    if text in (None, ""):
        return
    address = addresses.parse_ip(text) if isinstance(text, str) else None
    if address is not None and address not in subnet:
        findings.add(code, path, f"{what} {text} is outside the subnet {subnet}")


def check_network(network: Network, *, cluster_cidrs: Sequence[IPNetwork] = ()) -> list[Finding]:
    """A network's IPAM configuration on its own: ranges, gateways, routes."""
    findings = Findings()
    base = conf_path(network)
    for path, ipam in _ipam_blocks(network.conf, base, is_list=network.is_list):
        kind = ipam.get("type")
        if kind == "static":
            for index, item in enumerate(ipam.get("addresses") or ()):
                if not isinstance(item, dict):
                    continue
                iface = addresses.parse_requested_ip(item.get("address") or "")
                if iface is not None and iface.interface is not None:
                    _check_in(
                        findings,
                        "gateway-outside-subnet",
                        f"{path}.addresses[{index}].gateway",
                        item.get("gateway"),
                        subnet=iface.interface.network,
                        what="gateway",
                    )
        elif kind == "host-local":
            for where, item in _host_local_ranges(ipam, path):
                subnet = _network(item.get("subnet"))
                if subnet is None:
                    continue
                for key in ("rangeStart", "rangeEnd"):
                    _check_in(
                        findings,
                        "address-outside-subnet",
                        f"{where}.{key}",
                        item.get(key),
                        subnet=subnet,
                        what=key,
                    )
                _check_in(
                    findings,
                    "gateway-outside-subnet",
                    f"{where}.gateway",
                    item.get("gateway"),
                    subnet=subnet,
                    what="gateway",
                )
    subnets = ipam_subnets(network.conf)
    routes, problems = routes_of(network)
    findings.extend(problems)
    findings.extend(_check_routes(routes, subnets, cluster_cidrs, network=network.name))
    return findings.as_list()


def _host_local_ranges(ipam: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """host-local's ``ranges`` (sets of ranges) and its legacy top-level ``subnet``."""
    ranges = ipam.get("ranges")
    for i, rangeset in enumerate(ranges if isinstance(ranges, list) else ()):
        for j, item in enumerate(rangeset if isinstance(rangeset, list) else ()):
            if isinstance(item, dict):
                yield f"{path}.ranges[{i}][{j}]", item
    if isinstance(ipam.get("subnet"), str):
        yield path, ipam


def host_local_ranges(network: Network) -> list[tuple[str, IPNetwork]]:
    """``(path, subnet)`` of every host-local range of the chain (for overlap checks)."""
    out = []
    for path, ipam in _ipam_blocks(network.conf, conf_path(network), is_list=network.is_list):
        if ipam.get("type") != "host-local":
            continue
        for where, item in _host_local_ranges(ipam, path):
            subnet = _network(item.get("subnet"))
            if subnet is not None:
                out.append((f"{where}.subnet", subnet))
    return out


def _check_routes(
    routes: Sequence[Route],
    subnets: Sequence[IPNetwork],
    cluster_cidrs: Sequence[IPNetwork],
    *,
    network: str,
    because: str = "",
) -> list[Finding]:
    findings = Findings()
    for route in routes:
        family = [s for s in subnets if s.version == route.dst.version]
        if route.gw is not None and family and not any(route.gw in s for s in family):
            findings.add(
                "gateway-outside-subnet",
                f"{route.path}.gw",
                f"route to {route.dst} of network {network} goes via {route.gw}, which is on "
                f"none of {', '.join(map(str, family))}{because}",
            )
        if route.dst.prefixlen == 0:
            continue
        for subnet in family:
            # A wider route is harmless: the connected route is more specific and wins.
            if route.dst.version == subnet.version and route.dst.subnet_of(subnet):  # type: ignore[arg-type]
                findings.add(
                    "route-shadows-subnet",
                    f"{route.path}.dst",
                    f"route to {route.dst} of network {network} is inside its connected subnet "
                    f"{subnet}{because}",
                )
        for cidr in cluster_cidrs:
            if cidr.version == route.dst.version and route.dst.overlaps(cidr):
                findings.add(
                    "route-shadows-cluster",
                    f"{route.path}.dst",
                    f"route to {route.dst} of network {network} overlaps the cluster or "
                    f"service network {cidr}",
                )
    return findings.as_list()


def check_requests(
    selection: NetworkSelection,
    network: Network,
    *,
    default_route_elsewhere: bool,
) -> list[Finding]:
    """A pod's requests of one network against the network's subnets and routes."""
    findings = Findings()
    subnets = ipam_subnets(network.conf)
    requested = [addresses.parse_requested_ip(text) for text in selection.ips]
    for index, item in enumerate(requested):
        family = [s for s in subnets if item is not None and s.version == item.family]
        if item is not None and family and not any(item.address in s for s in family):
            findings.add(
                "ip-outside-subnet",
                f"{selection.path}.ips[{index}]",
                f"{item.text} is outside {', '.join(map(str, family))}, the subnet of "
                f"network {network.name}",
            )
    routes, _ = routes_of(network)  # bad routes are the NAD's own findings
    connected = [
        r.interface.network
        for r in requested
        if r is not None
        and r.interface is not None
        and not any(s.version == r.family for s in subnets)
    ]
    if connected:
        findings.extend(
            _check_routes(
                [r for r in routes if any(s.version == r.dst.version for s in connected)],
                connected,
                (),
                network=network.name,
                because=f" (the subnet of the address requested at {selection.path}.ips)",
            )
        )
    if default_route_elsewhere:
        for route in routes:
            if route.dst.prefixlen == 0:
                findings.add(
                    "route-default-conflict",
                    route.path,
                    f"network {network.name} adds a default route ({route.dst}) but the pod "
                    "asks for its default route on another attachment",
                )
    return findings.as_list()
