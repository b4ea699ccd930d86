"""Token pacing on a fake clock: even spacing, adaptive slow-down, separate buckets."""

from __future__ import annotations

import math

import anyio
import pytest

from runner.clock import FakeClock
from runner.ratelimit import BETA, CUBIC_C, Access, Bucket, RateLimiter, RateMeter, cubic_rate

# -- the curve -----------------------------------------------------------------------------------


def k_of(w_max: float) -> float:
    return math.cbrt(w_max * (1 - BETA) / CUBIC_C)


def test_cubic_starts_at_beta_times_w_max() -> None:
    """Right after a cut the curve is at BETA x W_max."""
    assert cubic_rate(0.0, 8.0) == pytest.approx(BETA * 8.0)
    assert cubic_rate(-1.0, 8.0) == pytest.approx(BETA * 8.0)


def test_cubic_is_back_at_w_max_after_k_and_flat_there() -> None:
    """At t = K the curve is at W_max with zero slope, and within 4 % of it for K/2 either side."""
    k = k_of(8.0)
    assert cubic_rate(k, 8.0) == pytest.approx(8.0)
    slope = (cubic_rate(k + 1e-4, 8.0) - cubic_rate(k - 1e-4, 8.0)) / 2e-4
    assert slope == pytest.approx(0.0, abs=1e-6)
    for t in (k / 2, 3 * k / 2):
        assert cubic_rate(t, 8.0) == pytest.approx(8.0, rel=0.04)


def test_cubic_rises_and_probes_above_w_max() -> None:
    """The curve never falls, and keeps rising above W_max, faster the longer it goes."""
    points = [cubic_rate(t / 10, 8.0) for t in range(100)]
    assert points == sorted(points)
    k = k_of(8.0)
    gains = [cubic_rate(k + s, 8.0) - 8.0 for s in (1.0, 2.0, 3.0)]
    assert gains == pytest.approx([CUBIC_C, 8 * CUBIC_C, 27 * CUBIC_C])


def test_cubic_refuses_bad_arguments() -> None:
    """A non-positive W_max, or BETA or C out of range, is refused."""
    with pytest.raises(ValueError, match="w_max"):
        cubic_rate(1.0, 0.0)
    with pytest.raises(ValueError, match="beta"):
        cubic_rate(1.0, 8.0, beta=1.0)
    with pytest.raises(ValueError, match="c > 0"):
        cubic_rate(1.0, 8.0, c=0.0)


# -- the meter -----------------------------------------------------------------------------------


def test_meter_reads_the_spacing_of_paced_sends() -> None:
    """Sends 0.125 s apart measure 8/s; fewer than two sends measure nothing."""
    meter = RateMeter(window=2.0)
    meter.record(0.0)
    assert meter.rate(0.0) is None
    for i in range(1, 40):
        meter.record(i * 0.125)
    assert meter.rate(39 * 0.125) == pytest.approx(8.0)


def test_meter_falls_when_sends_stop() -> None:
    """After the sends stop the measured rate falls, down to the last two sends over their age."""
    meter = RateMeter(window=2.0)
    for i in range(17):
        meter.record(i * 0.125)  # 0 .. 2 s at 8/s
    assert meter.rate(2.0) == pytest.approx(8.0)
    assert meter.rate(3.0) == pytest.approx(9 / 2.0)  # the 9 sends of 1 .. 2 s over 1 .. 3 s
    assert meter.rate(12.0) == pytest.approx(2 / 10.125)  # the last two sends are kept


# -- pacing and feedback ---------------------------------------------------------------------------


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
