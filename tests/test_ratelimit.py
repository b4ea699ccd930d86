"""Token pacing on a fake clock: even spacing, adaptive slow-down, separate buckets."""

from __future__ import annotations

import anyio
import pytest

from runner.clock import FakeClock
from runner.ratelimit import Access, Bucket, RateLimiter


def test_slots_are_evenly_spaced(clock: FakeClock) -> None:
    """At 10/s, consecutive reservations are 0.1 s apart, starting now."""
    bucket = Bucket(clock, 10)
    delays = [bucket.reserve() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_idle_time_is_not_banked_beyond_burst(clock: FakeClock) -> None:
    """After a long idle spell only `burst` requests go out back to back."""
    bucket = Bucket(clock, 10, burst=3)
    clock.now += 100
    delays = [bucket.reserve() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


@pytest.mark.anyio
async def test_n_requests_take_n_over_r(clock: FakeClock) -> None:
    """200 acquisitions at 20/s by 16 concurrent callers finish after (N-1)/R seconds."""
    bucket = Bucket(clock, 20)
    start = clock.now

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()

    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(take, 200 // 16 + (1 if _ < 200 % 16 else 0))
    assert clock.now - start == pytest.approx(199 / 20, abs=0.2)


def test_throttling_halves_and_success_recovers(clock: FakeClock) -> None:
    """A throttled answer halves the rate; successes climb back to the configured rate."""
    bucket = Bucket(clock, 20)
    bucket.on_throttled()
    assert bucket.rate == 10
    bucket.on_throttled()  # an answer to a request already in flight: no second cut
    assert bucket.rate == 10
    clock.now += 1.0
    bucket.on_throttled()
    assert bucket.rate == 5
    bucket.on_throttled()
    assert bucket.rate == 5
    clock.now += 1.0
    bucket.on_throttled()
    assert bucket.rate == 2.5
    for _ in range(100):
        bucket.on_success()
    assert bucket.rate == 20


def test_retry_after_pauses_the_bucket(clock: FakeClock) -> None:
    """x-acs-retry-after pushes the next slot out by that long."""
    bucket = Bucket(clock, 100)
    bucket.on_throttled(retry_after=2.0)
    assert bucket.reserve() == pytest.approx(2.0)


def test_rate_never_drops_below_floor(clock: FakeClock) -> None:
    """Repeated throttling stops at the minimum rate instead of reaching zero."""
    bucket = Bucket(clock, 5, min_rate=0.5)
    for _ in range(50):
        clock.now += 1.0
        bucket.on_throttled()
    assert bucket.rate == 0.5


def test_buckets_are_per_account_region_and_access(clock: FakeClock) -> None:
    """Reads and writes, regions and accounts each get their own bucket."""
    limiter = RateLimiter(clock, write_rate=5, read_rate=50)
    w = limiter.bucket("ak", "cn-shanghai", Access.WRITE)
    assert limiter.bucket("ak", "cn-shanghai", Access.WRITE) is w
    assert limiter.bucket("ak", "cn-shanghai", Access.READ) is not w
    assert limiter.bucket("ak", "cn-hangzhou", Access.WRITE) is not w
    assert limiter.bucket("other", "cn-shanghai", Access.WRITE) is not w
    assert limiter.bucket("ak", "cn-shanghai", Access.READ).rate == 50


def test_reads_share_the_write_bucket_by_default(clock: FakeClock) -> None:
    """Without a read rate, reads and writes draw on one bucket, as Basic counts them."""
    limiter = RateLimiter(clock, write_rate=5)
    write = limiter.bucket("ak", "cn-shanghai", Access.WRITE)
    assert limiter.bucket("ak", "cn-shanghai", Access.READ) is write


def test_rate_must_be_positive(clock: FakeClock) -> None:
    """A zero rate is refused."""
    with pytest.raises(ValueError, match="rate"):
        Bucket(clock, 0)
