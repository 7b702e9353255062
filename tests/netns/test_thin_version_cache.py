"""The thin plugin asks each plugin VERSION once per binary, across processes.

The real ``multihome-cni`` as a child process, the reference plugins behind
wrappers that record each command they get, real namespaces.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multihome.engine.versioncache import FILE_NAME, load
from multihome.testing.lab import Lab
from multihome.testing.world import CNI_BIN_DIR, World

pytestmark = pytest.mark.netns

WRAPPER = """#!/bin/sh
echo "$CNI_COMMAND $(basename "$0")" >> {log}
exec {real} "$@"
"""


def _wrap(bindir: Path, name: str, log: Path) -> None:
    path = bindir / name
    path.write_text(WRAPPER.format(log=log, real=os.path.join(CNI_BIN_DIR, name)))
    path.chmod(0o755)


def _versions(log: Path) -> list[str]:
    """The plugins asked VERSION since the last look (and that the plugins did run)."""
    lines = log.read_text().splitlines()
    log.unlink()
    assert "ADD macvlan" in lines and "DEL macvlan" in lines
    return sorted(line.split()[1] for line in lines if line.startswith("VERSION "))


def test_a_second_add_asks_no_version_until_a_binary_changes(lab: Lab) -> None:
    world = World(lab, mode="thin")
    bindir, log = world.root / "bin", world.root / "commands.log"
    bindir.mkdir()
    for name in ("bridge", "host-local", "macvlan"):
        _wrap(bindir, name, log)
    world.config["binDir"] = str(bindir)
    world.macvlan_nad("lan", master=lab.macvlan_parent("lan"), subnet=world.lan_subnet(1))

    first = world.pod("one", "lan")
    world.add(first)
    assert set(load(world.cni_dir / "multihome")) == {
        str(bindir / n) for n in ("bridge", "host-local", "macvlan")
    }
    world.delete(first)
    assert _versions(log) == ["bridge", "host-local", "macvlan"]

    second = world.pod("two", "lan")
    world.add(second)
    assert set(lab.links(second.netns)) == {"lo", "eth0", "net1"}
    world.delete(second)
    assert _versions(log) == []

    _wrap(bindir, "macvlan", log)  # a new binary: a new stamp
    os.utime(bindir / "macvlan", ns=(1, 1))
    third = world.pod("three", "lan")
    world.add(third)
    world.delete(third)
    assert _versions(log) == ["macvlan"]
    assert world.allocations() == {}
    assert world.cached_containers() == []
    cache = world.cni_dir / "multihome" / FILE_NAME
    assert cache.is_file()

    # A cache that can be neither read nor replaced: the plugins are asked again.
    cache.unlink()
    cache.mkdir()
    fourth = world.pod("four", "lan")
    world.add(fourth)
    world.delete(fourth)
    assert _versions(log) == ["bridge", "host-local", "macvlan"]
    assert world.allocations() == {}
