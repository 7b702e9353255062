"""The static checks: routes, rp_filter, neighbours and links, in the pod and on the node.

Like the engine (engine/podnet.py), it asks iproute2's ``ip -j`` inside a
namespace through ``nsenter --net``: the commands an operator would type,
no setns in this process.  ``node`` is None for the namespace this command
runs in (the node, or the daemon's host-network container), or a path such
as ``/proc/1/ns/net`` when it runs elsewhere.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .verdict import Evidence, RouteLookup

TIMEOUT = 10.0


class InspectError(OSError):
    """A command in a namespace failed; the message has its stderr."""


def run(netns: str | None, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["nsenter", f"--net={netns}"] if netns else []) + list(argv)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InspectError(f"{' '.join(cmd)}: {err}") from None
    if check and proc.returncode != 0:
        raise InspectError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def ip_json(netns: str | None, *argv: str) -> Any:
    return json.loads(run(netns, "ip", "-j", *argv).stdout or "[]")


def route_get(netns: str | None, *argv: str) -> RouteLookup:
    proc = run(netns, "ip", "-j", "-4", "route", "get", *argv, check=False)
    if proc.returncode != 0:
        return RouteLookup(error=proc.stderr.strip() or f"ip route get {' '.join(argv)} failed")
    [route] = json.loads(proc.stdout)[:1] or [{}]
    return RouteLookup(
        dev=route.get("dev", ""), gateway=route.get("gateway", ""), src=route.get("prefsrc", "")
    )


def sysctl(netns: str | None, key: str) -> int:
    proc = run(netns, "cat", "/proc/sys/" + key.replace(".", "/"), check=False)
    try:
        return int(proc.stdout.strip())
    except ValueError:
        return 0


def rp_drops(netns: str | None) -> int:
    """``TcpExt: IPReversePathFilter`` from /proc/net/netstat: packets rp_filter dropped."""
    lines = run(netns, "cat", "/proc/net/netstat", check=False).stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("IPReversePathFilter", 0))
    return 0


def conntrack_invalid(netns: str | None) -> int | None:
    """The sum over CPUs of conntrack's ``invalid`` counter; None without conntrack."""
    proc = run(netns, "cat", "/proc/net/stat/nf_conntrack", check=False)
    return parse_conntrack_stat(proc.stdout) if proc.returncode == 0 else None


def parse_conntrack_stat(text: str) -> int | None:
    lines = text.split("\n")
    header = lines[0].split() if lines else []
    if "invalid" not in header:
        return None
    column = header.index("invalid")
    return sum(int(line.split()[column], 16) for line in lines[1:] if line.split())


def node_address_owner(node: str | None, target: str) -> str:
    for link in ip_json(node, "-4", "addr", "show"):
        for addr in link.get("addr_info", []):
            if addr.get("local") == target:
                return str(link["ifname"])
    return ""


#: Link kinds of overlays and tunnels that capture a flow routed through the node.
OVERLAY_KINDS = ("vxlan", "ipip", "gre", "geneve", "wireguard", "vti")


def fill(ev: Evidence, pod_netns: str, node: str | None) -> None:
    """Every static fact of ``ev`` that can be read now (before the probe)."""
    for route in ip_json(pod_netns, "-4", "route", "show", "table", "main"):
        if route.get("dst") == "default":
            ev.default_dev = route.get("dev", "")
            break
    ev.rp_filter_all = sysctl(pod_netns, "net.ipv4.conf.all.rp_filter")
    ev.rp_filter_if = sysctl(pod_netns, f"net.ipv4.conf.{ev.ifname}.rp_filter")
    links = {link["ifname"]: link for link in ip_json(node, "-d", "link", "show")}
    parent = links.get(ev.parent)
    ev.parent_found = parent is not None
    if parent is not None:
        ev.parent_state = parent.get("operstate", "")
        ev.parent_promisc = int(parent.get("promiscuity", 0))
    ev.overlays = sorted(
        f"{name} ({link['linkinfo']['info_kind']})"
        for name, link in links.items()
        if link.get("linkinfo", {}).get("info_kind") in OVERLAY_KINDS
    )
    ev.conntrack_invalid = conntrack_invalid(node)
    if not ev.target:
        return
    ev.route_plain = route_get(pod_netns, ev.target)
    ev.route_from = route_get(pod_netns, ev.target, "from", ev.ip)
    ev.reverse = route_get(pod_netns, ev.ip, "from", ev.target, "iif", ev.ifname)
    ev.node_route = route_get(node, ev.target)
    ev.node_owner = node_address_owner(node, ev.target)


def neighbour(pod_netns: str, ifname: str, address: str) -> str:
    entries = ip_json(pod_netns, "-4", "neigh", "show", "to", address, "dev", ifname)
    if not entries:
        return "not in the neighbour table"
    state = entries[0].get("state", [])
    mac = entries[0].get("lladdr", "")
    return "/".join(state) + (f" at {mac}" if mac else "")
