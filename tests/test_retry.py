"""Backoff maths and the retry policy."""

from __future__ import annotations

import random

import pytest

from runner.retry import RetryPolicy, full_jitter


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 0.5), (1, 1.0), (3, 4.0), (10, 20.0)])
def test_full_jitter_ceiling_doubles_then_caps(attempt: int, ceiling: float) -> None:
    """The top of the jitter range doubles per attempt and stops at the cap."""
    assert full_jitter(attempt, base=0.5, cap=20.0, rand=0.999999) == pytest.approx(
        ceiling, rel=1e-5
    )
    assert full_jitter(attempt, base=0.5, cap=20.0, rand=0.0) == 0.0


def test_full_jitter_rejects_negative_attempt() -> None:
    """A negative attempt number is a programming error."""
    with pytest.raises(ValueError, match="attempt"):
        full_jitter(-1, base=1, cap=1, rand=0.5)


def test_huge_attempt_does_not_overflow() -> None:
    """Very late attempts stay at the cap instead of overflowing."""
    assert full_jitter(10_000, base=0.5, cap=20.0, rand=0.5) == 10.0


def test_retry_after_wins_when_longer() -> None:
    """The server's x-acs-retry-after is honoured when it is longer than the jitter."""
    policy = RetryPolicy(base=0.1, cap=1.0)
    assert policy.delay(0, random.Random(1), retry_after=2.5) == 2.5
    assert policy.delay(0, random.Random(1), retry_after=0.0001) < 0.1


def test_gives_up_after_max_attempts() -> None:
    """The last allowed attempt is max_attempts - 1."""
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up_after(n) for n in range(3)] == [False, False, True]
