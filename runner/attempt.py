"""The attempt loop: the one way any phase sends a request and settles what came of it.

send → classify → (a lost answer: wait, then look the task up) → back off → send again.

A phase states its policy as data (`Policy`): which action (and so which bucket) it uses, whether
a lost answer is settled by a lookup before anything is resent, and what a permanent refusal
means. The loop returns a typed `Result`; it never raises for an answer, only for a journal that
cannot be written or a cancellation.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from runner.context import ApiClient, RunContext
from runner.dataworks.actions import ApiAction
from runner.journal import Op, RecordAttempt
from runner.logs import get_logger
from runner.models import ApiError, ErrorKind, TaskKey

T = TypeVar("T")

log = get_logger("runner.attempt")

SETTLE_SECONDS = 1.0  # wait after a lost answer before reading back what it did


class Outcome(enum.StrEnum):
    """How one loop ended."""

    DONE = "done"  # answered with a value
    SETTLED = "settled"  # a lookup found that a send (this run's or an earlier one's) was applied
    REFUSED = "refused"  # a permanent refusal
    GAVE_UP = "gave_up"  # out of attempts
    UNRESOLVED = "unresolved"  # a lookup could not be read: the outcome stays unknown
    LOST = "lost"  # an answer was lost and a lookup did not see it yet: settle it later
    STOPPED = "stopped"  # the account/region is stopped by a fatal answer


class OnRefusal(enum.Enum):
    """What a permanent refusal means."""

    FINAL = "final"  # the refusal is the answer
    CHECK_IF_MAYBE_APPLIED = "check if maybe applied"  # an earlier send may have done it: look
    CHECK = "check"  # always look: the refusal may say the work is already done


# A send whose answer is lost this many times in one run (each time looked up after its
# visibility window, absent, and sent again) is left in flight for the next run: a service that
# answers every create with a 5xx must not keep a run going for ever.
MAX_LOST_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class Policy:
    """A phase's attempt policy. `action` None: not an API call (no bucket, not counted)."""

    label: str  # the history's action name
    action: ApiAction | None
    settle_lost: bool = False  # a lost answer is settled by a lookup before any resend
    # a lost send may show late: it is resent only once lookups over the visibility window all
    # said absent; until then the loop returns LOST and the phase comes back after the window
    visibility: bool = False
    on_refusal: OnRefusal = OnRefusal.FINAL
    record_success: bool = True  # successful attempts enter the history


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
class Result(Generic[T]):
    outcome: Outcome
    value: T | None = None
    error: ApiError | None = None
    maybe_applied: bool = False  # some send may have been applied (lost or 5xx answer)
    sent: bool = False  # at least one request left in this loop
    lost_at: float | None = None  # LOST: when the lost send left (clock time)


class Unresolved(Exception):
    """A read could not be answered in this run; what depends on it stays as it is. `error`
    is the last answer when there was one (a permanent refusal says more than a timeout)."""

    def __init__(self, key: TaskKey, reason: str = "", error: ApiError | None = None) -> None:
        super().__init__(f"{key}: {reason or error or 'unanswered'}")
        self.key = key
        self.error = error


@types.coroutine
def _turn() -> Generator[None, None, None]:
    """Let every other ready task run once, then go on: what `anyio.lowlevel.checkpoint()` does
    on asyncio (a cancellation is delivered here too), without its backend lookup and its two
    coroutines, once per create."""
    yield


def _record(key: TaskKey, label: str, error: ApiError | None, latency: float) -> RecordAttempt:
    if error is None:
        return RecordAttempt(key, label, 200, None, None, latency, "ok")
    return RecordAttempt(
        key, label, error.http_status, error.code, error.request_id, latency, error.kind.value
    )


async def attempt(
    ctx: RunContext,
    key: TaskKey,
    policy: Policy,
    send: Callable[[], Awaitable[T]],
    *,
    settle: Callable[[], Awaitable[T | None]] | None = None,
    intent: Op | None = None,
    done: Callable[[T], Sequence[Op]] | None = None,
    maybe_applied: bool = False,
    visible_after: float | None = None,
    client: ApiClient | None = None,
    target: TaskKey | None = None,
    send_after: Callable[[Awaitable[None]], Awaitable[T]] | None = None,
) -> Result[T]:
    """Send until answered for good, as `policy` says.

    `intent` is committed once the send slot is ours and before each request leaves; `done(value)`
    ops are committed with the successful attempt's history, in one transaction. `settle` looks
    the work up and returns its value when it was applied. `maybe_applied` is true when an earlier
    run's send may have been applied. With `visible_after` (clock time) the loop first waits until
    then and looks: a send lost before is only resent once that last lookup says absent.
    `key` is the journal's task; `target` is where the request goes when that is elsewhere (an
    import's target workspace): its region's bucket and stops apply. With an intent,
    `send_after(committed)` may stand for `send`: it builds the request while the intent's commit
    runs and sends it once `committed` (which it always awaits) is done.
    """
    retry, clock = ctx.retry, ctx.clock
    client = client or ctx.client  # the task's account: its bucket, its stops
    where = target or key
    action = policy.action
    if visible_after is not None and settle is not None:
        await clock.sleep(max(0.0, visible_after - clock.monotonic()))
        found = await _settle(settle)
        if found is not None:
            return Result(found.outcome, found.value, maybe_applied=True)
        maybe_applied = True
    sent = False
    for number in range(retry.max_attempts):
        if action is not None:
            bucket = ctx.limiter.bucket(
                client.account, client.limit_scope(where.region), action.access
            )
            if ctx.is_stopped(where, client):
                return Result(Outcome.STOPPED, maybe_applied=maybe_applied, sent=sent)
            if not bucket.try_acquire():  # a free slot is taken without a task switch
                await bucket.acquire()
                if ctx.is_stopped(where, client):  # stopped while this one waited for its slot
                    return Result(Outcome.STOPPED, maybe_applied=maybe_applied, sent=sent)
            ctx.counts.by_action[action.name] += 1
        sending: Awaitable[T] | None = None
        if intent is not None:
            if send_after is None:
                await ctx.writer.write(intent)
            else:
                committed = ctx.writer.queue(intent)
                # the writer takes the batch and starts its commit: meanwhile the request is
                # built and signed; it leaves only once the commit is done
                await _turn()
                sending = send_after(committed)
        sent = True
        began = clock.monotonic()
        try:
            value = await (send() if sending is None else sending)
        except ApiError as error:
            # kept past this block, its traceback would tie this frame to the request's frames
            # (and an answer's body) in a cycle only the collector can free
            error.__traceback__ = None
            latency = (clock.monotonic() - began) * 1000
            if action is not None and error.is_throttled:
                ctx.counts.throttled += 1  # a spent daily quota too, as the service counts it
                if error.is_throttling:  # the rate alone teaches the limiter
                    bucket.on_throttled(error.retry_after)
                    log.debug(  # -v: how the limiter learns the limit
                        "throttled",
                        action=policy.label,
                        code=error.code,
                        region=where.region,
                        rate=round(bucket.rate, 3),
                        limit_seen=None if bucket.w_max is None else round(bucket.w_max, 3),
                        retry_after=error.retry_after,
                    )
            ctx.writer.post(_record(key, policy.label, error, latency))
            if ctx.counts.failed(error):  # each code said once a run, as soon as it is met
                log.warning(
                    "request failed",
                    action=policy.label,
                    code=error.code,
                    kind=error.kind.value,
                    message=error.message,
                    task=str(key),
                )
            failed = error
        else:
            latency = (clock.monotonic() - began) * 1000
            if action is not None:
                bucket.on_success()
            ops = done(value) if done is not None else ()
            # a crash before they commit leaves the row as the intent said
            if policy.record_success:
                ctx.writer.post(_record(key, policy.label, None, latency), *ops)
            else:
                ctx.writer.post(*ops)
            return Result(Outcome.DONE, value, maybe_applied=maybe_applied, sent=True)

        kind = failed.kind
        if kind is ErrorKind.FATAL:
            ctx.stops.stop(client.account, where.region, failed)
            return Result(Outcome.STOPPED, error=failed, maybe_applied=maybe_applied, sent=True)
        if kind is ErrorKind.PERMANENT:
            look = policy.on_refusal is OnRefusal.CHECK or (
                policy.on_refusal is OnRefusal.CHECK_IF_MAYBE_APPLIED and maybe_applied
            )
            if look and settle is not None:
                found = await _settle(settle)
                if found is not None:
                    return found._with(failed, maybe_applied)
            return Result(Outcome.REFUSED, error=failed, maybe_applied=maybe_applied, sent=True)
        delay = retry.delay(number, ctx.rng, failed.retry_after)
        if kind is ErrorKind.UNKNOWN_OUTCOME:
            maybe_applied = True
            if policy.settle_lost and settle is not None:
                # give a request still being processed time to land, then look
                await clock.sleep(max(SETTLE_SECONDS, delay))
                delay = 0.0
                found = await _settle(settle)
                if found is not None:
                    return found._with(failed, maybe_applied)
                if policy.visibility:
                    return Result(
                        Outcome.LOST, error=failed, maybe_applied=True, sent=True, lost_at=began
                    )
        if retry.gives_up_after(number):
            return Result(Outcome.GAVE_UP, error=failed, maybe_applied=maybe_applied, sent=True)
        await clock.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _Found(Generic[T]):
    outcome: Outcome
    value: T | None

    def _with(self, error: ApiError, maybe_applied: bool) -> Result[T]:
        return Result(self.outcome, self.value, error, maybe_applied, sent=True)


async def _settle(settle: Callable[[], Awaitable[T | None]]) -> _Found[T] | None:
    """The lookup's verdict: settled with a value, unresolved, or None (not applied)."""
    try:
        value = await settle()
    except Unresolved:
        return _Found(Outcome.UNRESOLVED, None)
    return None if value is None else _Found(Outcome.SETTLED, value)


async def read(
    ctx: RunContext,
    key: TaskKey,
    policy: Policy,
    send: Callable[[], Awaitable[T]],
    *,
    client: ApiClient | None = None,
    target: TaskKey | None = None,
) -> T:
    """A read retried until answered; Unresolved when it cannot be (stopped, refused, given up)."""
    result = await attempt(ctx, key, policy, send, client=client, target=target)
    if result.outcome is Outcome.DONE and result.value is not None:
        return result.value
    raise Unresolved(key, result.outcome.value, result.error)
