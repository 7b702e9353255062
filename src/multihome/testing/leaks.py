"""What one container left behind: the leak accounting every fault test ends with.

After a fault (a plugin killed, the daemon killed, a race), a test asks
`account` what is still on the node for the container and compares it with
what the answers promised: after an "ok" ADD everything is there and
recorded; after an error or a DEL nothing is.  It looks at the real state,
never at multihome's own view of it:

* links (with their addresses) in the pod's namespace, ``lo`` aside;
* links in the root namespace that belong to the lab (named with its
  prefix, or enslaved to one of its bridges, as the bridge plugin's host
  veths are) and did not exist at the `baseline`, with their addresses;
* host-local leases holding the container ID, in the given data dirs;
* files in the attachment cache dirs naming the container: its record, a
  temporary file of an interrupted write, its lock file;
* processes whose environment carries ``CNI_CONTAINERID=<id>`` (plugins
  still running, or their children).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .lab import Lab, Netns

Paths = Iterable[str | os.PathLike[str]]


@dataclass(frozen=True)
class Baseline:
    """The root namespace's lab links (and their addresses) before the test acted."""

    root: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Leftovers:
    pod_links: dict[str, tuple[str, ...]]
    root_links: dict[str, tuple[str, ...]]
    leases: dict[str, tuple[str, ...]]
    cache_files: tuple[str, ...]
    processes: tuple[int, ...]

    def __bool__(self) -> bool:
        return bool(
            self.pod_links or self.root_links or self.leases or self.cache_files or self.processes
        )

    def own(self) -> Leftovers:
        """Without the root namespace's links: they cannot be told apart per container
        (a bridge plugin's host veth is named at random), so while other pods of
        the test are attached, only the rest is this container's."""
        return Leftovers(self.pod_links, {}, self.leases, self.cache_files, self.processes)

    def describe(self) -> str:
        parts = [
            f"{name}: {value}"
            for name, value in (
                ("pod links", self.pod_links),
                ("root links", self.root_links),
                ("leases", self.leases),
                ("cache files", self.cache_files),
                ("processes", self.processes),
            )
            if value
        ]
        return "; ".join(parts) or "nothing"


def baseline(lab: Lab) -> Baseline:
    return Baseline(_root_links(lab))


def account(
    container_id: str,
    *,
    lab: Lab,
    netns: Netns | None,
    before: Baseline,
    ipam_dirs: Paths = (),
    cache_dirs: Paths = (),
) -> Leftovers:
    """Everything on the node that still belongs to ``container_id``."""
    pod: dict[str, tuple[str, ...]] = {}
    if netns is not None and os.path.exists(netns.path):
        pod = {
            name: tuple(sorted(link.addresses))
            for name, link in lab.links(netns).items()
            if name != "lo"
        }
    root = {
        name: addresses
        for name, addresses in _root_links(lab).items()
        if before.root.get(name) != addresses
    }
    return Leftovers(
        pod_links=pod,
        root_links=root,
        leases=_leases(container_id, ipam_dirs),
        cache_files=_cache_files(container_id, cache_dirs),
        processes=processes_of(container_id),
    )


def assert_clean(leftovers: Leftovers) -> None:
    assert not leftovers, f"left behind: {leftovers.describe()}"


def processes_of(container_id: str) -> tuple[int, ...]:
    """Processes whose environment names ``container_id`` as CNI_CONTAINERID."""
    needle = f"CNI_CONTAINERID={container_id}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        # A process may exit, or be a kernel thread, while we look.
        with contextlib.suppress(OSError):
            environ = Path(entry.path, "environ").read_bytes()
            if needle in environ.split(b"\0"):
                found.append(int(entry.name))
    return tuple(sorted(found))


def _root_links(lab: Lab) -> dict[str, tuple[str, ...]]:
    links = lab.links(None)
    ours = {name for name in links if name.startswith(lab.prefix)}
    return {
        name: tuple(sorted(link.addresses))
        for name, link in links.items()
        if name in ours or link.master in ours
    }


def _leases(container_id: str, dirs: Paths) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for directory in dirs:
        root = Path(directory)
        if not root.is_dir():
            continue
        for network in sorted(p for p in root.iterdir() if p.is_dir()):
            held = []
            for lease in network.iterdir():
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    # host-local: one file per address, the container ID on its first line.
                    if lease.read_text().splitlines()[:1] == [container_id]:
                        held.append(lease.name)
            if held:
                out[f"{root}/{network.name}"] = tuple(sorted(held))
    return out


def _cache_files(container_id: str, dirs: Paths) -> tuple[str, ...]:
    # Named for the container: its record, lock, pending status, their temporary
    # files (``.<id>.json.<hex>.tmp``).  Not a substring: container "c" does not
    # own the node's ``.gc.lock``.
    named = re.compile(rf"(?:^|[.\-]){re.escape(container_id)}(?:$|[.\-])")
    out: list[str] = []
    for directory in dirs:
        root = Path(directory)
        if root.is_dir():
            out.extend(str(p) for p in root.rglob("*") if named.search(p.name))
    return tuple(sorted(out))
