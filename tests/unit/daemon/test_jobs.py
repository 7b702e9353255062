"""Admission of CNI work: the bound, the per-container order, deadlines and draining.

Work is played by coroutines that wait on events the test sets, so every
interleaving here is forced, not timed.  A deadline is only used where the
work never finishes on its own.
"""

from __future__ import annotations

import asyncio

import pytest

from multihome.daemon.jobs import Jobs, Late


class Work:
    """A job that reports its start, waits for release, and records its cleanup."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name
        self.started = asyncio.Event()
        self.rolling_back = asyncio.Event()
        self.release = asyncio.Event()
        self.cleanup_release = asyncio.Event()
        self.cleanup_release.set()

    async def __call__(self) -> str:
        self.log.append(f"start {self.name}")
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            # As the engine's ADD does: roll back, then let the cancellation through.
            self.log.append(f"rollback {self.name}")
            self.rolling_back.set()
            await self.cleanup_release.wait()
            self.log.append(f"rolled back {self.name}")
            raise
        self.log.append(f"end {self.name}")
        return self.name


async def settle() -> None:
    """Let every task that can run do so until it blocks (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_at_most_limit_jobs_run_and_the_others_wait() -> None:
    jobs = Jobs(limit=1)
    log: list[str] = []
    a, b = Work(log, "a"), Work(log, "b")
    ta = asyncio.create_task(jobs.run("c1", a, timeout=60))
    tb = asyncio.create_task(jobs.run("c2", b, timeout=60))
    await a.started.wait()
    await settle()
    assert (jobs.running, jobs.queued) == (1, 1)
    a.release.set()
    b.release.set()
    assert await asyncio.gather(ta, tb) == ["a", "b"]
    assert log == ["start a", "end a", "start b", "end b"]
    assert (jobs.running, jobs.queued, jobs.in_flight) == (0, 0, 0)


async def test_one_container_is_served_one_request_at_a_time() -> None:
    jobs = Jobs(limit=10)
    log: list[str] = []
    first, second, other = Work(log, "first"), Work(log, "second"), Work(log, "other")
    t1 = asyncio.create_task(jobs.run("c1", first, timeout=60))
    await first.started.wait()
    t2 = asyncio.create_task(jobs.run("c1", second, timeout=60))
    t3 = asyncio.create_task(jobs.run("c2", other, timeout=60))
    await other.started.wait()  # another container is not held up
    assert not second.started.is_set()
    first.release.set()
    await second.started.wait()
    second.release.set()
    other.release.set()
    await asyncio.gather(t1, t2, t3)
    assert log.index("end first") < log.index("start second")


async def test_a_late_job_is_cancelled_once_and_keeps_its_container_until_rolled_back() -> None:
    jobs = Jobs(limit=10, rollback_wait=0)
    log: list[str] = []
    slow, retry = Work(log, "slow"), Work(log, "retry")
    slow.cleanup_release.clear()  # the rollback takes a while

    with pytest.raises(Late) as late:
        await jobs.run("c1", slow, timeout=0.05)
    assert not late.value.rolled_back
    assert log == ["start slow", "rollback slow"]

    retried = asyncio.create_task(jobs.run("c1", retry, timeout=60))
    await settle()
    assert not retry.started.is_set()  # waits for the rollback, not interleaved with it
    slow.cleanup_release.set()
    await retry.started.wait()
    retry.release.set()
    assert await retried == "retry"
    assert log == ["start slow", "rollback slow", "rolled back slow", "start retry", "end retry"]


async def test_the_answer_waits_a_bounded_time_for_the_rollback() -> None:
    jobs = Jobs(limit=1)
    log: list[str] = []
    slow = Work(log, "slow")
    with pytest.raises(Late) as late:
        await jobs.run("c1", slow, timeout=0.05)
    assert late.value.rolled_back
    assert log[-1] == "rolled back slow"


async def test_drain_lets_jobs_finish() -> None:
    jobs = Jobs(limit=10)
    log: list[str] = []
    work = Work(log, "a")
    task = asyncio.create_task(jobs.run("c1", work, timeout=60))
    await work.started.wait()
    drained = asyncio.create_task(jobs.drain(timeout=60))
    await settle()
    assert not drained.done()
    work.release.set()
    assert await drained == 0
    assert await task == "a"


async def test_drain_cancels_what_does_not_finish_and_waits_for_the_rollback() -> None:
    jobs = Jobs(limit=10)
    log: list[str] = []
    work = Work(log, "a")
    work.cleanup_release.clear()
    task = asyncio.create_task(jobs.run("c1", work, timeout=60))
    await work.started.wait()
    drained = asyncio.create_task(jobs.drain(timeout=0.05))
    await asyncio.wait_for(work.rolling_back.wait(), timeout=10)
    await settle()
    assert not drained.done()  # the rollback is waited for, and not cancelled again
    work.cleanup_release.set()
    assert await drained == 1
    assert log[-1] == "rolled back a"
    with pytest.raises(asyncio.CancelledError):
        await task
