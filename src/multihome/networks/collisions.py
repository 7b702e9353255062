"""Collisions between objects: what is fine alone and wrong together.

host-local allocates from a file on each node, so two NADs whose
host-local ranges overlap on the same LAN (the same macvlan/ipvlan
``master``, host-device ``device`` or ``bridge``) hand out the same address
on two nodes, and so does one NAD used on two nodes, which is not checked
here: it is the normal use of host-local on a node-local bridge.  A static
IP requested by two pods, or by a pod template with more than one replica,
is a duplicate address on the LAN as soon as both run.

Each function takes the objects as ``(owner, ...)`` pairs and returns
``(owner, finding)`` pairs, so a caller can report each finding on the
object it concerns.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from . import addresses
from .addressing import IPNetwork, host_local_ranges
from .findings import Finding, finding
from .nad import Network
from .selection import NetworkSelection

Owner = TypeVar("Owner", bound=Hashable)

_LINK_KEYS = ("master", "device", "bridge")


def lan_of(network: Network) -> str:
    """The link a network's interfaces share a LAN through (``master``, ``device``, ``bridge``)."""
    for plugin in network.conf.plugins:
        for key in _LINK_KEYS:
            value = plugin.raw.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def range_overlaps(networks: Sequence[tuple[Owner, Network]]) -> list[tuple[Owner, Finding]]:
    """`range-overlap` for each later NAD whose host-local range overlaps an earlier one's."""
    out: list[tuple[Owner, Finding]] = []
    seen: dict[str, list[tuple[str, str, IPNetwork]]] = {}
    for owner, network in networks:
        lan = lan_of(network)
        if not lan:
            continue
        earlier = seen.setdefault(lan, [])
        mine = host_local_ranges(network)
        for path, subnet in mine:
            for other_name, other_path, other in earlier:
                if other_name == network.name or subnet.version != other.version:
                    continue
                if subnet.overlaps(other):
                    out.append(
                        (
                            owner,
                            finding(
                                "range-overlap",
                                path,
                                f"host-local range {subnet} of {network.name} overlaps {other} of "
                                f"{other_name} ({other_path}) on the same LAN ({lan})",
                            ),
                        )
                    )
        earlier.extend((network.name, path, subnet) for path, subnet in mine)
    return out


def ip_claims(
    pods: Sequence[tuple[Owner, str, str, Sequence[NetworkSelection]]],
) -> list[tuple[Owner, Finding]]:
    """`ip-claimed-twice` for static IPs that more than one pod would use.

    Each pod is ``(owner, display name, copies, selections)``: ``copies``
    says how many pods a workload's template makes at once ("3 replicas",
    "one pod per node"), empty for one pod.
    """
    out: list[tuple[Owner, Finding]] = []
    claimed: dict[addresses.IPAddress, str] = {}
    for owner, display, copies, selections in pods:
        for selection in selections:
            for index, text in enumerate(selection.ips):
                requested = addresses.parse_requested_ip(text)
                if requested is None:
                    continue
                path = f"{selection.path}.ips[{index}]"
                address = requested.address
                if copies:
                    message = (
                        f"{address} is requested by the template of {display}, which runs {copies}"
                    )
                    out.append((owner, finding("ip-claimed-twice", path, message)))
                elif address in claimed and claimed[address] != display:
                    message = f"{address} is also requested by {claimed[address]}"
                    out.append((owner, finding("ip-claimed-twice", path, message)))
                claimed.setdefault(address, display)
    return out
