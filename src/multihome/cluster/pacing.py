"""How fast the node talks to the API server: a token bucket and backoff with jitter.

One daemon per node means thousands of clients of one API server; each
must stay inside its request budget (client-go's QPS/burst) and must not
retry in lock step after an outage (exponential backoff with jitter).  Both
take their clock and sleep as arguments so that loops using them can be
tested without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `acquire` waits for one.

    Waiters reserve their token before sleeping (the balance goes negative),
    as Go's ``rate.Limiter`` does, so concurrent callers are served in order
    without waking each other up.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {rate}/{burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> bool:
        """Take a token if one is there now."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def acquire(self) -> None:
        self._refill()
        self._tokens -= 1
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate)


class Backoff:
    """Exponential delays from `initial` to `maximum`, each stretched by up to `jitter`."""

    def __init__(
        self,
        *,
        initial: float,
        maximum: float,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the base."""
        base = self._next
        self._next = min(self.maximum, base * self.factor)
        return min(self.maximum, base * (1 + self.jitter * self._rng()))

    def reset(self) -> None:
        self._next = self.initial
