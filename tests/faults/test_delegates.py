"""Delegates that misbehave, through the engine with the reference plugins.

The pod has the cluster network (bridge, host-local) and the NAD ``bad``:
macvlan with host-local, then the ``misbehave`` plugin (misbehave.py).
Whatever the plugin does on ADD, the ADD fails cleanly or succeeds
completely; whatever it does on DEL, DEL releases everything else and
answers "try again" only when a retry can help.  Each test ends with leak
accounting: links and addresses, leases, cache files, processes.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from multihome.cni.errors import CNIError, Code
from multihome.testing import leaks

if TYPE_CHECKING:
    from conftest import Node  # the fixture's type (tests/faults/conftest.py)

pytestmark = pytest.mark.netns


@pytest.mark.parametrize(
    ("behaviour", "code", "says"),
    [
        ("hang", Code.TRY_AGAIN_LATER, "did not finish ADD within"),
        ("sigkill", Code.INTERNAL, "killed by signal SIGKILL"),
        ("garbage", Code.DECODE_FAILURE, "failed to decode the result"),
        ("huge", Code.DECODE_FAILURE, "printed more than 262144 bytes on stdout"),
    ],
)
def test_a_failing_add_leaves_nothing(node: Node, behaviour: str, code: int, says: str) -> None:
    node.behave(ADD=behaviour)
    pod = node.world.pod("web", "bad")

    with pytest.raises(CNIError) as caught:
        node.call("ADD", pod)

    assert caught.value.code == code
    assert says in caught.value.msg
    assert "misbehave" in caught.value.msg
    node.assert_clean(pod)


def test_a_child_that_keeps_the_pipes_does_not_hold_the_add(node: Node) -> None:
    node.behave(ADD="fork")
    pod = node.world.pod("web", "bad")

    node.call("ADD", pod)

    assert {"eth0", "net1"} <= set(node.world.lab.links(pod.netns))
    held = node.leftovers(pod)
    assert held.processes == (), "the forked child outlived the plugin's call"
    node.call("DEL", pod)
    node.assert_clean(pod)


@pytest.mark.parametrize("behaviour", ["deep", "garbage", "sigkill", "huge"])
def test_a_del_that_fails_for_good_releases_everything_else(node: Node, behaviour: str) -> None:
    """A retry cannot fix these: DEL answers ok, the other networks are released."""
    pod = node.world.pod("web", "bad")
    node.call("ADD", pod)
    node.behave(DEL=behaviour)

    node.call("DEL", pod)
    node.call("DEL", pod)  # and again: still ok, nothing recreated

    node.assert_clean(pod)


def test_a_del_that_hangs_is_retried_and_the_rest_released(node: Node) -> None:
    pod = node.world.pod("web", "bad")
    node.call("ADD", pod)
    node.behave(DEL="hang")

    with pytest.raises(CNIError) as caught:
        node.call("DEL", pod)

    assert caught.value.code == Code.TRY_AGAIN_LATER
    held = node.leftovers(pod)
    # The cluster network (eth0, its lease) is gone; what failed stays recorded.
    assert "eth0" not in held.pod_links
    assert held.cache_files == (str(node.record_path(pod)),)
    assert held.processes == ()

    node.behave(DEL="ok")
    node.call("DEL", pod)
    node.assert_clean(pod)


@pytest.mark.parametrize("broken", ["not executable", "wrong format"])
def test_a_plugin_that_cannot_run(node: Node, broken: str) -> None:
    script = node.bin_dir / "misbehave"
    pod = node.world.pod("web", "bad")
    node.call("ADD", pod)
    if broken == "not executable":
        script.chmod(0o644)
    else:
        script.write_bytes(b"\x7fELF\x02\x01\x01garbage")
        script.chmod(stat.S_IRWXU)

    # With a record: released but for the plugin, and never "try again".
    node.call("DEL", pod)
    node.assert_clean(pod)
    # Without a record: ok, and no record made up.
    node.call("DEL", pod)
    assert not os.path.exists(node.record_path(pod))

    other = node.world.pod("other", "bad")
    with pytest.raises(CNIError) as caught:
        node.call("ADD", other)
    assert caught.value.code == Code.INVALID_NETWORK_CONFIG
    assert "failed to execute plugin" in caught.value.msg
    node.assert_clean(other)


@pytest.mark.parametrize("behaviour", ["huge", "fork"])
def test_through_the_thin_plugin(node: Node, behaviour: str) -> None:
    """The same bounds hold in the one-shot plugin (a process per call)."""
    node.world.mode = "thin"
    node.behave(ADD=behaviour, DEL=behaviour)
    pod = node.world.pod("web", "bad")

    if behaviour == "huge":
        with pytest.raises(CNIError) as caught:
            node.world.add(pod)
        assert caught.value.code == Code.DECODE_FAILURE
    else:
        node.world.add(pod)
        assert node.leftovers(pod).processes == ()
    node.world.delete(pod)
    node.assert_clean(pod)


def test_an_interface_whose_del_can_never_succeed_is_removed(node: Node) -> None:
    """macvlan releases its IPAM first and stops when that fails, keeping its link:
    a DEL that fails for good would leave the interface in the pod."""
    world = node.world
    macvlan = {"type": "macvlan", "master": world.lab.macvlan_parent("lan2"), "mode": "bridge"}
    macvlan["ipam"] = {"type": "misbehave"}
    world.nad("bad", {"cniVersion": "1.0.0", "name": "bad", "plugins": [macvlan]})
    node.before = leaks.baseline(world.lab)
    node.behave(ADD="ipam", DEL="garbage")
    pod = world.pod("web", "bad")
    node.call("ADD", pod)
    assert "net1" in world.lab.links(pod.netns)

    node.call("DEL", pod)

    node.assert_clean(pod)
