"""A small builder for test topologies in real network namespaces.

Tests of anything that touches the network build their world here: named
network namespaces, veth pairs, bridges acting as a LAN, macvlan parents and
addresses.  Every name carries a prefix unique to the `Lab`, so tests can run
in parallel and twice in a row, and `cleanup` removes exactly what this lab
(or a plugin it ran) made: its namespaces, the links in the root namespace
whose names start with the prefix, and its scratch directories, also when the
test failed half-way.

The lab shells out to iproute2's ``ip`` (``-j`` for JSON): it is what an
operator would type, and it is the same tool the engine uses inside pods, but
the lab calls it directly, not through the code under test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where Debian's containernetworking-plugins puts the reference plugins.
CNI_BIN_DIR = "/usr/lib/cni"
#: Every lab name starts with this, so leftovers are easy to spot and sweep.
PREFIX = "mh"
_IFNAMSIZ = 15


@dataclass(frozen=True)
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"


@dataclass(frozen=True)
class Link:
    name: str
    kind: str
    mac: str
    mtu: int
    state: str
    addresses: list[str] = field(default_factory=list)
    master: str = ""


def _ip(
    *argv: str, netns: Netns | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns.name] if netns else []), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class Lab:
    """Namespaces, links and addresses for one test; `cleanup` undoes all of it."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or PREFIX + secrets.token_hex(3)[:5]
        self._netns: list[Netns] = []
        self._tmpdirs: list[Path] = []
        self._counter = 0

    # -- naming ---------------------------------------------------------------
    def name(self, suffix: str) -> str:
        """A name unique to this lab that fits a Linux interface name."""
        name = f"{self.prefix}{suffix}"
        if len(name.encode()) > _IFNAMSIZ:
            self._counter += 1
            name = f"{self.prefix}{suffix[: _IFNAMSIZ - len(self.prefix) - 2]}{self._counter:02d}"
        return name

    # -- building ---------------------------------------------------------------
    def netns(self, suffix: str = "ns") -> Netns:
        ns = Netns(f"{self.prefix}-{suffix}")
        self._netns.append(ns)  # registered first: cleanup also covers a half-made one
        _ip("netns", "add", ns.name)
        _ip("link", "set", "lo", "up", netns=ns)
        return ns

    def bridge(self, suffix: str = "lan", *, cidr: str | None = None) -> str:
        name = self.name(suffix)
        _ip("link", "add", name, "type", "bridge")
        _ip("link", "set", name, "up")
        if cidr:
            self.address(None, name, cidr)
        return name

    def veth(
        self,
        *,
        a: Netns | None,
        b: Netns | None,
        a_name: str = "",
        b_name: str = "",
        bridge: str = "",
    ) -> tuple[str, str]:
        """A veth pair from ``a`` to ``b`` (None = root namespace).

        Each end is created in the root namespace under a lab name (so a
        failure half-way leaves only prefixed links to sweep) and then moved
        and renamed.  ``bridge`` enslaves the ``a`` end to a root bridge.
        """
        self._counter += 1
        tmp_a, tmp_b = self.name(f"va{self._counter}"), self.name(f"vb{self._counter}")
        _ip("link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        ends = []
        for tmp, ns, want in ((tmp_a, a, a_name), (tmp_b, b, b_name)):
            final = want or tmp
            if ns is not None:
                _ip("link", "set", tmp, "netns", ns.name)
            if final != tmp:
                _ip("link", "set", tmp, "name", final, netns=ns)
            _ip("link", "set", final, "up", netns=ns)
            ends.append(final)
        if bridge:
            if a is not None:
                raise ValueError("only a root-namespace end can join a root bridge")
            _ip("link", "set", ends[0], "master", bridge)
        return ends[0], ends[1]

    def macvlan_parent(self, suffix: str = "par") -> str:
        """A root-namespace link that macvlan can use as ``master``.

        A bridge: dummy links do not exist in every kernel here, and macvlan
        children of one bridge reach each other like hosts on a LAN.
        """
        return self.bridge(suffix)

    def address(self, ns: Netns | None, link: str, cidr: str) -> None:
        extra = ["nodad"] if ":" in cidr else []
        _ip("addr", "add", cidr, "dev", link, *extra, netns=ns)

    def tmpdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._tmpdirs.append(path)
        return path

    # -- looking ----------------------------------------------------------------
    def run(
        self, ns: Netns | None, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["ip", "netns", "exec", ns.name, *argv] if ns else list(argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def links(self, ns: Netns | None) -> dict[str, Link]:
        data: list[dict[str, Any]] = json.loads(
            _ip("-j", "-d", "addr", "show", netns=ns).stdout or "[]"
        )
        out = {}
        for entry in data:
            kind = entry.get("linkinfo", {}).get("info_kind", "")
            out[entry["ifname"]] = Link(
                name=entry["ifname"],
                kind=kind,
                mac=entry.get("address", ""),
                mtu=entry.get("mtu", 0),
                state=entry.get("operstate", ""),
                addresses=[
                    f"{a['local']}/{a['prefixlen']}"
                    for a in entry.get("addr_info", [])
                    if a.get("scope") != "link"
                ],
                master=entry.get("master", ""),
            )
        return out

    def routes(self, ns: Netns | None, family: int = 4) -> list[dict[str, Any]]:
        out = _ip(f"-{family}", "-j", "route", "show", "table", "main", netns=ns).stdout
        return json.loads(out or "[]")  # type: ignore[no-any-return]

    def default_routes(self, ns: Netns | None, family: int = 4) -> list[dict[str, Any]]:
        return [r for r in self.routes(ns, family) if r.get("dst") == "default"]

    def ping(self, ns: Netns, address: str, *, count: int = 1) -> bool:
        six = ["-6"] if ":" in address else []
        proc = self.run(ns, "ping", *six, "-c", str(count), "-W", "2", address, check=False)
        return proc.returncode == 0

    # -- tearing down -------------------------------------------------------------
    def root_links(self) -> list[str]:
        """Links in the root namespace that belong to this lab."""
        return [name for name in Lab.links(self, None) if name.startswith(self.prefix)]

    def cleanup(self) -> None:
        """Remove everything; keep going past errors so one failure hides nothing."""
        for ns in reversed(self._netns):
            _ip("netns", "del", ns.name, check=False)
        for name in self.root_links():
            _ip("link", "del", name, check=False)
        for path in self._tmpdirs:
            shutil.rmtree(path, ignore_errors=True)
        self._netns.clear()
        self._tmpdirs.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@contextlib.contextmanager
def lab(prefix: str | None = None) -> Iterator[Lab]:
    the_lab = Lab(prefix)
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


def is_root() -> bool:
    return os.geteuid() == 0


def have_ip() -> bool:
    return shutil.which("ip") is not None


@functools.cache
def supports(kind: str) -> bool:
    """Whether this kernel can create a link of ``kind`` (vlan, ipvlan, macvlan, ...).

    Tried for real in a scratch namespace, because a missing module shows
    only when the link is made.
    """
    if not (is_root() and have_ip()):
        return False
    with lab() as scratch:
        ns = scratch.netns("probe")
        _ip("link", "add", "p0", "type", "veth", "peer", "name", "p1", netns=ns)
        argv = {
            "vlan": ["type", "vlan", "id", "10", "link", "p0"],
            "macvlan": ["link", "p0", "type", "macvlan"],
            "ipvlan": ["link", "p0", "type", "ipvlan"],
            "vxlan": ["type", "vxlan", "id", "42", "dev", "p0", "dstport", "4789"],
        }.get(kind, ["type", kind])
        return _ip("link", "add", "k0", *argv, netns=ns, check=False).returncode == 0


def sweep(prefix: str = PREFIX) -> list[str]:
    """Remove every lab namespace and root link left by an interrupted run.

    For humans (``python -m multihome.testing.lab sweep``), never called by
    tests, which may run in parallel with other labs.
    """
    removed = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(prefix):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for name in Lab("").links(None):
        if name.startswith(prefix):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["sweep"]:
        print("\n".join(sweep()) or "nothing to sweep")
    else:
        print("usage: python -m multihome.testing.lab sweep", file=sys.stderr)
        sys.exit(2)
