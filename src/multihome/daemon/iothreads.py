"""The daemon's threads for blocking file I/O: a fixed few, whatever the node's size.

``asyncio.to_thread`` runs on the event loop's default executor, which
starts up to min(32, CPUs + 4) threads and keeps each one for good.  Each
costs its stack and, with glibc, a malloc arena of its own: about 60 KiB
resident per thread in the memory bench (``python -m bench --only memory``:
6 threads on a 2-CPU machine; 32 on a node of 28 CPUs or more).  What runs
there is short file I/O: attachment records and status writes (with their
fsync), lock scans, the metrics page.  `IO_THREADS` of them serve the
admission limit's 32 requests (``maxConcurrentRequests``): a request spends
most of its time in its plugins, not in these calls.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

#: Threads for ``asyncio.to_thread`` in the daemon (docs/limits.md, "Daemon memory").
IO_THREADS = 4


def install(loop: asyncio.AbstractEventLoop, threads: int = IO_THREADS) -> ThreadPoolExecutor:
    """Make a pool of ``threads`` the default executor of ``loop`` (``asyncio.run`` shuts it)."""
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="multihome-io")
    loop.set_default_executor(executor)
    return executor
