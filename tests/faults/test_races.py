"""Two commands for one container at once, and GC during an ADD, in both modes.

The first command stops in the gate plugin (`multihome.testing.gate`); the
second is started and the test waits until it is provably waiting (thin
mode: it holds the node lock file open while it waits for the container's
lock; the daemon: its request is queued), then opens the gate.  Every
answer must describe the node afterwards, checked by leak accounting.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from multihome.cni.result import Result
from multihome.engine.locks import lock_path
from multihome.testing import leaks
from multihome.testing.daemon import DaemonProcess, shim_binary
from multihome.testing.gate import Gate, holds_open, wait_for
from multihome.testing.lab import Lab
from multihome.testing.world import World

pytestmark = pytest.mark.netns


@pytest.fixture(params=["thin", "shim"])
def world(request: pytest.FixtureRequest, lab: Lab) -> Iterator[World]:
    with ExitStack() as stack:
        if request.param == "shim":
            if not shim_binary().exists():
                pytest.skip("the shim is not built: make -C shim")
            daemon = stack.enter_context(DaemonProcess())
            made = World(lab, mode="shim", socket_dir=daemon.socket_dir)
            made.daemon = daemon  # type: ignore[attr-defined]
        else:
            made = World(lab, mode="thin")
        yield made


def wait_until_waiting(world: World, proc_pid: int) -> None:
    """The second command has reached the container lock and waits there."""
    if world.mode == "thin":
        node_lock = world.cni_dir / "multihome" / ".gc.lock"
        wait_for("the second command to wait for the lock", lambda: holds_open(proc_pid, node_lock))
    else:
        daemon = world.daemon  # type: ignore[attr-defined]
        wait_for("the second request to queue", lambda: daemon.info()["queued"] >= 1)


def test_add_while_add(world: World) -> None:
    gate = Gate(world)
    before = leaks.baseline(world.lab)
    pod = world.pod("web", gate.name)
    first = world.spawn("ADD", pod)
    gate.wait_held()
    second = world.spawn("ADD", pod)
    wait_until_waiting(world, second.pid)
    assert first.poll() is None

    gate.release()
    code1, out1 = world.answer(first)
    code2, out2 = world.answer(second)

    # Both ok: the second ADD undid the first one's attachments and made its own.
    assert (code1, code2) == (0, 0), (out1, out2)
    assert {"eth0", "net1"} <= set(world.lab.links(pod.netns))
    assert [i.name for i in Result.parse(out2).interfaces if i.sandbox] == ["eth0"]
    held = world.leftovers(pod, before)
    assert [len(v) for v in held.leases.values()] == [2, 1]
    assert held.cache_files == (str(world.cni_dir / "multihome" / f"{pod.container_id}.json"),)
    assert held.processes == ()

    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))


def test_del_while_add(world: World) -> None:
    gate = Gate(world)
    before = leaks.baseline(world.lab)
    pod = world.pod("web", gate.name)
    add = world.spawn("ADD", pod)
    gate.wait_held()
    delete = world.spawn("DEL", pod)
    wait_until_waiting(world, delete.pid)

    gate.release()
    add_code, _ = world.answer(add)
    del_code, _ = world.answer(delete)

    # The ADD finished, then the DEL removed it all: nothing is left, no record either.
    assert (add_code, del_code) == (0, 0)
    leaks.assert_clean(world.leftovers(pod, before))
    assert not os.path.exists(lock_path(world.cni_dir / "multihome", pod.container_id))


def test_gc_while_add_keeps_the_container_in_flight(world: World) -> None:
    gate = Gate(world)
    before = leaks.baseline(world.lab)
    pod = world.pod("web", gate.name)
    add = world.spawn("ADD", pod)
    gate.wait_held()

    world.gc([])  # the runtime listed its containers before this ADD started

    gate.release()
    code, out = world.answer(add)
    assert code == 0, out
    # The ADD answered ok and its pod has everything: nothing was collected under it.
    assert {"eth0", "net1"} <= set(world.lab.links(pod.netns))
    held = world.leftovers(pod, before)
    assert [len(v) for v in held.leases.values()] == [2, 1]
    assert len(held.cache_files) == 1

    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))
