"""Work that waits until the runtime has its answer.

An ADD in the daemon leaves two things for later: its network-status (the
status writer) and its events.  Both are background tasks, and asyncio runs
whatever became ready first: woken while the ADD finishes, they would build
and send their requests before the request's own task gets to write the
answer (the job's result reaches it a loop turn or two later).  So the
daemon's request handler collects such work (`collecting`) and runs it once
the answer is on the wire; `defer` outside a collecting handler (thin mode,
the engine in tests, a job still running after its request was answered)
runs the work at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


class Later:
    """The work one request deferred; `run` does it, once."""

    __slots__ = ("_done", "_work")

    def __init__(self) -> None:
        self._work: list[Callable[[], object]] = []
        self._done = False

    def add(self, work: Callable[[], object]) -> None:
        if self._done:
            work()
        else:
            self._work.append(work)

    def run(self) -> None:
        self._done = True
        work, self._work = self._work, []
        for item in work:
            try:
                item()
            except Exception:  # one bookkeeping step must not keep the others from running
                log.exception("deferred work failed")


_LATER: contextvars.ContextVar[Later | None] = contextvars.ContextVar("later", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[Later]:
    """Collect what the code inside defers (tasks it starts included) into a `Later`.

    The caller runs it once the answer is sent, or when there is none to send.
    """
    later = Later()
    token = _LATER.set(later)
    try:
        yield later
    finally:
        _LATER.reset(token)


def defer(work: Callable[[], object]) -> None:
    """Run ``work`` once the current request is answered; at once outside one."""
    later = _LATER.get()
    if later is None:
        work()
    else:
        later.add(work)
