"""The daemon killed or stopped in the middle of things, and its successor.

A plugin that must hang is the gate (`multihome.testing.gate`), which can
also ignore SIGTERM; the daemon is a child process (`DaemonProcess`).
Every scenario ends with the runtime's retries on a new daemon and with
leak accounting, and checks the daemon's memory against its 50 MiB budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from multihome.testing import leaks
from multihome.testing.daemon import DaemonProcess, shim_binary
from multihome.testing.gate import Gate, wait_for
from multihome.testing.lab import Lab
from multihome.testing.world import World

pytestmark = pytest.mark.netns

RSS_BUDGET = 50 * 2**20


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    if not shim_binary().exists():
        pytest.skip("the shim is not built: make -C shim")
    with ExitStack() as s:
        yield s


def within_memory_budget(daemon: DaemonProcess) -> None:
    rss = daemon.info()["residentMemoryBytes"]
    print(f"daemon resident memory: {rss / 2**20:.1f} MiB")
    assert rss < RSS_BUDGET


def test_sigterm_with_a_rollback_that_hangs_stays_within_its_budget(
    lab: Lab, stack: ExitStack
) -> None:
    daemon = stack.enter_context(DaemonProcess(config={"shutdownTimeoutSeconds": 3}))
    world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
    # The gate hangs on ADD and, when the cancelled ADD rolls back, on DEL too.
    gate = Gate(world, hold=("ADD", "DEL"), ignore_term=True)
    before = leaks.baseline(lab)
    pod = world.pod("web", gate.name)
    add = world.spawn("ADD", pod)
    gate.wait_held()
    within_memory_budget(daemon)

    started = time.monotonic()
    daemon.terminate()
    # The bound is far below the plugin timeout (120 s) the shutdown used to wait for.
    assert daemon.wait(30) == 0
    print(f"shutdown with a hanging rollback took {time.monotonic() - started:.2f} s")

    code, answer = world.answer(add)
    assert (code, answer["code"]) == (1, 11)
    assert gate.held() == [f"{pod.container_id} ADD", f"{pod.container_id} DEL"]
    held = world.leftovers(pod, before)
    assert held.processes == ()  # the hanging plugins were killed with their groups
    # What could not be undone is recorded for the next daemon.
    assert held.cache_files == (str(world.cni_dir / "multihome" / f"{pod.container_id}.json"),)
    assert "eth0" in held.pod_links

    gate.release()
    successor = stack.enter_context(DaemonProcess(socket_dir=daemon.socket_dir))
    world.add(pod)  # the runtime's retry: undoes the record, then attaches afresh
    assert {"eth0", "net1"} <= set(lab.links(pod.netns))
    within_memory_budget(successor)
    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))


def test_a_new_daemon_kills_the_plugins_a_killed_one_left(lab: Lab, stack: ExitStack) -> None:
    first = stack.enter_context(DaemonProcess())
    world = World(lab, mode="shim", socket_dir=first.socket_dir)
    gate = Gate(world)  # never released while the first daemon lives
    before = leaks.baseline(lab)
    pod = world.pod("web", gate.name)
    add = world.spawn("ADD", pod)
    gate.wait_held()

    first.kill()

    code, answer = world.answer(add)
    assert (code, answer["code"]) == (1, 11)
    assert leaks.processes_of(pod.container_id) != ()  # the gate outlived its daemon

    second = stack.enter_context(DaemonProcess(socket_dir=first.socket_dir))

    # Ready means the leftovers are gone: they are killed before the socket opens.
    wait_for("the killed plugins to be reaped", lambda: not leaks.processes_of(pod.container_id))
    gate.release()
    world.add(pod)  # the runtime's retry
    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))
    within_memory_budget(second)


def test_sigterm_idle_and_with_an_add_in_flight(lab: Lab, stack: ExitStack) -> None:
    idle = stack.enter_context(DaemonProcess())
    assert idle.stop(30) == 0
    daemon = stack.enter_context(
        DaemonProcess(socket_dir=idle.socket_dir, config={"shutdownTimeoutSeconds": 60})
    )
    world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
    gate = Gate(world)
    before = leaks.baseline(lab)
    pod = world.pod("web", gate.name)
    add = world.spawn("ADD", pod)
    gate.wait_held()

    daemon.terminate()
    wait_for("/readyz to turn unready", lambda: daemon.readyz() == 500)
    gate.release()

    assert world.answer(add)[0] == 0  # the ADD in flight finished
    assert daemon.wait(30) == 0
    stack.enter_context(DaemonProcess(socket_dir=daemon.socket_dir))
    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))
