"""The daemon's bounded pool for blocking file I/O (daemon/iothreads.py)."""

from __future__ import annotations

import asyncio
import threading

from multihome.daemon import iothreads


def test_to_thread_runs_on_at_most_the_bound_of_threads() -> None:
    threads = iothreads.IO_THREADS
    # Each batch of calls meets at a barrier the size of the bound: the pool
    # must run that many at once, and three batches find no further thread.
    barrier = threading.Barrier(threads, timeout=30)
    names: set[str] = set()

    def call() -> None:
        names.add(threading.current_thread().name)
        barrier.wait()

    async def main() -> None:
        iothreads.install(asyncio.get_running_loop())
        await asyncio.gather(*(asyncio.to_thread(call) for _ in range(3 * threads)))

    asyncio.run(main())
    assert len(names) == threads
    assert all(name.startswith("multihome-io") for name in names)
