"""The request budget and the backoff, on a fake clock: no waiting, exact numbers."""

from __future__ import annotations

import pytest

from multihome.cluster.pacing import Backoff, TokenBucket
from multihome.testing.fakeclock import FakeTime


async def test_the_burst_is_free_then_requests_are_spaced_by_the_rate():
    t = FakeTime()
    bucket = TokenBucket(rate=5.0, burst=3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        await bucket.acquire()
    assert t.slept == []
    await bucket.acquire()
    await bucket.acquire()
    assert t.slept == pytest.approx([0.2, 0.2])


async def test_quiet_time_refills_up_to_the_burst_only():
    t = FakeTime()
    bucket = TokenBucket(rate=1.0, burst=2, clock=t.clock, sleep=t.sleep)
    await bucket.acquire()
    await bucket.acquire()
    t.now += 3600
    assert bucket.try_acquire() and bucket.try_acquire()
    assert not bucket.try_acquire()


def test_a_bucket_needs_a_positive_rate_and_burst():
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst >= 1"):
        TokenBucket(rate=1, burst=0)


def test_backoff_doubles_to_its_cap_and_resets():
    backoff = Backoff(initial=0.5, maximum=3.0, rng=lambda: 0.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_jitter_stretches_each_delay_but_never_past_the_cap():
    backoff = Backoff(initial=1.0, maximum=3.0, jitter=0.5, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(3)] == [1.5, 3.0, 3.0]
