"""What the engine does and reads inside a pod's network namespace, over netlink.

Two jobs: moving default routes (``default-route`` in the selection
annotation) and looking at what an interface really got (its MAC and
addresses), so that a request the chain silently ignored fails the ADD.

Hazards:

* A namespace switch is per thread.  These functions enter the pod's
  namespace in the calling thread (setns), open the netlink socket there,
  and switch back before returning; callers run them with
  `asyncio.to_thread`, never on the event-loop thread.
* pyroute2's own ``IPRoute(netns=...)`` forks a child to open the socket and
  stops it with SIGTERM.  In the daemon the child inherits asyncio's signal
  wake-up descriptor, so that SIGTERM reached the daemon's event loop as its
  own and shut the daemon down.  Hence the setns here.

pyroute2 is imported lazily: the thin plugin pays for it only when a pod
asks for routes or addresses.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAIN_TABLE = 254


@dataclass(frozen=True)
class LinkState:
    name: str
    mac: str
    mtu: int
    addresses: list[str] = field(default_factory=list)  # "ip/prefix"


@dataclass(frozen=True)
class DefaultRoute:
    ifname: str
    gateway: str

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.gateway).version


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def _iproute(netns: str) -> Iterator[Any]:
    """An IPRoute socket opened inside ``netns``; this thread is back home afterwards."""
    from pyroute2 import IPRoute

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(libc, target, netns)
        finally:
            os.close(target)
        try:
            ipr = IPRoute()  # the socket belongs to the namespace it is opened in
        finally:
            _setns(libc, home, "the thread's own namespace")
        with ipr:
            yield ipr
    finally:
        os.close(home)


def _setns(libc: Any, fd: int, what: str) -> None:
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns into {what} failed: {os.strerror(code)}")


def read_links(netns: str) -> dict[str, LinkState]:
    """Every link of the namespace with its MAC, MTU and global addresses."""
    with _iproute(netns) as ipr:
        names = {}
        out: dict[str, LinkState] = {}
        for link in ipr.get_links():
            names[link["index"]] = link.get_attr("IFLA_IFNAME")
            out[names[link["index"]]] = LinkState(
                name=names[link["index"]],
                mac=(link.get_attr("IFLA_ADDRESS") or "").lower(),
                mtu=int(link.get_attr("IFLA_MTU") or 0),
            )
        for addr in ipr.get_addr():
            if addr["scope"] != 0:  # link-local and host addresses are not what a pod asks for
                continue
            name = names.get(addr["index"])
            if name in out:
                out[name].addresses.append(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        return out


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def default_routes(netns: str) -> list[DefaultRoute]:
    """Default routes of the main table: destination with prefix length zero.

    Matching by prefix length, not by a missing destination, is the point:
    netlink reports ``0.0.0.0/0`` for a default route on newer kernels and
    libraries, which is how upstream Multus >= 4.2.2 stopped finding them.
    """
    out = []
    with _iproute(netns) as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for version in (4, 6):
            for route in ipr.get_routes(family=_family(version), table=MAIN_TABLE):
                if route["dst_len"] != 0 or route.get_attr("RTA_TABLE", MAIN_TABLE) != MAIN_TABLE:
                    continue
                if route["type"] != 1:  # unicast; skip unreachable/blackhole defaults
                    continue
                gateway = route.get_attr("RTA_GATEWAY") or ""
                out.append(DefaultRoute(names.get(route.get_attr("RTA_OIF"), ""), gateway))
    return out


def apply_default_routes(
    netns: str, *, take: list[DefaultRoute], clear: list[tuple[str, int]]
) -> None:
    """Move default routes inside the pod.

    ``take``: for each family, the requested gateway becomes the only default
    route of that family (the others, e.g. the cluster network's, go).
    ``clear``: (ifname, family) pairs whose default routes go without a
    replacement — an attachment that asked for ``default-route: []``.
    """
    with _iproute(netns) as ipr:
        index = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
        families = {route.family for route in take}
        drop = {(ifname, version) for ifname, version in clear}
        for version in (4, 6):
            for route in ipr.get_routes(family=_family(version), table=MAIN_TABLE):
                if route["dst_len"] != 0 or route.get_attr("RTA_TABLE", MAIN_TABLE) != MAIN_TABLE:
                    continue
                oif = route.get_attr("RTA_OIF")
                name = next((n for n, i in index.items() if i == oif), "")
                if version in families or (name, version) in drop:
                    _route_del(ipr, route)
        for route in take:
            if route.ifname not in index:
                raise LookupError(f"interface {route.ifname!r} does not exist in {netns}")
            dst = "0.0.0.0/0" if route.family == 4 else "::/0"
            try:
                ipr.route("add", dst=dst, gateway=route.gateway, oif=index[route.ifname])
            except Exception as err:  # pyroute2 raises NetlinkError with errno
                if getattr(err, "code", None) != errno.EEXIST:
                    raise


def _route_del(ipr: Any, route: Any) -> None:
    try:
        ipr.route(
            "del",
            family=route["family"],
            dst_len=0,
            table=MAIN_TABLE,
            oif=route.get_attr("RTA_OIF"),
            gateway=route.get_attr("RTA_GATEWAY"),
            priority=route.get_attr("RTA_PRIORITY"),
        )
    except Exception as err:
        if getattr(err, "code", None) not in (errno.ESRCH, errno.ENOENT):
            raise
