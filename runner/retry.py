"""Backoff maths (pure) and the retry policy."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# The longest a server's retry-after is honoured, s: a longer (or absurd) one must not stall a run.
MAX_RETRY_AFTER = 60.0


def full_jitter(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Delay before retry number `attempt` (0-based): uniform in [0, min(cap, base·2^attempt)).

    `rand` is a number in [0, 1), passed in so the maths stays pure.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = min(cap, base * (2.0 ** min(attempt, 62)))
    return ceiling * rand


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times a retryable failure is tried again, and how long to wait between tries."""

    max_attempts: int = 8
    base: float = 0.5
    cap: float = 20.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Delay after failed attempt `attempt`; the server's retry-after wins when it is longer,
        up to MAX_RETRY_AFTER (a value that is not a finite positive number is ignored)."""
        jitter = full_jitter(attempt, base=self.base, cap=self.cap, rand=rng.random())
        if retry_after is not None and math.isfinite(retry_after) and retry_after > jitter:
            return min(retry_after, MAX_RETRY_AFTER)
        return jitter

    def gives_up_after(self, attempt: int) -> bool:
        """True when attempt number `attempt` (0-based) was the last one allowed."""
        return attempt + 1 >= self.max_attempts
