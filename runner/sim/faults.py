"""Fault configuration for the simulator and the pure decisions drawn from it.

Every random choice comes from a seeded `random.Random` owned by the app, and every time-based
decision from the injected clock, so a run with the same seed and request order is reproduced
exactly.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

from runner.dataworks.actions import ACTIONS, AUTHORIZE_UPLOAD

QPS_CODE = "Throttling.User"
QPS_MESSAGE = "Your request is too frequent. Try again later."
QUOTA_CODE = "Throttling.Api.Risk"
QUOTA_MESSAGE = "The request for this resource has exceeded your daily available limit."
DAY = 86_400.0
# the actions --faults-only-on may name: DataWorks's and OpenPlatform's AuthorizeFileUpload
FAULTABLE_ACTIONS = frozenset({*ACTIONS, AUTHORIZE_UPLOAD.name})
IMPORT_ERROR = "IMPORT_ERROR"
PARTIAL_SUCCESS = "PARTIAL_SUCCESS"


@dataclass(frozen=True, slots=True)
class Faults:
    """What the simulator does wrong, and how often. Rates are probabilities per request."""

    qps_limit: int | None = None  # requests per second per access key, all actions
    daily_quota: int | None = None  # accepted requests per access key per UTC day
    retry_after: bool = False  # send x-acs-retry-after (ms) with Throttling.User
    error_rate: float = 0.0  # 503 ServiceUnavailable or 500 InternalError.System, no effect
    timeout_rate: float = 0.0  # effect applied, answer held back for hang_seconds
    reset_rate: float = 0.0  # effect applied, connection dropped without an answer
    applied_error_rate: float = 0.0  # effect applied, then answered 500 InternalError.System
    export_failure_rate: float = 0.0  # a started export ends EXPORT_ERROR
    latency: float = 0.0  # seconds added to every answer
    latency_jitter: float = 0.0  # plus uniform [0, jitter) seconds
    hang_seconds: float = 30.0
    missing_projects: frozenset[int] = field(default_factory=frozenset)
    faults_on_reads: bool = False  # error/timeout/reset also on the read operations
    apply_lag: float = 0.0  # an accepted create shows in reads (and takes its name) this late
    max_page_size: int | None = None  # ListMigrations serves, and echoes, at most this page size
    # malformed, oversized or lying answers (runner.sim.hostile), on reads and writes alike;
    # a write is applied first in about half of the cases
    hostile_rate: float = 0.0
    sts_ttl: float = 3600.0  # seconds a minted STS or credentials-URI key is accepted
    revoke_rate: float = 0.0  # share of minted keys revoked at a random point of their life
    import_failure_rate: float = 0.0  # a started import ends IMPORT_ERROR
    import_partial_rate: float = 0.0  # a started import ends PARTIAL_SUCCESS
    upload_reset_rate: float = 0.0  # an OSS post dropped once part of its file is in, not stored
    upload_policy_ttl: float = 3600.0  # seconds an AuthorizeFileUpload policy is accepted
    # when given, the error/timeout/reset/applied-error faults hit these actions only (reads
    # included), and no others
    faults_only_on: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        rates = ("error_rate", "timeout_rate", "reset_rate", "applied_error_rate")
        others = ("export_failure_rate", "hostile_rate", "revoke_rate", "upload_reset_rate")
        for name in (*rates, *others, "import_failure_rate", "import_partial_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if sum(getattr(self, name) for name in rates) > 1.0:
            raise ValueError(" + ".join(rates) + " must not exceed 1")
        if self.qps_limit is not None and self.qps_limit < 1:
            raise ValueError("qps_limit must be at least 1")
        if self.daily_quota is not None and self.daily_quota < 0:
            raise ValueError("daily_quota must not be negative")
        if min(self.latency, self.latency_jitter, self.hang_seconds, self.apply_lag) < 0:
            raise ValueError("latency, latency_jitter, hang_seconds and apply_lag must be >= 0")
        if self.max_page_size is not None and not 10 <= self.max_page_size <= 100:
            # the service takes a PageSize of 10 to 100: a smaller cap would be a page size the
            # simulator itself refuses when a client asks for the next page with it
            raise ValueError("max_page_size must be within [10, 100] (the PageSize range)")
        if not self.sts_ttl >= 1:
            raise ValueError("sts_ttl must be at least 1 second")
        if self.import_failure_rate + self.import_partial_rate > 1.0:
            raise ValueError("import_failure_rate + import_partial_rate must not exceed 1")
        if not self.upload_policy_ttl > 0:
            raise ValueError("upload_policy_ttl must be positive")
        unknown = sorted(set(self.faults_only_on) - FAULTABLE_ACTIONS)
        if unknown:
            known = ", ".join(sorted(FAULTABLE_ACTIONS))
            raise ValueError(
                f"faults_only_on: unknown action {', '.join(unknown)} (one of {known})"
            )

    def faulted(self, action: str, *, is_write: bool) -> bool:
        """Whether the error/timeout/reset/applied-error faults may hit a request to `action`."""
        if self.faults_only_on:
            return action in self.faults_only_on
        return is_write or self.faults_on_reads


class Fault(enum.StrEnum):
    """What happens to one request after the throttling checks."""

    NONE = "none"
    UNAVAILABLE = "unavailable"  # 503 ServiceUnavailable
    INTERNAL = "internal"  # 500 InternalError.System
    TIMEOUT = "timeout"
    RESET = "reset"
    APPLIED_ERROR = "applied_error"  # effect applied, then 500 InternalError.System


# (status, code, message) of the injected error answers
FAULT_ERRORS: dict[Fault, tuple[int, str, str]] = {
    Fault.UNAVAILABLE: (
        503,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    ),
    Fault.INTERNAL: (
        500,
        "InternalError.System",
        "An internal system error occurred. Try again later.",
    ),
}


def draw_fault(
    faults: Faults, rng: random.Random, *, is_write: bool, action: str | None = None
) -> Fault:
    """One draw per eligible request (`Faults.faulted`): error, timeout, reset or nothing, in
    proportion."""
    if not faults.faulted(action or "", is_write=is_write):
        return Fault.NONE
    total = faults.error_rate + faults.timeout_rate + faults.reset_rate
    if total + faults.applied_error_rate <= 0:
        return Fault.NONE
    u = rng.random()
    if u < faults.error_rate:
        return Fault.UNAVAILABLE if rng.random() < 0.5 else Fault.INTERNAL
    u -= faults.error_rate
    if u < faults.timeout_rate:
        return Fault.TIMEOUT
    u -= faults.timeout_rate
    if u < faults.reset_rate:
        return Fault.RESET
    u -= faults.reset_rate
    if u < faults.applied_error_rate:
        return Fault.APPLIED_ERROR
    return Fault.NONE


def draw_export_failure(faults: Faults, rng: random.Random) -> bool:
    if faults.export_failure_rate <= 0:
        return False
    return rng.random() < faults.export_failure_rate


def draw_import_end(faults: Faults, rng: random.Random) -> str | None:
    """How a started import ends: None (IMPORT_SUCCESS), IMPORT_ERROR or PARTIAL_SUCCESS."""
    if faults.import_failure_rate <= 0 and faults.import_partial_rate <= 0:
        return None
    u = rng.random()
    if u < faults.import_failure_rate:
        return IMPORT_ERROR
    if u < faults.import_failure_rate + faults.import_partial_rate:
        return PARTIAL_SUCCESS
    return None


def draw_upload_reset(faults: Faults, rng: random.Random) -> bool:
    if faults.upload_reset_rate <= 0:
        return False
    return rng.random() < faults.upload_reset_rate


def draw_latency(faults: Faults, rng: random.Random) -> float:
    if faults.latency_jitter <= 0:
        return faults.latency
    return faults.latency + rng.uniform(0.0, faults.latency_jitter)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A throttled request: the 429 answer and, for QPS, when a retry would pass (ms)."""

    code: str
    message: str
    retry_after_ms: int | None = None
    status: int = 429


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class Throttle:
    """Per access key: a token bucket of `qps_limit` tokens refilled at `qps_limit` per second,
    so `qps_limit` back-to-back requests pass and the next one is refused; and a count of
    accepted requests per UTC day against `daily_quota`. Refused requests cost nothing."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._buckets: dict[str, _Bucket] = {}
        self._days: dict[str, tuple[int, int]] = {}  # key -> (day number, accepted that day)

    def check(self, access_key_id: str, now: float) -> Rejection | None:
        """Admit one request from `access_key_id` at `now`, or say why not."""
        limit = self._faults.qps_limit
        bucket: _Bucket | None = None
        if limit is not None:
            bucket = self._buckets.get(access_key_id)
            if bucket is None:
                bucket = self._buckets[access_key_id] = _Bucket(float(limit), now)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(limit), bucket.tokens + elapsed * limit)
            bucket.updated = max(bucket.updated, now)
            if bucket.tokens < 1.0:
                wait_ms = math.ceil((1.0 - bucket.tokens) / limit * 1000)
                retry = max(1, wait_ms) if self._faults.retry_after else None
                return Rejection(QPS_CODE, QPS_MESSAGE, retry)
        quota = self._faults.daily_quota
        if quota is not None:
            day = int(now // DAY)
            seen_day, count = self._days.get(access_key_id, (day, 0))
            if seen_day != day:
                count = 0
            if count >= quota:
                return Rejection(QUOTA_CODE, QUOTA_MESSAGE)
            self._days[access_key_id] = (day, count + 1)
        if bucket is not None:
            bucket.tokens -= 1.0
        return None

    def used_today(self, access_key_id: str, now: float) -> int:
        seen_day, count = self._days.get(access_key_id, (int(now // DAY), 0))
        return count if seen_day == int(now // DAY) else 0
