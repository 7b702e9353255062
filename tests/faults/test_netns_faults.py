"""The pod's network namespace deleted before, during and after ADD (thin mode).

The runtime owns the namespace and may remove it at any moment (a sandbox
torn down while its ADD runs).  Whatever the moment: no answer lies, and
after the runtime's DEL nothing is left (leases included: plugins get an
empty CNI_NETNS for a namespace that is gone and release what they hold).
"""

from __future__ import annotations

import subprocess

import pytest

from multihome.cni.errors import CNIError
from multihome.testing import leaks
from multihome.testing.gate import Gate
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns


def delete_netns(pod: Sandbox) -> None:
    subprocess.run(["ip", "netns", "del", pod.netns.name], check=True)


def test_netns_gone_before_add(lab: Lab) -> None:
    world = World(lab, mode="thin")
    before = leaks.baseline(lab)
    pod = world.pod("web")
    delete_netns(pod)

    with pytest.raises(CNIError):
        world.add(pod)

    leaks.assert_clean(world.leftovers(pod, before))
    world.delete(pod)  # the runtime's DEL after a failed ADD: ok, nothing to do
    leaks.assert_clean(world.leftovers(pod, before))


def test_netns_gone_during_add(lab: Lab) -> None:
    world = World(lab, mode="thin")
    gate = Gate(world)
    before = leaks.baseline(lab)
    pod = world.pod("web", gate.name)
    add = world.spawn("ADD", pod)
    gate.wait_held()  # eth0 and net1 are in the namespace; the chain is not done

    delete_netns(pod)
    gate.release()
    code, answer = world.answer(add)

    # The check of the namespace after the chains fails: the ADD rolls back.
    assert code == 1, answer
    assert "web" in answer["msg"]
    leaks.assert_clean(world.leftovers(pod, before))
    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))


def test_netns_gone_after_add(lab: Lab) -> None:
    world = World(lab, mode="thin")
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    before = leaks.baseline(lab)
    pod = world.pod("web", "nad-a")
    world.add(pod)
    delete_netns(pod)

    world.delete(pod)

    leaks.assert_clean(world.leftovers(pod, before))
