"""Admission of CNI work: bounded, one at a time per container, with deadlines, never torn.

Each CNI request runs as its own task, apart from the HTTP handler that
waits for it, for three reasons:

* a request that misses its deadline is cancelled once, and the engine's
  ADD then rolls back what it had attached; the cancelled task keeps its
  container's lock until the rollback is over, so the runtime's retry (or
  its DEL) cannot interleave with it, while the caller already has its
  answer;
* a caller that goes away (the shim killed by the runtime) does not cancel
  the work half-way;
* at shutdown every task is known: the daemon waits for them (bounded),
  cancels the rest once so they roll back, and waits for the rollbacks.

At most ``limit`` requests run at once; the others wait in line.  The
runtime already serialises the calls of one container; the per-container
lock makes that a guarantee even for a runtime (or a retry) that does not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: After cancelling a late request, how long its answer waits for the rollback.
ROLLBACK_WAIT = 30.0


class Late(Exception):
    """A job missed its deadline; it was cancelled (and is rolling back)."""

    def __init__(self, rolled_back: bool) -> None:
        super().__init__("deadline exceeded")
        #: Whether the cancelled work had finished (its rollback done) before the answer.
        self.rolled_back = rolled_back


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Jobs:
    def __init__(self, *, limit: int, rollback_wait: float = ROLLBACK_WAIT) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._locks: dict[str, _KeyLock] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._cancelled: set[asyncio.Task[object]] = set()
        self.rollback_wait = rollback_wait
        #: Jobs admitted and not yet running (waiting for a slot or their key's lock).
        self.queued = 0
        self.running = 0

    @property
    def in_flight(self) -> int:
        """Jobs not finished, cancelled ones still rolling back included."""
        return len(self._tasks)

    async def run(self, key: str, work: Callable[[], Awaitable[T]], *, timeout: float) -> T:
        """Run ``work()`` under ``key``'s lock within ``timeout`` seconds, queueing included.

        Raises `Late` when the deadline passes; the work is cancelled then.
        """
        task: asyncio.Task[T] = asyncio.create_task(self._job(key, work))
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        self._cancel(task)
        finished, _ = await asyncio.wait({task}, timeout=self.rollback_wait)
        raise Late(rolled_back=bool(finished))

    def _forget(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        self._cancelled.discard(task)
        if not task.cancelled():
            # Retrieved here: a late job's error has nobody left to read it.
            task.exception()

    def _cancel(self, task: asyncio.Task[object]) -> None:
        # Once only: a second cancel would interrupt the rollback the first one started.
        if task not in self._cancelled and not task.done():
            self._cancelled.add(task)
            task.cancel()

    async def _job(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        self.queued += 1
        started = False
        try:
            async with self._lock(key), self._slots:
                self.queued -= 1
                started = True
                self.running += 1
                try:
                    return await work()
                finally:
                    self.running -= 1
        finally:
            if not started:
                self.queued -= 1

    @asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        if not key:
            yield
            return
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    async def drain(self, timeout: float, *, rollback_timeout: float | None = None) -> int:
        """Wait up to ``timeout`` for every job; cancel the rest once and wait for them
        (up to ``rollback_timeout``; None: until they are done).

        Returns how many jobs had to be cancelled.
        """
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            self._cancel(task)
        remaining = set(self._tasks)
        if remaining:
            # Cancelled work is rolling back: it is not interrupted again.
            await asyncio.wait(remaining, timeout=rollback_timeout)
        return len(pending)
