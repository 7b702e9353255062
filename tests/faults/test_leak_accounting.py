"""The leak accounting itself: it sees what an ADD made and that a DEL removed it."""

from __future__ import annotations

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
