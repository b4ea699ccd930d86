"""The lifecycle against a fake service: start, wait, download; refusals, timeouts, stops."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from runner.clock import FakeClock
from runner.context import RunContext
from runner.dataworks.download import DownloadError, package_path
from runner.engine import PhaseOptions, RunStats, run_phases
from runner.journal import Journal, MarkCreated, MarkExported, MarkInFlight, Register
from runner.journal_writer import JournalWriter
from runner.models import ErrorKind, ExportSpec, TaskKey, TaskState
from runner.phases import Stage
from runner.phases.tasks import LifecycleTask
from runner.ratelimit import Access, Bucket, RateLimiter
from runner.retry import RetryPolicy
from tests.fakes import FakeDownloader, FakeService, error

REGION = "cn-shanghai"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.db") as j:
        yield j


class CountingLimiter(RateLimiter):
    """A RateLimiter that counts every bucket taken, by access: one per request sent."""

    def __init__(self, clock: FakeClock, **rates: float) -> None:
        super().__init__(clock, **rates)
        self.taken: Counter[Access] = Counter()

    def bucket(self, account: str, region: str, access: Access) -> Bucket:
        self.taken[access] += 1
        return super().bucket(account, region, access)


def created(
    journal: Journal,
    service: FakeService,
    names: list[str],
    region: str = REGION,
    project_id: int = 12345,
) -> list[TaskKey]:
    """Tasks the journal shows created, and the service knows."""
    keys = []
    for name in names:
        key = TaskKey(region, project_id, name)
        spec = ExportSpec(key)
        migration_id = service.add_existing(key.project_id, name)
        journal.apply(
            [
                Register(spec),
                MarkInFlight(key, spec.fingerprint()),
                MarkCreated(key, migration_id, None),
            ]
        )
        keys.append(key)
    return keys


async def run_lifecycle(
    journal: Journal,
    service: FakeService,
    clock: FakeClock,
    options: PhaseOptions,
    *,
    downloader: FakeDownloader | None = None,
    limiter: RateLimiter | None = None,
) -> RunStats:
    """The phases after the create, for the tasks the journal shows created or further."""

    def tasks() -> list[LifecycleTask]:
        return [t for row in journal.rows() if (t := LifecycleTask.from_row(row)) is not None]

    async with JournalWriter(journal) as writer:
        ctx = RunContext(
            service,
            writer,
            limiter or RateLimiter(clock, write_rate=20),
            clock,
            RetryPolicy(max_attempts=4),
            random.Random(1),
        )
        return await run_phases(ctx, options, [], lifecycle_tasks=tasks, downloader=downloader)


def full(tmp_path: Path, **overrides: object) -> PhaseOptions:
    """Start, wait and download into tmp_path/packages."""
    values: dict[str, object] = {
        "stage": Stage.DOWNLOAD,
        "download_dir": tmp_path / "packages",
        "poll_interval": 10.0,
        "wait_timeout": 3600.0,
        "concurrency": 4,
    }
    values.update(overrides)
    return PhaseOptions(**values)  # type: ignore[arg-type]


def row_state(journal: Journal, key: TaskKey) -> TaskState:
    row = journal.get(key)
    assert row is not None
    return row.state


@pytest.mark.anyio
async def test_start_wait_download_happy_path(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """Created tasks are started, polled until exported, and saved; the journal says where."""
    service = FakeService(clock=clock, export_duration=30.0)
    keys = created(journal, service, ["a", "b", "c"])
    downloader = FakeDownloader()
    began = clock.now
    stats = await run_lifecycle(journal, service, clock, full(tmp_path), downloader=downloader)
    assert (stats.started, stats.exported, stats.downloaded) == (3, 3, 3)
    assert stats.export_failed == stats.still_running == stats.download_failed == 0
    assert sorted(service.starts) == ["a", "b", "c"]
    for key in keys:
        row = journal.get(key)
        assert row is not None
        assert row.state is TaskState.EXPORTED
        assert row.download_url is not None
        assert "Signature=" in row.download_url
        migration_id = service.existing[(12345, key.name)]
        dest = package_path(tmp_path / "packages", REGION, 12345, key.name, migration_id)
        assert dest.read_bytes() == downloader.content
        assert row.package_path == str(dest)
    assert 30.0 <= clock.now - began <= 45.0  # finished on the first poll after the export
    actions = Counter(a.action for a in journal.attempts())
    assert actions["start"] == 3
    assert actions["download"] == 3


@pytest.mark.anyio
async def test_start_only_marks_started_and_sends_no_read(
    journal: Journal, clock: FakeClock
) -> None:
    """--start alone starts the tasks and neither polls nor downloads."""
    service = FakeService(clock=clock)
    keys = created(journal, service, ["a", "b"])
    stats = await run_lifecycle(journal, service, clock, PhaseOptions(stage=Stage.START))
    assert stats.started == 2
    assert service.summaries == []
    assert {row_state(journal, k) for k in keys} == {TaskState.STARTED}


@pytest.mark.anyio
async def test_already_running_start_counts_as_started(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """StartMigration answering false for a task that is running already marks it started."""
    service = FakeService(clock=clock, export_duration=5.0)
    (key,) = created(journal, service, ["a"])
    service.start_elsewhere(service.existing[(12345, "a")])  # started by someone else
    stats = await run_lifecycle(
        journal, service, clock, full(tmp_path), downloader=FakeDownloader()
    )
    assert stats.started == 1
    assert stats.export_failed == 0
    assert row_state(journal, key) is TaskState.EXPORTED


@pytest.mark.anyio
async def test_start_refused_leaves_the_task_created_with_its_code(
    journal: Journal, clock: FakeClock
) -> None:
    """A start answered false for a task still INIT leaves it created, the code in its history,
    so a later --start tries again; the other tasks start."""
    service = FakeService(clock=clock, start_scripts={"a": ["refuse"]})
    (key, other) = created(journal, service, ["a", "b"])
    stats = await run_lifecycle(journal, service, clock, PhaseOptions(stage=Stage.START))
    assert row_state(journal, key) is TaskState.CREATED
    refused = [a for a in journal.attempts(key) if a.action == "start"]
    assert [(a.error_code, a.outcome) for a in refused] == [
        ("Invalid.Migration.Status", "permanent")
    ]
    assert stats.not_started == 1
    assert row_state(journal, other) is TaskState.STARTED
    again = await run_lifecycle(journal, service, clock, PhaseOptions(stage=Stage.START))
    assert again.started == 1
    assert row_state(journal, key) is TaskState.STARTED


@pytest.mark.anyio
async def test_permanent_start_error_leaves_the_task_created(
    journal: Journal, clock: FakeClock
) -> None:
    """A start refused with a permanent error is not retried, and the task stays created."""
    service = FakeService(clock=clock, start_scripts={"a": [error(ErrorKind.PERMANENT, "Bad")]})
    (key,) = created(journal, service, ["a"])
    stats = await run_lifecycle(journal, service, clock, PhaseOptions(stage=Stage.START))
    assert row_state(journal, key) is TaskState.CREATED
    assert service.starts == ["a"]
    assert stats.not_started == 1


@pytest.mark.anyio
async def test_permanent_start_error_on_a_running_task_marks_it_started(
    journal: Journal, clock: FakeClock
) -> None:
    """When a refused start finds the export already running (an earlier start of ours went
    through), the task is started, not lost."""
    service = FakeService(clock=clock, start_scripts={"a": [error(ErrorKind.PERMANENT, "Bad")]})
    (key,) = created(journal, service, ["a"])
    service.start_elsewhere(service.existing[(12345, "a")])
    await run_lifecycle(journal, service, clock, PhaseOptions(stage=Stage.START))
    assert row_state(journal, key) is TaskState.STARTED


@pytest.mark.anyio
async def test_lost_start_answer_is_settled_by_a_summary_read(
    journal: Journal, clock: FakeClock
) -> None:
    """A start whose answer was lost is read back and marked started, not sent again."""
    service = FakeService(clock=clock, start_scripts={"a": ["applied-then-lost"]})
    (key,) = created(journal, service, ["a"])
    stats = await run_lifecycle(journal, service, clock, PhaseOptions(stage=Stage.START))
    assert service.starts == ["a"]
    assert service.summaries == ["a"]
    assert stats.started == 1
    assert row_state(journal, key) is TaskState.STARTED


@pytest.mark.anyio
async def test_retryable_start_error_is_retried(journal: Journal, clock: FakeClock) -> None:
    """A throttled start is retried through the limiter and then succeeds."""
    throttled = error(ErrorKind.RETRYABLE, "Throttling.User", 429)
    service = FakeService(clock=clock, start_scripts={"a": [throttled]})
    (key,) = created(journal, service, ["a"])
    stats = await run_lifecycle(journal, service, clock, PhaseOptions(stage=Stage.START))
    assert service.starts == ["a", "a"]
    assert stats.throttled == 1
    assert row_state(journal, key) is TaskState.STARTED


@pytest.mark.parametrize(
    ("status", "code"), [("EXPORT_ERROR", "ExportFailed"), ("REVOKED", "Revoked")]
)
@pytest.mark.anyio
async def test_export_that_ends_badly_fails_the_task(
    journal: Journal, clock: FakeClock, tmp_path: Path, status: str, code: str
) -> None:
    """EXPORT_ERROR and REVOKED fail the task with ExportFailed / Revoked; nothing is fetched."""
    service = FakeService(clock=clock, export_duration=5.0, end_status={"a": status})
    (key, ok) = created(journal, service, ["a", "b"])
    downloader = FakeDownloader()
    stats = await run_lifecycle(journal, service, clock, full(tmp_path), downloader=downloader)
    row = journal.get(key)
    assert row is not None
    assert (row.state, row.error_code) == (TaskState.FAILED, code)
    assert status in (row.error_message or "")
    assert stats.export_failed == 1
    assert row_state(journal, ok) is TaskState.EXPORTED
    assert len(downloader.urls) == 1


@pytest.mark.anyio
async def test_wait_timeout_leaves_the_task_started(journal: Journal, clock: FakeClock) -> None:
    """An export still running when --wait-timeout ends stays started; the wait stops on time."""
    service = FakeService(clock=clock, export_duration=10_000.0)
    (key,) = created(journal, service, ["a"])
    began = clock.now
    options = PhaseOptions(stage=Stage.WAIT, wait_timeout=60.0, poll_interval=10.0)
    with capture_logs() as logs:
        stats = await run_lifecycle(journal, service, clock, options)
    assert row_state(journal, key) is TaskState.STARTED
    assert stats.still_running == 1
    assert 60.0 <= clock.now - began <= 61.0
    assert 5 <= len(service.summaries) <= 7  # about one read per poll interval, none late
    [timed_out] = [e for e in logs if e["event"] == "wait timed out"]
    assert "stay started; rerun with --wait" in timed_out["hint"]


def test_a_timed_out_import_wait_says_to_rerun_with_import() -> None:
    """The import leg's imports stay importing, and only --import waits for them again: its
    hint says so, not the export leg's --wait."""
    from runner.phases.tasks import IMPORT_LEG

    assert IMPORT_LEG.waiting == "the imports stay importing; rerun with --import to go on waiting"


@pytest.mark.anyio
async def test_expired_url_is_refreshed_before_the_fetch(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """A stored DownloadUrl past its Expires is replaced by a fresh one from the summary."""
    service = FakeService(clock=clock, export_duration=0.0)
    (key,) = created(journal, service, ["a"])
    migration_id = service.existing[(12345, "a")]
    service.start_elsewhere(migration_id)
    stale = service.url(migration_id, time.time() - 10)
    journal.apply([MarkExported(key, stale)])
    downloader = FakeDownloader()
    stats = await run_lifecycle(journal, service, clock, full(tmp_path), downloader=downloader)
    assert service.summaries == ["a"]
    assert downloader.urls != [stale]
    assert len(downloader.urls) == 1
    assert stats.downloaded == 1
    row = journal.get(key)
    assert row is not None
    assert row.download_url == downloader.urls[0]


@pytest.mark.anyio
async def test_refused_fetch_gets_a_fresh_url(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """A 403 from the storage (URL expired early) is answered by a fresh URL and one more try."""
    service = FakeService(clock=clock, export_duration=0.0)
    (key,) = created(journal, service, ["a"])
    downloader = FakeDownloader()
    place = f"oss.example.com/download/{service.existing[(12345, 'a')]}.zip"
    downloader.fail_with[place] = [DownloadError("HTTP 403", status=403, retryable=False)]
    stats = await run_lifecycle(journal, service, clock, full(tmp_path), downloader=downloader)
    assert len(downloader.urls) == 2
    assert service.summaries.count("a") == 2  # the poll, then the refresh
    assert stats.downloaded == 1
    outcomes = [a.outcome for a in journal.attempts(key) if a.action == "download"]
    assert outcomes == ["retryable", "ok"]


@pytest.mark.anyio
async def test_failed_download_leaves_the_task_exported_for_a_rerun(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """A fetch that keeps breaking is retried to the limit, then the task stays exported with no
    package recorded and its last error kept (status shows why); the next run saves it and
    clears the error."""
    service = FakeService(clock=clock, export_duration=0.0)
    (key,) = created(journal, service, ["a"])
    downloader = FakeDownloader()
    downloader.break_after_part = True
    stats = await run_lifecycle(journal, service, clock, full(tmp_path), downloader=downloader)
    assert stats.download_failed == 1
    assert len(downloader.urls) == 4  # RetryPolicy(max_attempts=4)
    row = journal.get(key)
    assert row is not None
    assert (row.state, row.package_path) == (TaskState.EXPORTED, None)
    assert row.error_code is not None
    assert (row.error_message or "").startswith("not downloaded: ")
    downloader.break_after_part = False
    again = await run_lifecycle(journal, service, clock, full(tmp_path), downloader=downloader)
    assert again.downloaded == 1
    row = journal.get(key)
    assert row is not None
    assert row.package_path is not None
    assert (row.error_code, row.error_message) == (None, None)


@pytest.mark.anyio
async def test_rerun_downloads_only_what_is_missing(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """After a crash, a rerun with --download fetches the missing packages only."""
    service = FakeService(clock=clock, export_duration=0.0)
    keys = created(journal, service, ["a", "b"])
    for key in keys:
        migration_id = service.existing[(12345, key.name)]
        service.start_elsewhere(migration_id)
        journal.apply([MarkExported(key, service.url(migration_id, time.time() + 600))])
    saved = package_path(tmp_path / "packages", REGION, 12345, "a", service.existing[(12345, "a")])
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"earlier run")  # renamed into place before the crash, not journaled
    downloader = FakeDownloader()
    stats = await run_lifecycle(journal, service, clock, full(tmp_path), downloader=downloader)
    assert len(downloader.urls) == 1
    assert "/download/100002.zip" in downloader.urls[0]
    assert stats.downloaded == 1
    assert stats.requests == 0  # stored URLs still valid: no API request at all
    assert saved.read_bytes() == b"earlier run"
    for key in keys:
        row = journal.get(key)
        assert row is not None
        assert row.package_path is not None


@pytest.mark.anyio
async def test_every_lifecycle_request_goes_through_the_limiter(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """Each start takes a write slot, each status read a read slot; pacing shows on the clock."""
    service = FakeService(clock=clock, export_duration=0.0)
    for project in (11, 12, 13, 14, 15):  # five workspaces of two tasks: one list read each
        created(journal, service, [f"p{project}a", f"p{project}b"], project_id=project)
    limiter = CountingLimiter(clock, write_rate=1.0, read_rate=2.0)
    began = clock.now
    stats = await run_lifecycle(
        journal, service, clock, full(tmp_path), downloader=FakeDownloader(), limiter=limiter
    )
    assert limiter.taken[Access.WRITE] == len(service.starts) == 10
    assert limiter.taken[Access.READ] == service.lists + len(service.summaries) == 5
    assert stats.requests == 15
    assert stats.downloaded == 10
    # 10 starts at 1/s, a poll interval, 5 reads at 2/s
    assert clock.now - began >= 9.0 + 10.0 + 2.0


@pytest.mark.anyio
async def test_a_workspace_is_polled_with_one_list_read(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """Twenty exporting tasks of one workspace cost one ListMigrations read per round."""
    service = FakeService(clock=clock, export_duration=25.0)
    keys = created(journal, service, [f"t{i:02}" for i in range(20)])
    options = PhaseOptions(stage=Stage.WAIT, poll_interval=10.0, wait_timeout=600.0)
    await run_lifecycle(journal, service, clock, options)
    assert {row_state(journal, k) for k in keys} == {TaskState.EXPORTED}
    assert service.summaries == []
    assert 2 <= service.lists <= 4  # a few rounds, one read each, never one per task


@pytest.mark.anyio
async def test_fatal_answer_during_start_stops_the_region(
    journal: Journal, clock: FakeClock
) -> None:
    """A fatal start answer stops its region: the rest there stay created; others go on."""
    fatal = error(ErrorKind.FATAL, "InvalidAccessKeyId.NotFound", 404)
    service = FakeService(clock=clock, start_scripts={"a0": [fatal]})
    stopped = created(journal, service, ["a0", "a1", "a2"])
    elsewhere = created(journal, service, ["b0"], region="cn-hangzhou")
    options = PhaseOptions(stage=Stage.START, concurrency=1)
    stats = await run_lifecycle(journal, service, clock, options)
    assert stats.fatal is not None
    assert stats.fatal.code == "InvalidAccessKeyId.NotFound"
    assert {row_state(journal, k) for k in stopped} == {TaskState.CREATED}
    assert row_state(journal, elsewhere[0]) is TaskState.STARTED
    assert [n for n in service.starts if n.startswith("a")] == ["a0"]
    assert stats.stopped == 3


@pytest.mark.anyio
async def test_an_outage_during_the_wait_does_not_end_it(
    journal: Journal, clock: FakeClock
) -> None:
    """Status reads that fail past their retries are tried again next round, not given up."""
    busy = error(ErrorKind.RETRYABLE, "ServiceUnavailable", 503)
    service = FakeService(clock=clock, export_duration=5.0, summary_scripts={"a": [busy] * 6})
    (key,) = created(journal, service, ["a"])
    options = PhaseOptions(stage=Stage.WAIT, wait_timeout=600.0, poll_interval=10.0)
    stats = await run_lifecycle(journal, service, clock, options)
    assert row_state(journal, key) is TaskState.EXPORTED
    assert stats.still_running == 0
