"""The leak accounting itself: it sees what an ADD made and that a DEL removed it."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihome.testing import leaks
from multihome.testing.lab import Lab
from multihome.testing.world import World

pytestmark = pytest.mark.netns


def test_accounting_sees_an_attached_pod_and_a_clean_node_after_del(lab: Lab) -> None:
    world = World(lab, mode="engine")
    before = leaks.baseline(lab)
    pod = world.pod("web")

    world.add(pod)

    held = world.leftovers(pod, before)
    assert set(held.pod_links) == {"eth0"}
    assert len(held.root_links) == 1  # the host end of the cluster network's veth
    assert [len(ips) for ips in held.leases.values()] == [2]
    assert [p.rsplit("/", 1)[-1] for p in held.cache_files] == [f"{pod.container_id}.json"]

    world.delete(pod)

    leaks.assert_clean(world.leftovers(pod, before))


def test_cache_files_are_those_named_for_the_container(tmp_path: Path) -> None:
    names = ("c.json", ".c.json.0a1b2c3d.tmp", "c.statuslock", ".gc.lock", "cc.json", "abc.lock")
    for name in names:
        (tmp_path / name).touch()
    found = [p.rsplit("/", 1)[-1] for p in leaks._cache_files("c", [tmp_path])]
    assert found == [".c.json.0a1b2c3d.tmp", "c.json", "c.statuslock"]
