"""Rate limiting: an adaptive pacing bucket per (account, region, read|write), on an injected clock.

Pacing. A bucket is a token bucket refilled at its current `rate` and holding at most `burst`
tokens (one by default, so sends are evenly spaced). Callers of `acquire` queue on a fair lock and
only the head of the queue waits on the clock; when it wakes it looks again, so a rate cut or a
pause that arrives while it sleeps applies to the very next send, not only to later callers. A
head that wakes late is given its slot as of when it was due (up to LATE_CREDIT of an interval
back), so timer lateness does not slow the pace. A cancelled waiter costs nothing. The configured
rate is a hard ceiling: the bucket never refills faster than it, so no second holds more than
rate + burst sends.

Adaptation (CUBIC, after the AWS SDKs' adaptive retry mode). Until the first throttled answer the
bucket paces at the configured rate. A throttled answer is news when it answers a request granted
after the last cut and MIN_CUT_GAP has passed since that cut, or when CUT_COOLDOWN has passed
whatever it answers: answers to requests already in flight at a cut repeat what the cut acted on,
and a burst of refusals (as a limit counted per calendar second gives) must not cut the rate to
nothing. News records the rate it hit, W_max: the send rate measured over the last METER_WINDOW
seconds, or the allowed rate if lower; the rate is cut to BETA x W_max. Each success then moves
the rate along the cubic curve `cubic_rate` from that cut: back up to W_max in K seconds, flat
near it, then probing above it, slowly at first and faster the longer nothing is throttled. The
curve is a share of W_max, and below REFERENCE_RATE its time runs slower in proportion: every
limit is probed over about as many requests (a time-only curve throttled one request in three
at 1/s, one in twenty at 8/s).
Growth never takes the rate above GROWTH_CAP times the measured send rate, so a bucket that is
not kept busy does not bank an allowed rate it has never tried. An x-acs-retry-after pause
(clamped to MAX_PAUSE) holds the bucket, besides the cut.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from runner.clock import Clock
from runner.models import Access

__all__ = ["Access", "Bucket", "BucketKey", "RateLimiter"]


@dataclass(frozen=True, slots=True, order=True)
class BucketKey:
    account: str
    region: str
    access: Access


BETA = 0.7  # the rate is cut to BETA x W_max on news of a throttle
# curve steepness, as a share of W_max per s^3: 1.8 s back to W_max at any rate (as the
# AWS SDKs' 0.4 (requests/s) per s^3 gives at 8/s; at 1/s that absolute slope probed 40 %
# above the limit within a second of reaching it, and a third of the requests were throttled)
CUBIC_C = 0.05
# below this rate the curve's time runs slower, in proportion: a limit of 1/s is probed over
# as many requests as one of 8/s (over 8 times the seconds), not over as few seconds, which at
# 1/s would be a throttled answer every fourth or fifth request
REFERENCE_RATE = 8.0
GROWTH_CAP = 2.0  # the allowed rate grows to at most this many times the measured send rate
CUT_COOLDOWN = 1.0  # seconds after which a throttled answer is news whatever was in flight
MIN_CUT_GAP = 0.2  # seconds between two cuts at least, however fresh the news
LATE_CREDIT = 0.5  # of an interval: how late a woken caller's slot may be dated back
MAX_PAUSE = 60.0  # longest pause a retry-after may impose, seconds
METER_WINDOW = 2.0  # seconds of sends the measured rate is taken over
_EPSILON = 1e-9
_TRIM_EVERY = 255  # a mask: the meter trims its window once every 256 sends


def cubic_rate(elapsed: float, w_max: float, *, beta: float = BETA, c: float = CUBIC_C) -> float:
    """The CUBIC window as a rate: `elapsed` seconds after a cut from `w_max`.

    W(t) = w_max·(c·(t − K)³ + 1) with K = ∛((1 − beta)/c): it starts at beta·w_max, climbs
    concavely to w_max at t = K, stays near it, then rises convexly above it. The curve scales
    with w_max (c is a share of it), so every limit is probed alike, 1/s as 50/s.
    """
    if w_max <= 0:
        raise ValueError("w_max must be > 0")
    if not 0 < beta < 1 or c <= 0:
        raise ValueError("need 0 < beta < 1 and c > 0")
    k = math.cbrt((1 - beta) / c)
    t = max(0.0, elapsed)
    return w_max * (c * (t - k) ** 3 + 1)


class RateMeter:
    """The send rate over the last `window` seconds (and at least the last two sends)."""

    def __init__(self, window: float = METER_WINDOW) -> None:
        self._window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> None:
        times = self._times
        times.append(now)
        # trimmed now and then (and always before `rate` reads it): not once per send
        if len(times) & _TRIM_EVERY == 0:
            self._trim(now)

    def rate(self, now: float) -> float | None:
        """Sends per second, or None before there are two sends to measure between.

        The spacing between the oldest and the newest send kept gives the rate of paced sends
        exactly; the time from the oldest until now bounds it once the sends have stopped."""
        self._trim(now)
        times = self._times
        if len(times) < 2:
            return None
        spacing = (len(times) - 1) / max(times[-1] - times[0], _EPSILON)
        return min(spacing, len(times) / max(now - times[0], _EPSILON))

    def _trim(self, now: float) -> None:
        times = self._times
        while len(times) > 2 and times[0] < now - self._window:
            times.popleft()


class Bucket:
    """Paces requests to an adaptive `rate` per second, never above the configured one."""

    def __init__(
        self,
        clock: Clock,
        rate: float,
        *,
        burst: int = 1,
        min_rate: float = 0.2,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._clock = clock
        self.max_rate = rate
        self.rate = rate
        self.throttled = 0
        self._burst = float(max(1, burst))
        self._min_rate = min(min_rate, rate)
        now = clock.monotonic()
        self._tokens = self._burst
        self._updated = now
        self._paused_until = now
        self._lock = anyio.Lock()
        self._meter = RateMeter()
        # CUBIC state: None until the first throttled answer
        self.w_max: float | None = None
        self._cut_at = now
        # throttles answering a request granted before the last cut repeat old news
        self._grants = 0
        self._answers = 0
        self._grants_at_cut = 0

    # -- pacing --------------------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        start = max(self._updated, self._paused_until)
        if now > start:
            self._tokens = min(self._burst, self._tokens + (now - start) * self.rate)
        self._updated = max(self._updated, now)

    def _wait(self, now: float) -> float:
        """Seconds until a token is there (refilled up to `now` already)."""
        shortfall = 1.0 - self._tokens
        ready = max(now, self._paused_until)
        if shortfall > _EPSILON:
            ready += shortfall / self.rate
        return max(0.0, ready - now)

    def _grant(self, now: float) -> None:
        self._tokens -= 1.0
        self._grants += 1
        self._meter.record(now)

    def reserve(self) -> float:
        """Take the next send slot and return how long the caller must wait for it.

        The slot is fixed at the rate of the moment; `acquire` is the way to send, as it looks
        again when it wakes."""
        now = self._clock.monotonic()
        self._refill(now)
        delay = self._wait(now)
        self._grant(now + delay)
        return delay

    def try_acquire(self) -> bool:
        """Take a send slot if one is free now and nobody is queued for one; never waits (and
        is no checkpoint: the caller's next await is)."""
        if self._lock.locked():
            return False
        now = self._clock.monotonic()
        self._refill(now)
        # what `_wait(now) == 0` says, without its arithmetic: a whole token, and no pause
        if 1.0 - self._tokens > _EPSILON or self._paused_until > now:
            return False
        self._grant(now)
        return True

    async def acquire(self) -> None:
        """Wait for a send slot. Callers are served in arrival order.

        A caller that slept for its slot and woke late is granted the slot as of when it was
        due, up to LATE_CREDIT of an interval back, so timer lateness does not slow the pace."""
        if self.try_acquire():  # nobody queued: a free slot is taken without the lock
            await anyio.lowlevel.checkpoint()
            return
        async with self._lock:
            due: float | None = None
            while True:
                now = self._clock.monotonic()
                if due is not None and due < now:
                    at = max(due, now - LATE_CREDIT / self.rate)
                    self._refill(at)
                    if self._wait(at) <= 0:
                        self._grant(at)
                        return
                self._refill(now)
                delay = self._wait(now)
                if delay <= 0:
                    self._grant(now)
                    return
                due = now + delay
                await self._clock.sleep(delay)

    def _set_rate(self, rate: float, now: float) -> None:
        self._refill(now)  # tokens earned so far were earned at the old rate
        self.rate = min(self.max_rate, max(self._min_rate, rate))

    # -- feedback ------------------------------------------------------------------------------

    def _answered(self) -> None:
        self._answers = min(self._answers + 1, self._grants)

    def on_throttled(self, retry_after: float | None = None) -> None:
        """The server said slow down: cut the rate (once per news) and pause if told how long."""
        self.throttled += 1
        self._answered()
        now = self._clock.monotonic()
        if retry_after is not None and retry_after > 0:
            self._refill(now)  # no token accrues while paused
            self._paused_until = max(self._paused_until, now + min(retry_after, MAX_PAUSE))
        if self.w_max is not None and not self._is_news(now):
            return
        measured = self._meter.rate(now)
        hit = self.rate if measured is None else min(self.rate, measured)
        self.w_max = max(hit, self._min_rate)
        self._cut_at = now
        self._grants_at_cut = self._grants
        self._set_rate(BETA * self.w_max, now)

    def _is_news(self, now: float) -> bool:
        since = now - self._cut_at
        fresh = self._answers > self._grants_at_cut  # answers a request granted after the cut
        return (fresh and since >= MIN_CUT_GAP) or since >= CUT_COOLDOWN

    def on_success(self) -> None:
        """An answer that was not throttled: move the rate along the curve since the last cut."""
        self._answers = min(self._answers + 1, self._grants)  # _answered(), once per request
        if self.w_max is None:
            return
        now = self._clock.monotonic()
        pace = min(1.0, self.w_max / REFERENCE_RATE)  # the curve's time, slower at low limits
        target = cubic_rate((now - self._cut_at) * pace, self.w_max)
        measured = self._meter.rate(now)
        if measured is not None:
            target = min(target, max(self.rate, GROWTH_CAP * measured))
        self._set_rate(target, now)


class RateLimiter:
    """The buckets of a run, made on first use.

    Without a read rate, reads and writes share one bucket: the Basic edition counts all calls
    together, so that is the only safe default. A read rate gives reads their own bucket (the
    Enterprise edition limits reads and writes apart).
    """

    def __init__(self, clock: Clock, *, write_rate: float, read_rate: float | None = None) -> None:
        self._clock = clock
        self._rates = {Access.WRITE: write_rate, Access.READ: read_rate or write_rate}
        self._shared = read_rate is None
        # by (account, region, access) as a plain tuple: hashed in C, once per request
        self._buckets: dict[tuple[str, str, Access], Bucket] = {}

    def bucket(self, account: str, region: str, access: Access) -> Bucket:
        if self._shared:
            access = Access.WRITE
        key = (account, region, access)
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = Bucket(self._clock, self._rates[access])
        return found
