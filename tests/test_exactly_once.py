"""Exactly once without trusting the service: a create that shows late, and a listing that
cannot prove a name absent (fake clock, the simulator's model in process)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from runner.clock import FakeClock
from runner.context import RunContext
from runner.engine import PhaseOptions, RunStats, run_phases
from runner.journal import Journal, MarkInFlight, Register
from runner.journal_writer import JournalWriter
from runner.models import (
    Action,
    ActionKind,
    ApiError,
    ErrorKind,
    ExportSpec,
    MigrationPage,
    TaskKey,
    TaskState,
)
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy
from tests.fakes import FakeService, error

PROJECT = 12345


def spec(name: str) -> ExportSpec:
    return ExportSpec(TaskKey("cn-shanghai", PROJECT, name))


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
    window: float = 60.0,
) -> RunStats:
    journal.apply([Register(a.spec) for a in actions])
    async with JournalWriter(journal) as writer:
        ctx = RunContext(
            service,
            writer,
            RateLimiter(clock, write_rate=50),
            clock,
            RetryPolicy(max_attempts=5),
            random.Random(1),
        )
        options = PhaseOptions(concurrency=4, visibility_window=window)
        return await run_phases(ctx, options, actions)


def state(journal: Journal, s: ExportSpec) -> TaskState:
    row = journal.get(s.key)
    assert row is not None
    return row.state


@pytest.mark.anyio
async def test_a_create_that_shows_late_is_adopted_not_sent_again(
    journal: Journal, clock: FakeClock
) -> None:
    """Lost answer, create visible 20 s later: lookups over the 60 s window find it; no resend."""
    service = FakeService(
        clock=clock, unique_names=False, apply_lag=20.0, scripts={"a": ["applied-then-lost"]}
    )
    s = spec("a")
    stats = await run(journal, service, clock, [Action(ActionKind.CREATE, s)])
    assert len(service.created) == 1
    assert service.state.duplicates == 0
    assert (stats.creates_sent, stats.adopted) == (1, 1)
    assert state(journal, s) is TaskState.CREATED


@pytest.mark.anyio
async def test_without_a_window_the_late_create_would_be_made_twice(
    journal: Journal, clock: FakeClock
) -> None:
    """The same service with a zero window creates the task twice: the window is what holds."""
    service = FakeService(
        clock=clock, unique_names=False, apply_lag=20.0, scripts={"a": ["applied-then-lost"]}
    )
    await run(journal, service, clock, [Action(ActionKind.CREATE, spec("a"))], window=0.0)
    assert service.state.duplicates == 1


@pytest.mark.anyio
async def test_many_lost_answers_wait_in_parallel_not_one_window_each(
    journal: Journal, clock: FakeClock
) -> None:
    """Forty lost answers cost about one window of time, not forty: deferred, not blocking."""
    names = [f"t{i:02d}" for i in range(40)]
    service = FakeService(
        clock=clock,
        unique_names=False,
        apply_lag=20.0,
        scripts={n: ["applied-then-lost"] for n in names},
    )
    began = clock.now
    stats = await run(journal, service, clock, [Action(ActionKind.CREATE, spec(n)) for n in names])
    assert service.state.duplicates == 0
    assert stats.adopted == 40
    assert clock.now - began < 2 * 60.0


@pytest.mark.anyio
async def test_an_in_flight_row_from_a_moment_ago_waits_out_the_window(
    journal: Journal, clock: FakeClock
) -> None:
    """A rerun right after a crash does not resend a create the service has not shown yet."""
    service = FakeService(clock=clock, unique_names=False, apply_lag=20.0)
    s = spec("a")
    service.add_existing(PROJECT, "a")  # accepted just now, visible in 20 s
    journal.apply([Register(s), MarkInFlight(s.key, s.fingerprint())])
    row = journal.get(s.key)
    assert row is not None
    action = Action(ActionKind.RECONCILE, s, since=row.updated_at)
    stats = await run(journal, service, clock, [action])
    assert stats.creates_sent == 0
    assert service.state.duplicates == 0
    assert state(journal, s) is TaskState.CREATED


@pytest.mark.anyio
async def test_a_capped_page_size_is_followed_to_the_end(
    journal: Journal, clock: FakeClock
) -> None:
    """The service serves 50 a page though 100 were asked: the name on page 3 is still found."""
    service = FakeService(clock=clock, max_page_size=50)
    for i in range(120):
        service.add_existing(PROJECT, f"other{i:03d}")
    s = spec("a")
    service.add_existing(PROJECT, "a")
    journal.apply([Register(s), MarkInFlight(s.key, s.fingerprint())])
    stats = await run(journal, service, clock, [Action(ActionKind.RECONCILE, s, since=0.0)])
    assert (stats.adopted, stats.creates_sent, service.lists) == (1, 0, 3)


def no_total(page: MigrationPage) -> MigrationPage:
    return replace(page, total_count=None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "damage",
    [
        no_total,
        lambda p: replace(p, total_count=(p.total_count or 0) + 500),  # claims tasks it never shows
    ],
)
async def test_a_listing_that_cannot_prove_absence_leaves_the_task_in_flight(
    journal: Journal, clock: FakeClock, damage: object
) -> None:
    """No TotalCount, or pages that end before TotalCount: unresolved, never absent, no create."""
    service = FakeService(clock=clock, page_filter=damage)  # type: ignore[arg-type]
    for i in range(30):
        service.add_existing(PROJECT, f"other{i:03d}")
    s = spec("a")
    journal.apply([Register(s), MarkInFlight(s.key, s.fingerprint())])
    stats = await run(journal, service, clock, [Action(ActionKind.RECONCILE, s, since=0.0)])
    assert (stats.unresolved, stats.creates_sent, service.lists) == (1, 0, 1)
    assert state(journal, s) is TaskState.IN_FLIGHT


@pytest.mark.anyio
async def test_pages_that_repeat_tasks_cannot_prove_absence(
    journal: Journal, clock: FakeClock
) -> None:
    """A page that repeats tasks of an earlier one makes the lookup unresolved."""
    service = FakeService(clock=clock)
    for i in range(150):
        service.add_existing(PROJECT, f"other{i:03d}")
    first: list[MigrationPage] = []

    def repeat(page: MigrationPage) -> MigrationPage:
        first.append(first[0] if first else page)
        return first[0]

    service.page_filter = repeat
    s = spec("a")
    journal.apply([Register(s), MarkInFlight(s.key, s.fingerprint())])
    stats = await run(journal, service, clock, [Action(ActionKind.RECONCILE, s, since=0.0)])
    assert (stats.unresolved, stats.creates_sent) == (1, 0)


async def census_run(
    journal: Journal,
    service: FakeService,
    clock: FakeClock,
    specs: list[ExportSpec],
    *,
    adopt: bool = False,
    sent: frozenset[tuple[str, int]] = frozenset(),
) -> RunStats:
    """A first create into workspaces the journal has (or has not) sent creates to."""
    journal.apply([Register(s) for s in specs])
    async with JournalWriter(journal) as writer:
        ctx = RunContext(service, writer, RateLimiter(clock, write_rate=50), clock)
        options = PhaseOptions(concurrency=4, adopt_existing=adopt)
        actions = [Action(ActionKind.CREATE, s) for s in specs]
        return await run_phases(ctx, options, actions, sent_workspaces=sent)


@pytest.mark.anyio
async def test_a_lost_journal_never_creates_a_listed_name_again(
    journal: Journal, clock: FakeClock
) -> None:
    """A workspace this journal never sent to is listed once; names it holds are marked exists,
    with a hint, and never sent; the others are created."""
    service = FakeService(clock=clock, unique_names=False)
    made = {n: service.add_existing(PROJECT, n) for n in ("a", "b")}
    specs = [spec(n) for n in ("a", "b", "c")]
    stats = await census_run(journal, service, clock, specs)
    assert (stats.created, stats.create.exists, stats.creates_sent) == (1, 2, 1)
    assert service.lists == 1
    assert service.state.duplicates == 0
    for name, migration_id in made.items():
        row = journal.get(spec(name).key)
        assert row is not None
        assert (row.state, row.migration_id) == (TaskState.EXISTS, migration_id)
        assert "--adopt-existing" in (row.error_message or "")


@pytest.mark.anyio
async def test_with_adopt_existing_a_lost_journal_adopts_what_is_listed(
    journal: Journal, clock: FakeClock
) -> None:
    """--adopt-existing adopts every listed name, as adopted (never called drifted later)."""
    service = FakeService(clock=clock, unique_names=False)
    made = service.add_existing(PROJECT, "a")
    stats = await census_run(journal, service, clock, [spec("a")], adopt=True)
    row = journal.get(spec("a").key)
    assert row is not None
    assert (row.state, row.migration_id, row.fingerprint) == (TaskState.CREATED, made, "adopted")
    assert (stats.adopted, stats.creates_sent) == (1, 0)


@pytest.mark.anyio
async def test_a_listed_task_with_another_description_is_reported_as_drift(
    journal: Journal, clock: FakeClock
) -> None:
    """The listing's description is compared with the manifest's: a mismatch counts as drift."""
    service = FakeService(clock=clock)
    service.state.create_export_migration(
        {"ProjectId": str(PROJECT), "Name": "a", "ExportMode": "FULL", "Description": "old"},
        service.now(),
    )
    s = replace(spec("a"), description="new")
    stats = await census_run(journal, service, clock, [s, replace(spec("b"), description="x")])
    assert (stats.create.drifted, stats.create.exists, stats.created) == (1, 1, 1)


@pytest.mark.anyio
async def test_a_workspace_the_journal_sent_to_is_not_listed_again(
    journal: Journal, clock: FakeClock
) -> None:
    """Where this journal has sent creates, its own rows are the record: no listing first."""
    service = FakeService(clock=clock)
    specs = [spec(f"t{i}") for i in range(5)]
    stats = await census_run(
        journal, service, clock, specs, sent=frozenset({("cn-shanghai", PROJECT)})
    )
    assert (stats.created, service.lists) == (5, 0)


@pytest.mark.anyio
async def test_one_listing_serves_every_task_of_a_workspace(
    journal: Journal, clock: FakeClock
) -> None:
    """Thirty tasks into one new workspace cost one listing, not thirty."""
    service = FakeService(clock=clock)
    stats = await census_run(journal, service, clock, [spec(f"t{i:02d}") for i in range(30)])
    assert (stats.created, service.lists) == (30, 1)


@pytest.mark.anyio
async def test_a_task_found_taken_is_looked_up_again_even_where_the_journal_sent_since(
    journal: Journal, clock: FakeClock
) -> None:
    """A task marked exists is never created on a rerun, even once this journal has sent other
    creates to its workspace (no listing first there) and the service accepts a taken name."""
    service = FakeService(clock=clock, unique_names=False)
    service.add_existing(PROJECT, "a")
    await census_run(journal, service, clock, [spec("a"), spec("b")])
    assert journal.get(spec("a").key).state is TaskState.EXISTS  # type: ignore[union-attr]
    rows = journal.row_map()
    from runner.plan import make_plan

    actions = [a for a in make_plan([spec("a")], rows).actions]
    async with JournalWriter(journal) as writer:
        ctx = RunContext(service, writer, RateLimiter(clock, write_rate=50), clock)
        stats = await run_phases(
            ctx, PhaseOptions(), actions, sent_workspaces={("cn-shanghai", PROJECT)}
        )
    assert (stats.creates_sent, service.state.duplicates) == (0, 0)
    assert journal.get(spec("a").key).state is TaskState.EXISTS  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_first_listing_refused_ahead_fails_the_first_task_only(
    journal: Journal, clock: FakeClock
) -> None:
    """A workspace's first listing, made ahead of its creates, refused for good: its first task
    fails unsent, as if it had listed itself; the next lists again; the others are created."""
    refusals = [ApiError(ErrorKind.PERMANENT, "Forbidden.Access", "no", http_status=403)]

    def refuse_once(page: MigrationPage) -> MigrationPage:
        if refusals:
            raise refusals.pop()
        return page

    service = FakeService(clock=clock, page_filter=refuse_once)
    specs = [spec(f"t{i}") for i in range(3)]
    stats = await census_run(journal, service, clock, specs)
    assert (stats.failed, stats.created, stats.creates_sent, service.lists) == (1, 2, 2, 2)
    row = journal.get(specs[0].key)
    assert row is not None
    assert row.state is TaskState.FAILED
    assert "could not be listed" in (row.error_message or "")


@pytest.mark.anyio
async def test_a_create_answered_5xx_every_time_ends_the_run_in_flight(
    journal: Journal, clock: FakeClock
) -> None:
    """A service that answers every create with a 5xx (nothing applied, outcome unknown) does
    not keep the run going for ever: after MAX_LOST_ROUNDS sends, each looked up after its
    window, the task is left in flight (unresolved) for the next run, which looks first."""
    from runner.attempt import MAX_LOST_ROUNDS

    failing = error(ErrorKind.UNKNOWN_OUTCOME, "ServiceUnavailable", 503)
    service = FakeService(clock=clock, unique_names=False, scripts={"a": [failing] * 100})
    s = spec("a")
    began = clock.now
    stats = await run(journal, service, clock, [Action(ActionKind.CREATE, s)])
    assert service.creates == ["a"] * MAX_LOST_ROUNDS
    assert service.created == []
    assert state(journal, s) is TaskState.IN_FLIGHT
    assert stats.unresolved == 1
    assert clock.now - began < (MAX_LOST_ROUNDS + 1) * 60.0
