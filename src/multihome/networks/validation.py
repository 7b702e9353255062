"""Checks of a pod's requests against its networks, and of results against requests.

`selection` checks what a request says on its own (a MAC that is multicast,
an IP that does not parse).  The checks here need more: the network's
configuration (does any plugin declare the ``mac`` capability? does it use
static IPAM?), the pod's other requests (the same IP twice, two IPv4 default
routes), or what the plugins returned (`compare_requested`: did the
interface really get the MAC it asked for?  The NPWG spec requires failing
the attachment when not, and Multus never looks; `result_states_applied`:
does the result say so in full, or must the engine look into the pod?).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from multihome.cni.config import NetConfList
from multihome.cni.result import Result

from . import addresses
from .capabilities import declares
from .findings import Finding, Findings
from .selection import NetworkSelection

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _requested_fields(selection: NetworkSelection) -> list[tuple[str, str]]:
    """``(field, capability)`` for every capability-carried request of the selection."""
    asked = []
    if selection.ips:
        asked.append(("ips", "ips"))
    if selection.mac:
        asked.append(("mac", "mac"))
    if selection.port_mappings:
        asked.append(("portMappings", "portMappings"))
    if selection.bandwidth is not None:
        asked.append(("bandwidth", "bandwidth"))
    if selection.infiniband_guid:
        asked.append(("infiniband-guid", "infinibandGUID"))
    return asked


def ipam_types(conf: NetConfList) -> list[str]:
    out = []
    for plugin in conf.plugins:
        ipam = plugin.raw.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("type"), str):
            out.append(ipam["type"])
    return out


def ipam_subnets(conf: NetConfList) -> list[IPNetwork]:
    """The subnets the chain's IPAM configuration names (static, host-local, whereabouts).

    Empty when it names none that multihome knows to read (dhcp, a
    third-party IPAM): then address-family checks are skipped.
    """
    texts: list[Any] = []
    for plugin in conf.plugins:
        ipam = plugin.raw.get("ipam")
        if not isinstance(ipam, dict):
            continue
        for address in ipam.get("addresses") or ():
            if isinstance(address, dict):
                texts.append(address.get("address"))
        texts.append(ipam.get("subnet"))
        for rangeset in ipam.get("ranges") or ():
            for item in rangeset if isinstance(rangeset, list) else ():
                if isinstance(item, dict):
                    texts.append(item.get("subnet"))
        texts.append(ipam.get("range"))
        for item in ipam.get("ipRanges") or ():
            if isinstance(item, dict):
                texts.append(item.get("range"))
    out = []
    for text in texts:
        if not isinstance(text, str) or "/" not in text:
            continue
        # whereabouts also writes ranges as "first-last/prefix".
        address, _, prefix = text.rpartition("/")
        try:
            out.append(
                ipaddress.ip_network(f"{address.split('-')[0].strip()}/{prefix}", strict=False)
            )
        except ValueError:
            continue
    return out


def check_against_network(
    selection: NetworkSelection, conf: NetConfList, *, network: str
) -> list[Finding]:
    """A selection's requests checked against the configuration of its network."""
    findings = Findings()
    path = selection.path
    for field, capability in _requested_fields(selection):
        if not declares(conf, capability):
            findings.add(
                "capability-missing",
                f"{path}.{field}",
                f"network {network} requests {field} but no plugin of its chain declares the "
                f"capability {capability!r}; the request "
                + (
                    "reaches only plugins that read CNI_ARGS"
                    if field in ("ips", "mac")
                    else "is dropped"
                ),
            )
    if "static" in ipam_types(conf):
        for index, text in enumerate(selection.ips):
            requested = addresses.parse_requested_ip(text)
            if requested is not None and requested.prefix is None:
                findings.add(
                    "ip-prefix-required",
                    f"{path}.ips[{index}]",
                    f"{text!r} has no prefix length and network {network} uses static IPAM",
                )
    findings.extend(_check_gateways(selection, conf, network=network))
    return findings.as_list()


def _check_gateways(
    selection: NetworkSelection, conf: NetConfList, *, network: str
) -> list[Finding]:
    findings = Findings()
    if not selection.default_route:
        return []
    requested = [addresses.parse_requested_ip(text) for text in selection.ips]
    subnets: list[IPNetwork] = [
        r.interface.network for r in requested if r is not None and r.interface is not None
    ]
    families = {r.family for r in requested if r is not None}
    if not families:
        subnets = ipam_subnets(conf)
        families = {n.version for n in subnets}
    for index, text in enumerate(selection.default_route):
        gateway = addresses.parse_ip(text)
        if gateway is None or not families:
            continue
        path = f"{selection.path}.default-route[{index}]"
        if gateway.version not in families:
            findings.add(
                "default-route-family",
                path,
                f"gateway {text} is IPv{gateway.version} but the attachment to {network} has "
                f"no IPv{gateway.version} address",
            )
            continue
        same_family = [n for n in subnets if n.version == gateway.version]
        if same_family and not any(gateway in n for n in same_family):
            findings.add(
                "default-route-off-subnet",
                path,
                f"gateway {text} is in none of {', '.join(str(n) for n in same_family)}",
            )
    return findings.as_list()


def check_pod_requests(selections: Sequence[NetworkSelection]) -> list[Finding]:
    """Checks across a pod's selections: duplicate addresses, one default route per family."""
    findings = Findings()
    seen: dict[Any, str] = {}
    for selection in selections:
        for index, text in enumerate(selection.ips):
            requested = addresses.parse_requested_ip(text)
            if requested is None:
                continue
            path = f"{selection.path}.ips[{index}]"
            if requested.address in seen:
                findings.add(
                    "ip-duplicate",
                    path,
                    f"{requested.address} is already requested at {seen[requested.address]}",
                )
            else:
                seen[requested.address] = path
    gateways: dict[int, list[str]] = {4: [], 6: []}
    for selection in selections:
        for index, text in enumerate(selection.default_route or ()):
            gateway = addresses.parse_ip(text)
            if gateway is not None:
                gateways[gateway.version].append(f"{selection.path}.default-route[{index}]")
    for family, paths in gateways.items():
        if len(paths) > 1:
            findings.add(
                "default-route-multiple",
                paths[1],
                f"{len(paths)} IPv{family} default-route gateways ({', '.join(paths)}); "
                "ECMP default routes are not supported",
            )
    return findings.as_list()


def _result_interface(result: Result, ifname: str) -> tuple[int, str] | None:
    """``(index, mac)`` of the result's interface for the attachment."""
    candidates = [(index, intf) for index, intf in enumerate(result.interfaces) if intf.sandbox]
    for index, intf in candidates:
        if intf.name == ifname:
            return index, intf.mac
    if candidates and not ifname:
        return candidates[0][0], candidates[0][1].mac
    return None


def compare_requested(
    selection: NetworkSelection, result: Result, *, ifname: str = ""
) -> list[Finding]:
    """What the attachment asked for and did not get, according to the plugin's result.

    ``ifname`` is the attachment's interface (the result's sandbox interface
    of that name is compared; without it, the first sandbox interface).
    Addresses are compared without prefix length; a result that lists no
    interface (CNI < 0.3.0) cannot confirm a MAC.
    """
    findings = Findings()
    interface = _result_interface(result, ifname)
    if selection.mac:
        wanted = addresses.parse_mac(selection.mac)
        path = f"{selection.path}.mac"
        if interface is None:
            findings.add(
                "request-unverifiable",
                path,
                f"the result of {selection.ref} lists no "
                f"{'interface ' + ifname if ifname else 'sandbox interface'}, "
                f"so MAC {selection.mac} cannot be confirmed",
            )
        elif wanted is None or addresses.parse_mac(interface[1]) != wanted:
            findings.add(
                "mac-not-applied",
                path,
                f"{ifname or 'the interface'} of {selection.ref} has MAC "
                f"{interface[1] or '(none)'}, not the requested {selection.mac}",
            )
    if selection.ips:
        indexes = None if interface is None else {interface[0]}
        got = _result_addresses(result.ips, indexes)
        for index, text in enumerate(selection.ips):
            wanted_ip = addresses.address_of(text)
            if wanted_ip is not None and wanted_ip not in got:
                findings.add(
                    "ip-not-applied",
                    f"{selection.path}.ips[{index}]",
                    f"{ifname or 'the interface'} of {selection.ref} did not get {text} (it got "
                    f"{', '.join(sorted(str(a) for a in got)) or 'no address'})",
                )
    return findings.as_list()


def result_states_applied(
    selection: NetworkSelection, result: Result, *, ifname: str, netns: str
) -> bool:
    """Whether the result itself says that every MAC and IP request was applied in the pod.

    That is: it lists ``ifname`` as an interface of the sandbox ``netns``,
    with the requested MAC, and ties each requested address to that
    interface by its index.  A result that says less (no sandbox, an
    address tied to no interface) leaves the question to the namespace.
    """
    if not ifname or not netns:
        return False
    index = next(
        (
            i
            for i, intf in enumerate(result.interfaces)
            if intf.name == ifname and intf.sandbox == netns
        ),
        None,
    )
    if index is None:
        return False
    if selection.mac:
        wanted = addresses.parse_mac(selection.mac)
        if wanted is None or addresses.parse_mac(result.interfaces[index].mac) != wanted:
            return False
    tied = {addresses.address_of(ip.address) for ip in result.ips if ip.interface == index}
    return all(
        (wanted_ip := addresses.address_of(text)) is not None and wanted_ip in tied
        for text in selection.ips
    )


def _result_addresses(ips: Iterable[Any], indexes: set[int] | None) -> set[Any]:
    out = set()
    for ip in ips:
        # An address the plugin did not tie to an interface may be this one's.
        if indexes is not None and ip.interface is not None and ip.interface not in indexes:
            continue
        address = addresses.address_of(ip.address)
        if address is not None:
            out.add(address)
    return out
