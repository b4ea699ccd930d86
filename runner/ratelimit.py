"""Rate limiting: one pacing bucket per (account, region, read|write), on an injected clock.

Each bucket hands out evenly spaced send slots (virtual scheduling, as in GCRA): a caller takes
the next free slot and sleeps until it. Waiters are served in arrival order, and a cancelled
waiter costs nothing but its slot. Throttled answers slow the bucket down (multiplicative
decrease); successes bring it back towards the configured rate (additive increase).

`cubic_rate` is the CUBIC curve (as in the AWS SDKs' adaptive retry mode) as a pure function of
the time since a cut, and `RateMeter` measures the send rate over the last couple of seconds.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from runner.clock import Clock


class Access(enum.StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True, order=True)
class BucketKey:
    account: str
    region: str
    access: Access


CUT_COOLDOWN = 1.0  # seconds between two rate cuts
BETA = 0.7  # the rate is cut to BETA x W_max on news of a throttle
CUBIC_C = 0.4  # curve steepness, (requests/s) per s^3: about 1.8 s back to W_max = 8/s
METER_WINDOW = 2.0  # seconds of sends the measured rate is taken over
_EPSILON = 1e-9


def cubic_rate(elapsed: float, w_max: float, *, beta: float = BETA, c: float = CUBIC_C) -> float:
    """The CUBIC window as a rate: `elapsed` seconds after a cut from `w_max`.

    W(t) = c·(t − K)³ + w_max with K = ∛(w_max·(1 − beta)/c): it starts at beta·w_max, climbs
    concavely to w_max at t = K, stays near it, then rises convexly above it.
    """
    if w_max <= 0:
        raise ValueError("w_max must be > 0")
    if not 0 < beta < 1 or c <= 0:
        raise ValueError("need 0 < beta < 1 and c > 0")
    k = math.cbrt(w_max * (1 - beta) / c)
    t = max(0.0, elapsed)
    return c * (t - k) ** 3 + w_max


class RateMeter:
    """The send rate over the last `window` seconds (and at least the last two sends)."""

    def __init__(self, window: float = METER_WINDOW) -> None:
        self._window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> None:
        self._times.append(now)
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
    """Paces requests to `rate` per second, allowing a burst of `burst` back-to-back sends."""

    def __init__(
        self,
        clock: Clock,
        rate: float,
        *,
        burst: int = 1,
        min_rate: float = 0.2,
        recovery: float = 0.02,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._clock = clock
        self.max_rate = rate
        self.rate = rate
        self._burst = max(1, burst)
        self._min_rate = min(min_rate, rate)
        self._recovery = recovery  # fraction of max_rate regained per success
        self._next_slot = clock.monotonic()
        self._last_cut = float("-inf")
        self.throttled = 0

    def reserve(self) -> float:
        """Take the next send slot and return how long the caller must wait for it."""
        now = self._clock.monotonic()
        interval = 1.0 / self.rate
        earliest = now - (self._burst - 1) * interval
        slot = max(self._next_slot, earliest)
        self._next_slot = slot + interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._clock.sleep(delay)

    def on_throttled(self, retry_after: float | None = None) -> None:
        """The server said slow down: halve the rate and pause the bucket if told how long.

        Answers to requests that were already in flight say the same thing again, so the rate is
        cut at most once per second.
        """
        self.throttled += 1
        now = self._clock.monotonic()
        if now - self._last_cut >= CUT_COOLDOWN:
            self._last_cut = now
            self.rate = max(self._min_rate, self.rate / 2)
        if retry_after:
            self._next_slot = max(self._next_slot, self._clock.monotonic() + retry_after)

    def on_success(self) -> None:
        if self.rate < self.max_rate:
            self.rate = min(self.max_rate, self.rate + self.max_rate * self._recovery)


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
        self._buckets: dict[BucketKey, Bucket] = {}

    def bucket(self, account: str, region: str, access: Access) -> Bucket:
        if self._shared:
            access = Access.WRITE
        key = BucketKey(account, region, access)
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = Bucket(self._clock, self._rates[access])
        return found
