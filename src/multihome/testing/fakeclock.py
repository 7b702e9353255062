"""A clock that only sleeping moves, for pacing and backoff under test.

Code that waits takes an injectable ``clock`` and ``sleep`` (the token
bucket, the backoff, the event sender); with these, a test sees the exact
delays asked for and never waits for them.
"""

from __future__ import annotations

import asyncio


class FakeTime:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would
