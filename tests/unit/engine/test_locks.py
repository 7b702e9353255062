"""The lock files: one holder per container, none left behind, GC sees who holds one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from multihome.cni.errors import CNIError
from multihome.engine import locks


async def test_one_holder_at_a_time_and_no_file_left(tmp_path: Path) -> None:
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.container_lock(tmp_path, "c1"):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with locks.container_lock(tmp_path, "c1"):
            order.append("second in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_in.wait()
    assert os.path.exists(locks.lock_path(tmp_path, "c1"))
    release.set()
    await asyncio.gather(*tasks)

    assert order == ["first in", "first out", "second in"]
    assert not os.path.exists(locks.lock_path(tmp_path, "c1"))


async def test_a_lock_that_stays_taken_times_out(tmp_path: Path) -> None:
    async with locks.container_lock(tmp_path, "c1"):
        with pytest.raises(locks.LockTimeout, match=r"c1\.lock"):
            async with locks.container_lock(tmp_path, "c1", timeout=0):
                pass


async def test_a_waiter_in_the_same_process_gets_the_lock_when_it_is_released(
    tmp_path: Path,
) -> None:
    # Polling the lock file would find it free only after its next sleep (1 ms
    # and more); the in-process queue hands it over within a few loop turns.
    holding, release = asyncio.Event(), asyncio.Event()
    got: list[str] = []

    async def holder() -> None:
        async with locks.container_lock(tmp_path, "c1"):
            holding.set()
            await release.wait()

    async def waiter() -> None:
        await holding.wait()
        async with locks.container_lock(tmp_path, "c1"):
            got.append("waiter")

    first = asyncio.create_task(holder())
    second = asyncio.create_task(waiter())
    await holding.wait()
    for _ in range(5):
        await asyncio.sleep(0)  # the waiter is queued now
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)  # turns of the loop, no time
    assert got == ["waiter"]
    await asyncio.gather(first, second)
    assert locks._LOCAL == {}  # nothing kept once nobody holds or waits


async def test_gc_sees_the_containers_in_flight_and_tidies_stale_files(tmp_path: Path) -> None:
    Path(locks.lock_path(tmp_path, "crashed")).touch()  # left by a process that died
    async with locks.container_lock(tmp_path, "busy"), locks.gc_lock(tmp_path) as in_flight:
        assert in_flight == {"busy"}
    assert not os.path.exists(locks.lock_path(tmp_path, "crashed"))


async def test_a_cache_dir_that_is_a_file_is_a_cni_error(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("")
    with pytest.raises(CNIError) as error:
        async with locks.container_lock(tmp_path / "cache", "c1"):
            pass
    assert error.value.code == 5
    assert str(tmp_path / "cache") in error.value.msg


async def test_a_try_takes_a_free_lock_and_refuses_a_held_one(tmp_path: Path) -> None:
    async with locks.container_lock(tmp_path, "c1", timeout=0):
        with pytest.raises(locks.LockTimeout):
            async with locks.container_lock(tmp_path, "c1", timeout=0):
                pass
    async with locks.container_lock(tmp_path, "c1", timeout=0):
        pass


async def test_the_status_lock_is_apart_from_the_container_lock_and_gc(tmp_path: Path) -> None:
    async with locks.status_lock(tmp_path, "c1"):
        # A command of the container does not wait for a status write, nor GC for either.
        async with locks.container_lock(tmp_path, "c1", timeout=0):
            pass
        async with locks.gc_lock(tmp_path) as in_flight:
            assert in_flight == set()
        with pytest.raises(locks.LockTimeout):
            async with locks.status_lock(tmp_path, "c1", timeout=0):
                pass
    assert list(tmp_path.iterdir()) == [tmp_path / ".gc.lock"]
