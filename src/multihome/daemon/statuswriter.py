"""The daemon's network-status writer: ADDs answer first, their status follows.

An ADD in the daemon leaves its network-status in a pending file
(`multihome.engine.statuswrites`) and answers once its networks are
attached; this writer takes every pending file as soon as it is woken,
several at a time (a node-reboot burst leaves a hundred at once), and
retries each one that fails on its own backoff, so one pod the API refuses
never delays the others.  Files a thin plugin sharing the cache dir left
are found by the same scan.

Ordering with DEL is the engine's: each attempt holds the container's
status lock and reads the file again under it, and DEL removes the file
under that lock (`multihome.engine.statuswrites`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from multihome.engine import statuswrites

log = logging.getLogger(__name__)

#: Backoff of one pending write: first retry after 1 s, then doubling up to 30 s.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
#: Writes in flight at once; the client's qps/burst paces them further.
PARALLEL = 8

Key = tuple[str, str]  # (cache dir, container ID)


class StatusWriter:
    """Writes what ``directories()`` hold pending with ``write(dir, id) -> done``."""

    def __init__(
        self,
        directories: Callable[[], Iterable[str]],
        write: Callable[[str, str], Awaitable[bool]],
        *,
        parallel: int = PARALLEL,
    ) -> None:
        self._directories = directories
        self._write = write
        self._parallel = asyncio.Semaphore(parallel)
        self.wake = asyncio.Event()
        #: Writes that failed: when each is due again, and its current backoff.
        self._retry: dict[Key, tuple[float, float]] = {}

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            self.wake.clear()
            await self.round()
            now = time.monotonic()
            wait = min((due for due, _ in self._retry.values()), default=now + RETRY_MAX) - now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0)):
                    await self.wake.wait()

    async def round(self) -> None:
        """One try for every pending write that is due."""
        now = time.monotonic()
        listed: set[Key] = set()
        due: list[Key] = []
        for directory in sorted(self._directories()):
            for container_id in statuswrites.pending_ids(directory):
                key = (directory, container_id)
                listed.add(key)
                if self._retry.get(key, (0.0, 0.0))[0] <= now:
                    due.append(key)
        # A DEL (or another process) took care of these.
        self._retry = {k: v for k, v in self._retry.items() if k in listed}
        await asyncio.gather(*(self._one(key) for key in due))

    async def _one(self, key: Key) -> None:
        async with self._parallel:
            try:
                done = await self._write(*key)
            except Exception:
                log.exception("writing the network-status of %s in %s", key[1], key[0])
                done = False
        if done:
            self._retry.pop(key, None)
            return
        backoff = self._retry.get(key, (0.0, RETRY_FIRST / 2))[1] * 2
        backoff = min(backoff, RETRY_MAX)
        self._retry[key] = (time.monotonic() + backoff, backoff)
