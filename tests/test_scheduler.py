"""The worker pool against a fake service: create once, retry, reconcile, fail, stop."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from runner import logs as runner_logs
from runner.clock import FakeClock
from runner.context import RunContext
from runner.engine import PhaseOptions, RunStats, run_phases
from runner.journal import Journal, Register
from runner.journal_writer import JournalWriter
from runner.models import (
    ADOPTED_FINGERPRINT,
    Access,
    Action,
    ActionKind,
    ErrorKind,
    ExportSpec,
    TaskKey,
    TaskState,
)
from runner.plan import make_plan
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy
from tests.fakes import FakeService, error


def spec(name: str, project_id: int = 12345, region: str = "cn-shanghai") -> ExportSpec:
    return ExportSpec(TaskKey(region, project_id, name))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.db") as j:
        yield j


async def run(
    journal: Journal,
    service: FakeService,
    clock: FakeClock,
    actions: list[Action],
    *,
    sent: frozenset[TaskKey] = frozenset(),
    limiter: RateLimiter | None = None,
    **options: object,
) -> RunStats:
    journal.apply([Register(a.spec) for a in actions])
    limiter = limiter or RateLimiter(clock, write_rate=20)
    opts = PhaseOptions(
        concurrency=int(options.get("concurrency", 4)),  # type: ignore[call-overload]
        adopt_existing=bool(options.get("adopt_existing", False)),
    )
    retry = RetryPolicy(max_attempts=int(options.get("max_attempts", 5)))  # type: ignore[call-overload]
    sending = [replace(a, create_sent=a.spec.key in sent) for a in actions]
    # as if the journal had sent creates to every workspace before: no listing before the
    # first create (tests/test_exactly_once.py covers that listing)
    sent_workspaces = {(a.spec.key.region, a.spec.key.project_id) for a in actions}
    async with JournalWriter(journal) as writer:
        ctx = RunContext(service, writer, limiter, clock, retry, random.Random(1))
        return await run_phases(ctx, opts, sending, sent_workspaces=sent_workspaces)


def creates(specs: list[ExportSpec], kind: ActionKind = ActionKind.CREATE) -> list[Action]:
    return [Action(kind, s) for s in specs]


def state(journal: Journal, s: ExportSpec) -> TaskState:
    row = journal.get(s.key)
    assert row is not None
    return row.state


@pytest.mark.anyio
async def test_every_task_created_once(journal: Journal, clock: FakeClock) -> None:
    """Each task is created exactly once and its migration id is recorded."""
    service = FakeService()
    specs = [spec(f"t{i}") for i in range(50)]
    stats = await run(journal, service, clock, creates(specs))
    assert sorted(service.creates) == sorted(s.key.name for s in specs)
    assert stats.created == 50
    rows = journal.row_map()
    assert {rows[s.key].state for s in specs} == {TaskState.CREATED}
    assert len({rows[s.key].migration_id for s in specs}) == 50


@pytest.mark.anyio
async def test_intent_is_committed_before_the_create_is_sent(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """When a create leaves, another reader already sees the task in_flight."""
    seen: list[TaskState] = []

    def look(s: ExportSpec) -> None:
        with Journal.open_readonly(tmp_path / "journal.db") as reader:
            row = reader.get(s.key)
            assert row is not None
            seen.append(row.state)

    service = FakeService(on_create=look)
    await run(journal, service, clock, creates([spec("a"), spec("b")]))
    assert seen == [TaskState.IN_FLIGHT, TaskState.IN_FLIGHT]


@pytest.mark.anyio
async def test_workers_never_exceed_concurrency(journal: Journal, clock: FakeClock) -> None:
    """No more requests are in flight at once than --concurrency allows."""
    service = FakeService()
    await run(journal, service, clock, creates([spec(f"t{i}") for i in range(40)]), concurrency=3)
    assert 1 <= service.max_in_flight <= 3


@pytest.mark.anyio
async def test_retryable_error_is_retried_and_recorded(journal: Journal, clock: FakeClock) -> None:
    """A 503 is retried after a backoff; both attempts are in the history."""
    s = spec("a")
    service = FakeService(scripts={"a": [error(ErrorKind.RETRYABLE, "ServiceUnavailable", 503)]})
    await run(journal, service, clock, creates([s]))
    assert state(journal, s) is TaskState.CREATED
    outcomes = [a.outcome for a in journal.attempts(s.key)]
    assert outcomes == ["retryable", "ok"]
    assert journal.get(s.key).attempts == 2  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_failed_requests_are_counted_by_code_and_each_code_said_once(
    journal: Journal, clock: FakeClock
) -> None:
    """Every failed request is counted by its error code, with the code's first message, in the
    run's stats; the first failure of each code is logged at once as a warning (a long run
    shows what goes wrong without waiting for its end), later ones of that code are not."""
    tasks = [spec(name) for name in ("a", "b", "c")]
    unavailable = error(ErrorKind.RETRYABLE, "ServiceUnavailable", 503)
    busy = error(ErrorKind.RETRYABLE, "InternalError", 500)
    service = FakeService(scripts={"a": [unavailable, unavailable], "b": [unavailable, busy]})
    with capture_logs() as logs:
        stats = await run(journal, service, clock, creates(tasks))
    assert stats.created == 3
    assert stats.errors == {"ServiceUnavailable": 3, "InternalError": 1}
    assert set(stats.first_errors) == {"ServiceUnavailable", "InternalError"}
    warned = [entry for entry in logs if entry["event"] == "request failed"]
    assert sorted(entry["code"] for entry in warned) == ["InternalError", "ServiceUnavailable"]
    assert all(entry["log_level"] == "warning" and entry["action"] for entry in warned)


@pytest.mark.anyio
async def test_throttling_slows_the_bucket(journal: Journal, clock: FakeClock) -> None:
    """A throttled answer is retried and counted; the run still completes."""
    s = spec("a")
    throttled = error(ErrorKind.RETRYABLE, "Throttling.User", 429, retry_after=1.5)
    service = FakeService(scripts={"a": [throttled, throttled]})
    start = clock.now
    runner_logs.configure(stream=io.StringIO(), json=True, verbose=True)  # -v
    with capture_logs() as logs:
        stats = await run(journal, service, clock, creates([s]))
    assert state(journal, s) is TaskState.CREATED
    assert stats.throttled == 2
    assert clock.now - start >= 3.0  # both retry-after pauses honoured
    # -v shows how the limiter learns: each throttle with the rate it left and what it hit
    cuts = [e for e in logs if e["event"] == "throttled" and e["log_level"] == "debug"]
    assert [(e["code"], e["retry_after"]) for e in cuts] == [("Throttling.User", 1.5)] * 2
    assert cuts[0]["rate"] == pytest.approx(0.7 * cuts[0]["limit_seen"])


@pytest.mark.anyio
async def test_unknown_outcome_is_reconciled_not_resent(journal: Journal, clock: FakeClock) -> None:
    """A create whose answer was lost is found by name and adopted: sent once only."""
    s = spec("a")
    service = FakeService(scripts={"a": ["applied-then-lost"]})
    stats = await run(journal, service, clock, creates([s]))
    assert service.creates == ["a"]
    assert service.lists == 1
    assert state(journal, s) is TaskState.CREATED
    assert stats.adopted == 1


@pytest.mark.anyio
async def test_unknown_outcome_not_applied_is_resent(journal: Journal, clock: FakeClock) -> None:
    """When the lookup shows the create never landed, it is sent again."""
    s = spec("a")
    lost = error(ErrorKind.UNKNOWN_OUTCOME, "ExchangeError", 0)
    service = FakeService(scripts={"a": [lost]})
    await run(journal, service, clock, creates([s]))
    assert service.creates == ["a", "a"]
    assert state(journal, s) is TaskState.CREATED


@pytest.mark.anyio
async def test_permanent_error_fails_the_task_and_goes_on(
    journal: Journal, clock: FakeClock
) -> None:
    """A permanent error marks that task failed with its code; the others are created."""
    bad, good = spec("bad"), spec("good")
    service = FakeService(scripts={"bad": [error(ErrorKind.PERMANENT, "InvalidParameter")]})
    stats = await run(journal, service, clock, creates([bad, good]))
    row = journal.get(bad.key)
    assert row is not None
    assert (row.state, row.error_code) == (TaskState.FAILED, "InvalidParameter")
    assert state(journal, good) is TaskState.CREATED
    assert stats.failed == 1


@pytest.mark.anyio
async def test_fatal_error_stops_the_region(journal: Journal, clock: FakeClock) -> None:
    """A rejected signature stops sending to that region; unsent tasks stay pending."""
    specs = [spec(f"t{i}") for i in range(10)]
    fatal = error(ErrorKind.FATAL, "SignatureDoesNotMatch")
    service = FakeService(scripts={"t0": [fatal]})
    stats = await run(journal, service, clock, creates(specs), concurrency=1)
    assert stats.fatal is not None
    assert stats.fatal.code == "SignatureDoesNotMatch"
    assert service.creates == ["t0"]
    assert {state(journal, s) for s in specs} == {TaskState.PENDING}


@pytest.mark.anyio
async def test_fatal_in_one_region_leaves_others_running(
    journal: Journal, clock: FakeClock
) -> None:
    """Only the region that answered the fatal error is stopped."""
    a = spec("a", region="cn-shanghai")
    b = spec("b", region="cn-hangzhou")
    service = FakeService(scripts={"a": [error(ErrorKind.FATAL, "Throttling.Api.Risk", 429)]})
    await run(journal, service, clock, creates([a, b]), concurrency=1)
    assert state(journal, a) is TaskState.PENDING
    assert state(journal, b) is TaskState.CREATED


@pytest.mark.anyio
async def test_a_spent_daily_quota_counts_as_throttled_but_teaches_the_limiter_nothing(
    journal: Journal, clock: FakeClock
) -> None:
    """Throttling.Api.Risk is counted throttled, as the service counts it, and does not cut the
    bucket's rate (it says nothing of the rate: the account is stopped for the day)."""
    a = spec("a")
    service = FakeService(scripts={"a": [error(ErrorKind.FATAL, "Throttling.Api.Risk", 429)]})
    limiter = RateLimiter(clock, write_rate=20)
    stats = await run(journal, service, clock, creates([a]), limiter=limiter)
    assert stats.throttled == 1
    bucket = limiter.bucket(service.account, "cn-shanghai", Access.WRITE)
    assert bucket.rate == 20  # a rate throttle would have cut it to BETA x 20


@pytest.mark.anyio
async def test_duplicate_name_not_ours_fails_with_advice(
    journal: Journal, clock: FakeClock
) -> None:
    """A name taken by someone else fails the task and points at --adopt-existing."""
    s = spec("a")
    service = FakeService(existing={(12345, "a"): 7})
    await run(journal, service, clock, creates([s]))
    row = journal.get(s.key)
    assert row is not None
    assert row.state is TaskState.FAILED
    assert "--adopt-existing" in (row.error_message or "")


@pytest.mark.anyio
async def test_duplicate_name_adopted_when_asked(journal: Journal, clock: FakeClock) -> None:
    """With --adopt-existing the existing task's id is adopted."""
    s = spec("a")
    service = FakeService(existing={(12345, "a"): 7})
    await run(journal, service, clock, creates([s]), adopt_existing=True)
    row = journal.get(s.key)
    assert row is not None
    assert (row.state, row.migration_id) == (TaskState.CREATED, 7)


@pytest.mark.anyio
async def test_duplicate_name_ours_is_adopted(journal: Journal, clock: FakeClock) -> None:
    """When the journal shows we sent the create before, the existing task is ours."""
    s = spec("a")
    service = FakeService(existing={(12345, "a"): 9})
    await run(journal, service, clock, creates([s], ActionKind.RETRY), sent=frozenset({s.key}))
    row = journal.get(s.key)
    assert row is not None
    assert (row.state, row.migration_id) == (TaskState.CREATED, 9)


@pytest.mark.anyio
async def test_reconcile_adopts_without_sending(journal: Journal, clock: FakeClock) -> None:
    """An in_flight task left by a crash is looked up first and adopted if present."""
    s = spec("a")
    service = FakeService(existing={(12345, "a"): 11})
    await run(journal, service, clock, creates([s], ActionKind.RECONCILE))
    assert service.creates == []
    assert journal.get(s.key).migration_id == 11  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_reconcile_pages_through_the_list(journal: Journal, clock: FakeClock) -> None:
    """The lookup walks every page of ListMigrations before deciding."""
    s = spec("zzz")
    existing = {(12345, f"other{i:03}"): 1000 + i for i in range(250)}
    existing[(12345, "zzz")] = 5000
    service = FakeService(existing=existing)
    await run(journal, service, clock, creates([s], ActionKind.RECONCILE))
    assert service.lists == 3
    assert journal.get(s.key).migration_id == 5000  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_reconcile_resends_when_absent(journal: Journal, clock: FakeClock) -> None:
    """An in_flight task missing from the service is created again."""
    s = spec("a")
    service = FakeService()
    await run(journal, service, clock, creates([s], ActionKind.RECONCILE))
    assert service.creates == ["a"]
    assert state(journal, s) is TaskState.CREATED


@pytest.mark.anyio
async def test_gives_up_after_max_attempts(journal: Journal, clock: FakeClock) -> None:
    """A task that keeps failing retryably is marked failed after the last attempt."""
    s = spec("a")
    busy = error(ErrorKind.RETRYABLE, "ServiceUnavailable", 503)
    service = FakeService(scripts={"a": [busy] * 10})
    await run(journal, service, clock, creates([s]), max_attempts=3)
    row = journal.get(s.key)
    assert row is not None
    assert row.state is TaskState.FAILED
    assert row.error_code == "ServiceUnavailable"
    assert "gave up after 3 attempts" in (row.error_message or "")
    assert len(service.creates) == 3


@pytest.mark.anyio
async def test_server_error_after_apply_never_creates_twice(
    journal: Journal, clock: FakeClock
) -> None:
    """A 5xx answered after the create landed is looked up, even on a service that would
    accept the same name twice."""
    specs = [spec(f"t{i}") for i in range(5)]
    service = FakeService(
        unique_names=False, scripts={s.key.name: ["applied-then-500"] for s in specs}
    )
    stats = await run(journal, service, clock, creates(specs))
    assert len(service.created) == 5
    assert stats.adopted == 5
    assert {state(journal, s) for s in specs} == {TaskState.CREATED}


@pytest.mark.anyio
async def test_lookup_waits_for_a_lost_create_to_settle(journal: Journal, clock: FakeClock) -> None:
    """After a lost answer the runner waits before looking the name up."""
    s = spec("a")
    service = FakeService(scripts={"a": ["applied-then-lost"]})
    await run(journal, service, clock, creates([s]))
    assert max(clock.slept) >= 1.0


@pytest.mark.anyio
async def test_unrecognised_refusal_of_our_own_task_is_looked_up(
    journal: Journal, clock: FakeClock
) -> None:
    """When our earlier create may have landed, any refusal is checked by name before failing."""
    s = spec("a")
    odd = error(ErrorKind.PERMANENT, "Invalid.Param")  # a duplicate worded unlike we expect
    service = FakeService(existing={(12345, "a"): 9}, scripts={"a": [odd]})
    await run(journal, service, clock, creates([s], ActionKind.RETRY), sent=frozenset({s.key}))
    row = journal.get(s.key)
    assert row is not None
    assert (row.state, row.migration_id) == (TaskState.CREATED, 9)


@pytest.mark.anyio
async def test_refused_first_create_is_not_counted_as_sent(
    journal: Journal, clock: FakeClock
) -> None:
    """A create refused as fatal leaves the task pending and not marked as sent."""
    s = spec("a")
    service = FakeService(scripts={"a": [error(ErrorKind.FATAL, "InvalidAccessKeyId.NotFound")]})
    stats = await run(journal, service, clock, creates([s]))
    row = journal.get(s.key)
    assert row is not None
    assert (row.state, row.create_sent) == (TaskState.PENDING, False)
    assert stats.stopped == 1


@pytest.mark.anyio
async def test_lookups_in_one_workspace_share_what_was_read(
    journal: Journal, clock: FakeClock
) -> None:
    """Reconciling many tasks of one workspace reads its list once when every name is there."""
    specs = [spec(f"t{i}") for i in range(20)]
    service = FakeService(existing={(12345, s.key.name): 500 + i for i, s in enumerate(specs)})
    await run(journal, service, clock, creates(specs, ActionKind.RECONCILE), concurrency=1)
    assert service.lists == 1
    assert service.creates == []
    assert {state(journal, s) for s in specs} == {TaskState.CREATED}


@pytest.mark.anyio
async def test_foreign_task_adopted_is_never_reported_as_drift(
    journal: Journal, clock: FakeClock
) -> None:
    """A task adopted with --adopt-existing is marked adopted, so later plans skip it quietly."""
    s = spec("a")
    service = FakeService(existing={(12345, "a"): 7})
    await run(journal, service, clock, creates([s]), adopt_existing=True)
    row = journal.get(s.key)
    assert row is not None
    assert row.fingerprint == ADOPTED_FINGERPRINT
    plan = make_plan([s], journal.row_map())
    assert plan.actions[0].kind is ActionKind.SKIP


@pytest.mark.anyio
async def test_fatal_after_a_lost_answer_leaves_the_task_in_flight(
    journal: Journal, clock: FakeClock
) -> None:
    """A fatal answer after an earlier lost one keeps the task in_flight, to be looked up."""
    s = spec("a")
    lost = error(ErrorKind.UNKNOWN_OUTCOME, "ExchangeError", 0)
    fatal = error(ErrorKind.FATAL, "InvalidTimeStamp.Expired")
    service = FakeService(scripts={"a": [lost, fatal]})
    await run(journal, service, clock, creates([s]))
    row = journal.get(s.key)
    assert row is not None
    assert (row.state, row.create_sent) == (TaskState.IN_FLIGHT, True)
