"""What the engine reads and changes inside a pod's network namespace.

Two jobs: moving default routes (``default-route`` in the selection
annotation) and looking at what an interface really got (its MAC and
addresses), so that a request the chain silently ignored fails the ADD.

Both go through iproute2's ``ip`` with JSON output, run inside the pod's
namespace by ``nsenter``, the same tools an operator uses to look.  Why not
netlink from Python (pyroute2): measured in the daemon, importing and using
pyroute2 cost 9 MiB of resident memory, a fifth of the node daemon's 50 MiB
budget, for a handful of calls per ADD that each take a few milliseconds as
a process.  And pyroute2 opens a socket in another namespace by forking a
child that it stops with SIGTERM: the child inherits asyncio's signal
wake-up descriptor, so that SIGTERM reached the daemon as its own and shut
it down.  A child process here never runs Python.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

#: Seconds an ``ip`` command may take; it normally takes a few milliseconds.
TIMEOUT = 10.0
# The default destination by family: in ``ip -batch`` the family comes from it.
_ANY = {4: "0.0.0.0/0", 6: "::/0"}


class NamespaceError(OSError):
    """``ip`` failed inside the namespace; the message has its stderr."""


@dataclass(frozen=True, eq=False)
class LinkState:
    name: str
    mac: str
    mtu: int
    addresses: list[str] = field(default_factory=list)  # "ip/prefix", global scope only


@dataclass(frozen=True)
class DefaultRoute:
    ifname: str
    gateway: str

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.gateway).version


async def _ip(netns: str, *argv: str, stdin: bytes | None = None) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            "nsenter",
            f"--net={netns}",
            "ip",
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except ValueError:  # a NUL byte in the path or a name: no such namespace or link
        raise NamespaceError(f"ip {' '.join(argv)!r} in {netns!r}: a NUL byte") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise NamespaceError(
            f"ip {' '.join(argv)} in {netns} failed: {err.decode(errors='replace').strip()}"
        )
    return out.decode()


async def read_links(netns: str) -> dict[str, LinkState]:
    """Every link of the namespace with its MAC, MTU and global addresses."""
    data: list[dict[str, Any]] = json.loads(await _ip(netns, "-j", "addr", "show") or "[]")
    return {
        entry["ifname"]: LinkState(
            name=entry["ifname"],
            mac=str(entry.get("address", "")).lower(),
            mtu=int(entry.get("mtu", 0)),
            addresses=[
                f"{a['local']}/{a['prefixlen']}"
                for a in entry.get("addr_info", [])
                # link-local and host addresses are not what a pod asks for
                if a.get("scope") == "global"
            ],
        )
        for entry in data
    }


async def default_routes(netns: str) -> list[DefaultRoute]:
    """Default routes of the main table, IPv4 then IPv6.

    ``ip`` shows a destination of prefix length zero as ``default``: routes
    are matched by prefix length, not by a missing destination.  Upstream
    Multus >= 4.2.2 looks for a missing destination, which netlink no longer
    reports, and so never finds a default route.
    """
    out = []
    for version in (4, 6):
        routes = json.loads(await _ip(netns, f"-{version}", "-j", "route", "show", "table", "main"))
        out += [
            DefaultRoute(r.get("dev", ""), r.get("gateway", ""))
            for r in routes
            if r.get("dst") == "default" and r.get("type", "unicast") == "unicast"
        ]
    return out


async def apply_default_routes(
    netns: str, *, take: list[DefaultRoute], clear: list[tuple[str, int]]
) -> None:
    """Move default routes inside the pod, in one ``ip -batch`` per step.

    ``take``: for each family, the requested gateway becomes the only default
    route of that family (the others, e.g. the cluster network's, go).
    ``clear``: (ifname, family) pairs whose default routes go without a
    replacement: an attachment that asked for ``default-route: []``.
    """
    families = {route.family for route in take}
    drop = []
    for route in await default_routes(netns):
        if route.family in families or (route.ifname, route.family) in clear:
            via = f"via {route.gateway} " if route.gateway else ""
            drop.append(f"route del {_ANY[route.family]} {via}dev {route.ifname}")
    if drop:
        # -force: a route another process removed meanwhile is not an error.
        await _ip(netns, "-force", "-batch", "-", stdin="\n".join(drop).encode())
    add = [f"route replace {_ANY[r.family]} via {r.gateway} dev {r.ifname}" for r in take]
    if add:
        await _ip(netns, "-batch", "-", stdin="\n".join(add).encode())


async def delete_link(netns: str, ifname: str) -> bool:
    """Remove ``ifname`` from the namespace; False when there is no such link to remove."""
    try:
        await _ip(netns, "link", "del", ifname)
    except NamespaceError:
        return False
    return True
