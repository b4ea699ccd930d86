"""The import leg against the simulator's model in process: every export carried through upload,
create import, start and wait, exactly once, with lost answers, interrupted uploads, failed and
partial imports, taken names, and reruns that pick each task up where it stopped."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from runner.clock import FakeClock
from runner.context import RunContext
from runner.engine import PhaseOptions, RunStats, run_phases
from runner.journal import Journal, MarkImportInFlight, MarkUploaded, TaskRow
from runner.journal_writer import JournalWriter
from runner.models import ApiError, ErrorKind, ExportSpec, ImportSpec, TaskKey, TaskState
from runner.phases import Stage
from runner.phases.tasks import LifecycleTask
from runner.plan import make_plan
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessUploader
from tests.fakes import FakeService

SOURCE, TARGET = "cn-shanghai", "cn-hangzhou"


def specs(workspaces: int = 2, per: int = 2) -> list[ExportSpec]:
    """Tasks in source workspaces 710001.., each imported under its own name into 810001.."""
    out = []
    for w in range(workspaces):
        for t in range(per):
            name = f"task-{t}"
            target = ImportSpec(TaskKey(TARGET, 810001 + w, name), commit_rule='{"a":true}')
            out.append(ExportSpec(TaskKey(SOURCE, 710001 + w, name), import_into=target))
    return out


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.db") as j:
        yield j


def options(tmp_path: Path, **overrides: object) -> PhaseOptions:
    values: dict[str, object] = {
        "stage": Stage.IMPORT,
        "download_dir": tmp_path / "packages",
        "poll_interval": 5.0,
        "wait_timeout": 3600.0,
        "concurrency": 4,
        "visibility_window": 20.0,
    }
    values.update(overrides)
    return PhaseOptions(**values)  # type: ignore[arg-type]


async def run(
    journal: Journal,
    service: FakeService,
    clock: FakeClock,
    tmp_path: Path,
    tasks: Sequence[ExportSpec],
    *,
    uploader: InProcessUploader | None = None,
    **overrides: object,
) -> RunStats:
    """One run through Stage.IMPORT: register, plan, and every phase."""
    journal.register(tasks)
    actions = make_plan(tasks, journal.row_map()).to_send()

    def lifecycle() -> list[LifecycleTask]:
        return [t for row in journal.rows() if (t := LifecycleTask.from_row(row)) is not None]

    def import_rows() -> list[TaskRow]:
        return [row for row in journal.rows() if row.imports is not None]

    async with JournalWriter(journal) as writer:
        ctx = RunContext(
            service,
            writer,
            RateLimiter(clock, write_rate=50, read_rate=50),
            clock,
            RetryPolicy(max_attempts=5),
            random.Random(3),
        )
        stats = await run_phases(
            ctx,
            options(tmp_path, **overrides),
            actions,
            lifecycle_tasks=lifecycle,
            import_rows=import_rows,
            downloader=service.downloader(),
            uploader=uploader or service.uploader(),
            wall=service.now,
        )
    return stats


def states(journal: Journal) -> Counter[TaskState]:
    return Counter(row.state for row in journal.rows())


def assert_one_import_each_from_its_export(
    service: FakeService, tasks: Sequence[ExportSpec]
) -> None:
    """Every target holds exactly one import per name, made from that very export's package."""
    imports = Counter((project, name) for project, name, _, _ in service.imports)
    assert imports == Counter(
        (s.import_into.key.project_id, s.import_into.key.name) for s in tasks if s.import_into
    )
    exports = {(p, n): i for p, n, i in service.created}
    for spec in tasks:
        assert spec.import_into is not None
        target = spec.import_into.key
        (source,) = [
            src for p, n, _, src in service.imports if (p, n) == (target.project_id, target.name)
        ]
        assert source == exports[(spec.key.project_id, spec.key.name)]


@pytest.mark.anyio
async def test_every_export_is_imported_once_and_a_rerun_sends_nothing(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """Exported, downloaded, uploaded, imported: each target holds one import per name made from
    its own export's package; the journal says imported with both ids; a rerun sends nothing."""
    service = FakeService(clock=clock, export_duration=30.0)
    tasks = specs()
    stats = await run(journal, service, clock, tmp_path, tasks)
    assert states(journal) == {TaskState.IMPORTED: 4}
    assert (stats.uploaded, stats.imports_created, stats.imported, stats.import_failed) == (
        4,
        4,
        4,
        0,
    )
    assert_one_import_each_from_its_export(service, tasks)
    for row in journal.rows():
        assert row.imports is not None
        assert row.imports.migration_id is not None
        assert row.imports.package_file is not None
        assert row.imports.package_file.startswith("http://runner-sim-cn-hangzhou.")
        # the import was made from the downloaded file itself, byte for byte
        assert row.package_path is not None
        saved = hashlib.sha256(await anyio.Path(row.package_path).read_bytes()).hexdigest()
        assert service.state.migrations[row.imports.migration_id].package_sha256 == saved
    seen = service.sim_stats.requests.total()
    again = await run(journal, service, clock, tmp_path, tasks)
    assert again.requests == 0
    assert service.sim_stats.requests.total() == seen  # the service saw nothing either


@pytest.mark.anyio
async def test_lost_import_answers_never_make_a_second_import(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """CreateImportMigration applied but its answer lost, on a service that accepts a taken
    name: the import is found by name and adopted, never made twice."""
    service = FakeService(clock=clock, export_duration=30.0, unique_names=False)
    service.import_scripts = {"task-0": ["applied-then-lost"], "task-1": ["applied-then-500"]}
    tasks = specs()
    stats = await run(journal, service, clock, tmp_path, tasks)
    assert states(journal) == {TaskState.IMPORTED: 4}
    assert stats.imports_created == 4
    assert service.state.duplicates == 0
    assert_one_import_each_from_its_export(service, tasks)
    assert Counter(service.import_creates) == {"task-0": 2, "task-1": 2}  # one each, no resend


async def import_behind_the_journal(
    service: FakeService,
    journal: Journal,
    key: TaskKey,
    *,
    ours: bool = True,
    description: str | None = None,
) -> str:
    """Upload the task's package and create its import as a run that died before it heard the
    answer would have: the service has the import, the journal only the intent (`ours`), or
    nothing at all (someone else's import, with its own `description` if given). Returns the
    PackageFile."""
    row = journal.get(key)
    assert row is not None
    assert row.package_path is not None
    assert row.imports is not None
    grant = await service.authorize_file_upload(TARGET)
    await service.uploader().upload(grant, Path(row.package_path), 5)
    params = json.loads(row.imports.params)
    if description is not None:
        params["Description"] = description
    await service.create_import_migration(TARGET, params, grant.package_file)
    if ours:
        journal.apply([MarkUploaded(key, grant.package_file), MarkImportInFlight(key)])
    return grant.package_file


@pytest.mark.anyio
async def test_a_crash_after_the_intent_looks_before_it_sends(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """A row left uploaded with its create's intent committed, the import made: the rerun finds
    it by name at once and adopts it, uploading nothing and creating nothing, then starts and
    waits."""
    service = FakeService(clock=clock, export_duration=30.0, unique_names=False)
    tasks = specs(1, 1)
    await run(journal, service, clock, tmp_path, tasks, stage=Stage.DOWNLOAD)
    await import_behind_the_journal(service, journal, tasks[0].key)
    grants, creates, began = service.grants, list(service.import_creates), clock.now
    await run(journal, service, clock, tmp_path, tasks, visibility_window=600.0)
    assert states(journal) == {TaskState.IMPORTED: 1}
    assert clock.now - began < 300.0  # found at once: the 600 s window was not waited out
    assert (service.grants, service.import_creates) == (grants, creates)
    assert len(service.imports) == 1
    assert service.state.duplicates == 0


@pytest.mark.anyio
async def test_an_intent_that_never_left_is_sent_after_the_window(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """The intent committed but the create never sent (a crash in between): the rerun looks,
    finds nothing, waits out the visibility window from the intent, looks again and only then
    sends, once; the uploaded package is used, not uploaded again."""
    service = FakeService(clock=clock, export_duration=30.0, unique_names=False)
    tasks = specs(1, 1)
    key = tasks[0].key
    await run(journal, service, clock, tmp_path, tasks, stage=Stage.DOWNLOAD)
    row = journal.get(key)
    assert row is not None
    assert row.package_path is not None
    grant = await service.authorize_file_upload(TARGET)
    await service.uploader().upload(grant, Path(row.package_path), 5)
    journal.apply([MarkUploaded(key, grant.package_file), MarkImportInFlight(key)])
    grants, began = service.grants, clock.now
    await run(journal, service, clock, tmp_path, tasks)
    assert states(journal) == {TaskState.IMPORTED: 1}
    assert service.grants == grants  # the package was there: not uploaded again
    assert service.import_creates == ["task-0"]
    assert clock.now - began >= 20.0  # the window passed before the send
    assert len(service.imports) == 1


@pytest.mark.anyio
async def test_failed_and_partial_imports_are_reported_as_such(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """An import that ends IMPORT_ERROR or PARTIAL_SUCCESS is import_failed with its code, never
    imported; the rerun leaves it (its name is taken in the target) and sends nothing."""
    service = FakeService(clock=clock, export_duration=30.0)
    service.import_end = {"task-0": "IMPORT_ERROR", "task-1": "PARTIAL_SUCCESS"}
    tasks = specs(1, 2)
    stats = await run(journal, service, clock, tmp_path, tasks)
    codes = {row.key.name: (row.state, row.error_code) for row in journal.rows()}
    assert codes == {
        "task-0": (TaskState.IMPORT_FAILED, "ImportFailed"),
        "task-1": (TaskState.IMPORT_FAILED, "ImportPartial"),
    }
    assert stats.import_failed == 2
    again = await run(journal, service, clock, tmp_path, tasks)
    assert again.requests == 0


@pytest.mark.anyio
async def test_an_interrupted_upload_is_redone_whole(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """Uploads cut short store nothing; each is posted again under a fresh grant, and the import
    is made from a whole package."""
    service = FakeService(clock=clock, export_duration=30.0)
    flaky = InProcessUploader(
        service.service, now=service.now, faults=Faults(upload_reset_rate=0.5), seed=4
    )
    tasks = specs(2, 2)
    await run(journal, service, clock, tmp_path, tasks, uploader=flaky)
    assert states(journal) == {TaskState.IMPORTED: 4}
    assert service.sim_stats.faults["upload_reset"] > 0
    assert service.grants == 4 + service.sim_stats.faults["upload_reset"]
    assert_one_import_each_from_its_export(service, tasks)


@pytest.mark.anyio
async def test_an_upload_that_gives_up_leaves_its_last_error_on_the_task(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """Every upload cut short: the tasks stay exported (a rerun uploads again) and each keeps
    why it was not uploaded, for status and report."""
    service = FakeService(clock=clock, export_duration=30.0)
    broken = InProcessUploader(
        service.service, now=service.now, faults=Faults(upload_reset_rate=1.0), seed=4
    )
    tasks = specs(1, 2)
    await run(journal, service, clock, tmp_path, tasks, uploader=broken)
    assert states(journal) == {TaskState.EXPORTED: 2}
    for spec in tasks:
        row = journal.get(spec.key)
        assert row is not None
        assert row.error_code is not None
        assert (row.error_message or "").startswith("not uploaded: ")


@pytest.mark.anyio
async def test_a_name_taken_in_the_target_by_another_fails_clearly(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """An import name already taken in the target by a task this journal never made: the task
    is import_failed with ImportNameTaken, nothing is adopted, and its package is not uploaded
    (the target is listed before any upload for it)."""
    service = FakeService(clock=clock, export_duration=30.0)
    tasks = specs(1, 1)
    key = tasks[0].key
    await run(journal, service, clock, tmp_path, tasks, stage=Stage.DOWNLOAD)
    await import_behind_the_journal(service, journal, key, ours=False)
    creates = list(service.import_creates)
    stats = await run(journal, service, clock, tmp_path, tasks)
    row = journal.get(key)
    assert row is not None
    assert (row.state, row.error_code) == (TaskState.IMPORT_FAILED, "ImportNameTaken")
    assert len(service.imports) == 1
    assert service.import_creates == creates  # found by the target's listing: nothing sent
    assert (stats.uploaded, stats.imports_adopted) == (0, 0)
    assert row.error_message is not None
    assert "--adopt-existing" in row.error_message

    # as the message says: a rerun with --adopt-existing adopts it, and carries it through
    adopted = await run(journal, service, clock, tmp_path, tasks, adopt_existing=True)
    row = journal.get(key)
    assert row is not None
    assert row.imports is not None
    assert row.state is TaskState.IMPORTED
    ((project, name, found, _),) = service.imports
    target = row.imports.target
    assert (row.imports.migration_id, target.project_id, target.name) == (found, project, name)
    assert (adopted.imports_adopted, adopted.uploaded) == (1, 0)
    assert service.import_creates == creates


@pytest.mark.anyio
async def test_a_lost_journal_never_imports_twice_and_adopts_what_it_finds(
    clock: FakeClock, tmp_path: Path
) -> None:
    """A whole migration, then the journal lost: a run on a new journal with --adopt-existing
    lists each target before its first import there and adopts the import it finds under each
    name, with its id, uploading nothing: on a service that accepts a taken name no import is
    made a second time, and every task ends imported."""
    service = FakeService(clock=clock, export_duration=30.0, unique_names=False)
    tasks = specs(2, 2)
    with Journal.open(tmp_path / "first.db") as first:
        await run(first, service, clock, tmp_path, tasks)
        assert states(first) == {TaskState.IMPORTED: 4}
        made = {row.key: row.imports.migration_id for row in first.rows() if row.imports}
    creates = list(service.import_creates)
    with Journal.open(tmp_path / "second.db") as second:
        stats = await run(second, service, clock, tmp_path / "again", tasks, adopt_existing=True)
        assert states(second) == {TaskState.IMPORTED: 4}
        assert {row.key: row.imports.migration_id for row in second.rows() if row.imports} == made
    assert (stats.imports_adopted, stats.imports_created, stats.uploaded) == (4, 0, 0)
    assert service.import_creates == creates
    assert len(service.imports) == 4
    assert service.state.duplicates == 0


@pytest.mark.anyio
async def test_an_adopted_import_that_differs_from_the_manifest_is_said_to_drift(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """An import adopted with --adopt-existing whose listed description is not the manifest's
    is logged as drifted, as an adopted export is; the adoption goes on (the operator asked
    for it). One that matches says nothing."""
    service = FakeService(clock=clock, export_duration=30.0)
    tasks = specs(1, 2)
    await run(journal, service, clock, tmp_path, tasks, stage=Stage.DOWNLOAD)
    await import_behind_the_journal(
        service, journal, tasks[0].key, ours=False, description="made by hand"
    )
    await import_behind_the_journal(service, journal, tasks[1].key, ours=False)
    with capture_logs() as logs:
        stats = await run(journal, service, clock, tmp_path, tasks, adopt_existing=True)
    assert states(journal) == {TaskState.IMPORTED: 2}
    assert stats.imports_adopted == 2
    drifted = [entry for entry in logs if entry["event"] == "drifted"]
    assert [entry["task"] for entry in drifted] == [str(tasks[0].key)]
    assert "'made by hand'" in drifted[0]["reason"]


@pytest.mark.anyio
async def test_an_import_answered_5xx_every_time_ends_the_run_in_flight(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """A CreateImportMigration answered 5xx every time ends after MAX_LOST_ROUNDS sends, its
    import left in flight for the next run; the other task is imported meanwhile."""
    from runner.attempt import MAX_LOST_ROUNDS

    service = FakeService(clock=clock, export_duration=30.0, unique_names=False)
    failing = ApiError(ErrorKind.UNKNOWN_OUTCOME, "ServiceUnavailable", "busy", http_status=503)
    service.import_scripts = {"task-0": [failing] * 100}
    tasks = specs(1, 2)
    stats = await run(journal, service, clock, tmp_path, tasks, visibility_window=60.0)
    assert Counter(service.import_creates) == {"task-0": MAX_LOST_ROUNDS, "task-1": 1}
    assert stats.imports_created == 1
    row = journal.get(tasks[0].key)
    assert row is not None
    assert row.imports is not None
    assert row.imports.sent
    assert row.imports.migration_id is None


@pytest.mark.anyio
async def test_a_lost_create_not_applied_is_sent_again_only_after_the_window(
    journal: Journal, clock: FakeClock, tmp_path: Path
) -> None:
    """A CreateImportMigration lost before it was applied: the lookup says absent, the task
    waits out the visibility window in a later pass (the others go on meanwhile), is looked up
    again and only then sent a second time: one import, no duplicate."""
    service = FakeService(clock=clock, export_duration=30.0, unique_names=False)
    lost = ApiError(ErrorKind.UNKNOWN_OUTCOME, "ExchangeError", "timed out")
    service.import_scripts = {"task-0": [lost]}
    tasks = specs(1, 2)
    began = clock.now
    stats = await run(journal, service, clock, tmp_path, tasks, visibility_window=60.0)
    assert states(journal) == {TaskState.IMPORTED: 2}
    assert stats.imports_created == 2
    assert Counter(service.import_creates) == {"task-0": 2, "task-1": 1}
    assert service.state.duplicates == 0
    assert clock.now - began >= 60.0
    assert_one_import_each_from_its_export(service, tasks)
