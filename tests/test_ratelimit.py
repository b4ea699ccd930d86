"""Token pacing on a fake clock: even spacing, the CUBIC feedback, the ceiling, separate buckets."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import anyio
import pytest

from runner.clock import FakeClock
from runner.ratelimit import (
    BETA,
    CUBIC_C,
    MAX_PAUSE,
    Access,
    Bucket,
    RateLimiter,
    RateMeter,
    cubic_rate,
)
from runner.sim.faults import Faults, Throttle

# -- the curve -----------------------------------------------------------------------------------


def k_of(w_max: float) -> float:
    return math.cbrt((1 - BETA) / CUBIC_C)


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
    assert gains == pytest.approx([8 * CUBIC_C, 8 * 8 * CUBIC_C, 8 * 27 * CUBIC_C])


@pytest.mark.parametrize("w_max", [0.5, 1.0, 8.0, 50.0])
def test_cubic_probes_every_limit_alike(w_max: float) -> None:
    """The curve scales with W_max: back at W_max after the same K at any limit (1.8 s), and
    the same share above it a second later (5 %), 1/s as 50/s."""
    k = k_of(w_max)
    assert k == pytest.approx(math.cbrt(0.3 / 0.05))
    assert cubic_rate(k, w_max) == pytest.approx(w_max)
    assert cubic_rate(k + 1.0, w_max) / w_max == pytest.approx(1.05)


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


# -- pacing --------------------------------------------------------------------------------------


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
        for i in range(16):
            tg.start_soon(take, 200 // 16 + (1 if i < 200 % 16 else 0))
    assert clock.now - start == pytest.approx(199 / 20, abs=0.2)


class LateClock(FakeClock):
    """A fake clock whose sleeps overrun by `late` seconds, like a busy event loop's timers."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds + self.late if seconds > 0 else seconds)


@pytest.mark.anyio
async def test_timer_lateness_does_not_slow_the_pace() -> None:
    """Waking 30 ms late for every 100 ms slot still makes 10/s, never two sends < 50 ms apart."""
    clock = LateClock(0.03)
    bucket = Bucket(clock, 10)
    start = clock.now
    sends: list[float] = []
    for _ in range(100):
        await bucket.acquire()
        sends.append(clock.now)
    assert clock.now - start == pytest.approx(99 / 10 + 0.03, abs=1e-6)
    assert min(b - a for a, b in itertools.pairwise(sends)) >= 0.05 - 1e-9


class HookedClock(FakeClock):
    """A fake clock that runs `hook` once, at the first sleep, as if an answer came meanwhile."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = hook

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()


@pytest.mark.anyio
async def test_a_pause_during_a_wait_holds_the_waiting_caller() -> None:
    """A caller already sleeping for its slot looks again when it wakes and honours a pause."""
    bucket: Bucket | None = None

    def throttled() -> None:
        assert bucket is not None
        bucket.on_throttled(retry_after=5.0)

    clock = HookedClock(throttled)
    bucket = Bucket(clock, 10)
    await bucket.acquire()
    start = clock.now
    await bucket.acquire()  # sleeps 0.1 s, during which the 5 s pause arrives
    assert clock.now - start == pytest.approx(0.1 + 5.0)


# -- feedback ------------------------------------------------------------------------------------


async def paced(bucket: Bucket, clock: FakeClock, seconds: float) -> None:
    """Send through `bucket` for `seconds` of fake time, every answer a success."""
    end = clock.now + seconds
    while clock.now < end:
        await bucket.acquire()
        bucket.on_success()


@pytest.mark.anyio
async def test_a_throttled_answer_cuts_the_rate(clock: FakeClock) -> None:
    """A throttle cuts the rate to BETA x the rate it was hit at, and records that as W_max."""
    bucket = Bucket(clock, 20)
    await paced(bucket, clock, 2.0)
    assert bucket.rate == 20
    bucket.on_throttled()
    assert bucket.w_max == pytest.approx(20, rel=0.01)
    assert bucket.rate == pytest.approx(BETA * 20, rel=0.01)
    assert bucket.throttled == 1


@pytest.mark.anyio
async def test_answers_in_flight_at_a_cut_do_not_cut_again(clock: FakeClock) -> None:
    """Throttles answering requests sent before the cut repeat its news: one cut only."""
    bucket = Bucket(clock, 20)
    for _ in range(4):
        await bucket.acquire()  # four requests in flight
    clock.now += 0.2
    bucket.on_throttled()  # all four come back throttled
    cut = bucket.rate
    assert cut < 20
    for _ in range(3):
        clock.now += 0.25
        bucket.on_throttled()
    assert bucket.rate == cut
    assert bucket.throttled == 4


@pytest.mark.anyio
async def test_fresh_news_cuts_again(clock: FakeClock) -> None:
    """A throttle answering a request sent after the cut cuts again, once the gap has passed."""
    bucket = Bucket(clock, 20)
    await paced(bucket, clock, 2.0)
    bucket.on_throttled()
    first = bucket.rate
    await bucket.acquire()
    clock.now += 0.25
    bucket.on_throttled()
    assert bucket.rate < first * 0.9


@pytest.mark.anyio
async def test_successes_bring_the_rate_back_to_the_configured_rate(clock: FakeClock) -> None:
    """After a cut, successes climb back to W_max in about K s, then up to the configured rate."""
    bucket = Bucket(clock, 20)
    await paced(bucket, clock, 2.0)
    await bucket.acquire()
    bucket.on_throttled()
    w_max = bucket.w_max
    assert w_max is not None
    await paced(bucket, clock, k_of(w_max) * 1.05)
    assert bucket.rate == pytest.approx(w_max, rel=0.05)
    await paced(bucket, clock, 10.0)
    assert bucket.rate == 20


@pytest.mark.anyio
async def test_growth_is_capped_by_the_measured_send_rate(clock: FakeClock) -> None:
    """A bucket sent through once a second does not climb the curve: no rate it never uses."""
    bucket = Bucket(clock, 50)
    await paced(bucket, clock, 1.0)
    bucket.on_throttled()
    cut = bucket.rate
    assert cut == pytest.approx(BETA * 50, rel=0.01)
    clock.now += 3.0  # the 50/s sends are out of the meter's window
    for _ in range(60):  # far past K: the curve alone would be back at 50/s
        clock.now += 1.0
        await bucket.acquire()
        bucket.on_success()
    assert bucket.rate == pytest.approx(cut)


@pytest.mark.anyio
async def test_the_configured_rate_is_a_ceiling(clock: FakeClock) -> None:
    """However long nothing is throttled, the rate stays at most the configured one and no
    second of sends holds more than that many sends plus one."""
    bucket = Bucket(clock, 10)
    await paced(bucket, clock, 2.0)
    bucket.on_throttled()
    sends: list[float] = []
    end = clock.now + 60.0
    while clock.now < end:
        await bucket.acquire()
        sends.append(clock.now)
        bucket.on_success()
        assert bucket.rate <= 10
    assert bucket.rate == 10
    for i, t in enumerate(sends):
        in_second = sum(1 for s in sends[i:] if s < t + 1.0)
        assert in_second <= 10 + 1


def test_retry_after_pauses_the_bucket(clock: FakeClock) -> None:
    """x-acs-retry-after pushes the next slot out by that long."""
    bucket = Bucket(clock, 100)
    bucket.on_throttled(retry_after=2.0)
    assert bucket.reserve() == pytest.approx(2.0)


def test_retry_after_is_clamped(clock: FakeClock) -> None:
    """A retry-after of an hour pauses the bucket for MAX_PAUSE (60 s) only."""
    assert MAX_PAUSE == 60.0
    bucket = Bucket(clock, 100)
    bucket.on_throttled(retry_after=3600.0)
    assert bucket.reserve() == pytest.approx(MAX_PAUSE)


@pytest.mark.anyio
async def test_rate_never_drops_below_floor(clock: FakeClock) -> None:
    """Repeated throttling stops at the minimum rate instead of reaching zero."""
    bucket = Bucket(clock, 5, min_rate=0.5)
    for _ in range(50):
        await bucket.acquire()
        clock.now += 1.0
        bucket.on_throttled()
    assert bucket.rate == 0.5


# -- the limiter ---------------------------------------------------------------------------------


def test_buckets_are_per_account_region_and_access(clock: FakeClock) -> None:
    """With a read rate, reads and writes, regions and accounts each get their own bucket."""
    limiter = RateLimiter(clock, write_rate=5, read_rate=50)
    w = limiter.bucket("ak", "cn-shanghai", Access.WRITE)
    assert limiter.bucket("ak", "cn-shanghai", Access.WRITE) is w
    assert limiter.bucket("ak", "cn-shanghai", Access.READ) is not w
    assert limiter.bucket("ak", "cn-hangzhou", Access.WRITE) is not w
    assert limiter.bucket("other", "cn-shanghai", Access.WRITE) is not w
    assert w.max_rate == 5
    assert limiter.bucket("ak", "cn-shanghai", Access.READ).max_rate == 50


def test_reads_share_the_write_bucket_by_default(clock: FakeClock) -> None:
    """Without a read rate, reads and writes draw on one bucket, as Basic counts them."""
    limiter = RateLimiter(clock, write_rate=5)
    write = limiter.bucket("ak", "cn-shanghai", Access.WRITE)
    assert limiter.bucket("ak", "cn-shanghai", Access.READ) is write


def test_rate_must_be_positive(clock: FakeClock) -> None:
    """A zero rate is refused."""
    with pytest.raises(ValueError, match="rate"):
        Bucket(clock, 0)


# -- against a server with a lower limit ---------------------------------------------------------


class CalendarSecond:
    """A server limit counted per calendar second: at most `limit` accepted in each second."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: dict[int, int] = {}

    def admit(self, now: float) -> bool:
        second = math.floor(now)
        if self._counts.get(second, 0) >= self._limit:
            return False
        self._counts[second] = self._counts.get(second, 0) + 1
        return True


class TokenBucket:
    """The simulator's own limit: a bucket of `limit` tokens refilled at `limit` per second."""

    def __init__(self, limit: int) -> None:
        self._throttle = Throttle(Faults(qps_limit=limit))

    def admit(self, now: float) -> bool:
        return self._throttle.check("key", now) is None


@pytest.mark.anyio
@pytest.mark.parametrize("model", [TokenBucket, CalendarSecond])
@pytest.mark.parametrize("limit", [1, 2, 8, 20])
async def test_a_rate_set_3x_too_high_learns_the_real_limit(
    clock: FakeClock, model: Callable[[int], TokenBucket | CalendarSecond], limit: int
) -> None:
    """Configured at 3 L against a server limited to L: at most 10 % of the requests are
    throttled and at least 0.8 L requests a second are accepted, retries included; at 1/s as
    at 20/s (the curve's time runs slower below REFERENCE_RATE)."""
    server = model(limit)
    bucket = Bucket(clock, 3 * limit)
    tasks = max(200, 50 * limit)  # enough for the start (at 3 L) to be a small part
    start = clock.now
    requests = accepted = 0
    while accepted < tasks:
        await bucket.acquire()
        requests += 1
        if server.admit(clock.now):
            accepted += 1
            bucket.on_success()
        else:
            bucket.on_throttled()
    throttled = (requests - accepted) / requests
    achieved = accepted / (clock.now - start)
    assert throttled <= 0.10
    assert achieved >= 0.8 * limit
