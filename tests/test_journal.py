"""The journal: schema, ops, queries, the exclusive lock, the group-committing writer, crashes."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from runner import journal as journal_module
from runner.journal import (
    Journal,
    JournalBusyError,
    JournalError,
    JournalMissingError,
    JournalVersionError,
    JournalWriteError,
    MarkCreated,
    MarkDownloaded,
    MarkExported,
    MarkFailed,
    MarkInFlight,
    MarkPending,
    MarkStarted,
    Op,
    RecordAttempt,
    Register,
)
from runner.journal_schema import MIGRATIONS
from runner.journal_writer import QUICK_SWITCHES, JournalWriter, _CommitThread
from runner.models import ExportMode, ExportSpec, TaskKey, TaskState

ROOT = Path(__file__).resolve().parents[1]
KEY = TaskKey("cn-shanghai", 12345, "sales_full")
SPEC = ExportSpec(KEY, description="quarterly backup")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"


def open_registered(path: Path, clock: FakeClock, *specs: ExportSpec) -> Journal:
    journal = Journal.open(path, clock=clock)
    journal.apply([Register(spec) for spec in specs or (SPEC,)])
    return journal


def attempt(
    key: TaskKey = KEY,
    outcome: str = "ok",
    *,
    http_status: int | None = 200,
    error_code: str | None = None,
    latency_ms: float | None = 12.5,
    at: float | None = None,
) -> RecordAttempt:
    return RecordAttempt(key, "create", http_status, error_code, "req-1", latency_ms, outcome, at)


# --- schema and lifecycle -------------------------------------------------------------------------


def test_open_creates_parent_dirs_and_migrates_from_empty(path: Path) -> None:
    """A fresh path gets its folders, the latest schema, and no tasks."""
    with Journal.open(path) as journal:
        assert path.is_file()
        assert journal.schema_version == len(MIGRATIONS)
        assert journal.rows() == []
        assert journal.attempts() == []
        assert set(journal.counts().values()) == {0}


def test_reopen_preserves_rows(path: Path, clock: FakeClock) -> None:
    """What was committed is there after close and reopen."""
    with open_registered(path, clock) as journal:
        journal.apply([MarkInFlight(KEY, SPEC.fingerprint()), attempt(outcome="sent")])
    with Journal.open(path, clock=clock) as journal:
        row = journal.get(KEY)
        assert row is not None
        assert row.state is TaskState.IN_FLIGHT
        assert row.attempts == 1
        assert [a.outcome for a in journal.attempts(KEY)] == ["sent"]


def test_newer_schema_is_refused_and_the_lock_released(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal written by newer code is refused, clearly; a failed open leaves no lock behind."""
    with Journal.open(path):
        pass
    newer = (*MIGRATIONS, ("CREATE TABLE later (x INTEGER)",))
    with monkeypatch.context() as patch:
        patch.setattr(journal_module, "MIGRATIONS", newer)
        with Journal.open(path) as journal:  # upgrades by one step on the way
            assert journal.schema_version == len(newer)
    newer_than = rf"schema version {len(newer)}, newer than this runner"
    with pytest.raises(JournalVersionError, match=newer_than):
        Journal.open(path)
    with pytest.raises(JournalVersionError, match=re.escape(str(path))):
        Journal.open_readonly(path)
    with monkeypatch.context() as patch:
        patch.setattr(journal_module, "MIGRATIONS", newer)
        Journal.open(path).close()


def test_readonly_refuses_an_older_schema(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only open cannot migrate, so it says a run will upgrade the journal."""
    Journal.open(path).close()
    monkeypatch.setattr(journal_module, "MIGRATIONS", (*MIGRATIONS, ("CREATE TABLE later (x)",)))
    with pytest.raises(JournalVersionError, match="older than this runner"):
        Journal.open_readonly(path)


def test_second_open_is_refused_naming_the_file(path: Path) -> None:
    """Another writer on a journal in use gets JournalBusyError naming the journal and holder."""
    with Journal.open(path):
        with pytest.raises(JournalBusyError) as caught:
            Journal.open(path)
        message = str(caught.value)
        assert str(path) in message
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "pytest" in message  # the holder's command line
        assert "--journal" not in message  # no advice to split one estate over two journals
    Journal.open(path).close()  # released on close


def test_readonly_open_works_while_locked_and_cannot_write(path: Path, clock: FakeClock) -> None:
    """status/report can read while a run holds the lock, and see what it committed."""
    with open_registered(path, clock) as writer, Journal.open_readonly(path) as reader:
        writer.apply([MarkCreated(KEY, 77, "req-9")])
        row = reader.get(KEY)
        assert row is not None
        assert row.migration_id == 77
        assert reader.readonly
        with pytest.raises(JournalError, match="read-only"):
            reader.apply([MarkPending(KEY)])


def test_readonly_open_of_missing_file_is_a_clear_error(path: Path) -> None:
    """No journal yet: JournalMissingError naming the path, and nothing is created."""
    with pytest.raises(JournalMissingError, match=re.escape(str(path))):
        Journal.open_readonly(path)
    assert not path.exists()


# --- ops -----------------------------------------------------------------------------------------


def test_register_is_idempotent_and_keeps_the_stored_fingerprint(
    path: Path, clock: FakeClock
) -> None:
    """Registering again, even with a changed spec, leaves the row as it was."""
    changed = ExportSpec(KEY, export_mode=ExportMode.INCREMENTAL, incremental_since=1)
    with open_registered(path, clock) as journal:
        clock.now = 2000.0
        journal.apply([Register(SPEC), Register(changed)])
        [row] = journal.rows()
        assert row.state is TaskState.PENDING
        assert row.fingerprint == SPEC.fingerprint() != changed.fingerprint()
        assert row.create_sent is False
        assert row.attempts == 0
        assert row.updated_at == 1000.0


def test_mark_in_flight_sets_create_sent_and_fingerprint_and_clears_errors(
    path: Path, clock: FakeClock
) -> None:
    """MarkInFlight: in_flight, create_sent, the new fingerprint, no stale error."""
    with open_registered(path, clock) as journal:
        journal.apply([MarkFailed(KEY, "Throttling.User", "slow down", "req-1")])
        clock.now = 1500.0
        journal.apply([MarkInFlight(KEY, "fp-2")])
        row = journal.get(KEY)
        assert row is not None
        assert (row.state, row.create_sent, row.fingerprint) == (TaskState.IN_FLIGHT, True, "fp-2")
        assert (row.error_code, row.error_message, row.request_id) == (None, None, None)
        assert row.updated_at == 1500.0


def test_mark_created_records_id_and_request(path: Path, clock: FakeClock) -> None:
    """MarkCreated: created, with the migration id and request id."""
    with open_registered(path, clock) as journal:
        journal.apply([MarkInFlight(KEY, "fp"), MarkCreated(KEY, 4242, "req-7")])
        row = journal.get(KEY)
        assert row is not None
        assert (row.state, row.migration_id, row.request_id) == (TaskState.CREATED, 4242, "req-7")
        assert row.create_sent


def test_mark_failed_records_the_error(path: Path, clock: FakeClock) -> None:
    """MarkFailed: failed, with code, message and request id."""
    with open_registered(path, clock) as journal:
        journal.apply([MarkFailed(KEY, "InvalidParameter", "bad name", "req-3")])
        row = journal.get(KEY)
        assert row is not None
        assert row.state is TaskState.FAILED
        assert (row.error_code, row.error_message, row.request_id) == (
            "InvalidParameter",
            "bad name",
            "req-3",
        )
        assert not row.create_sent


def test_mark_pending_clears_errors_and_keeps_create_sent(path: Path, clock: FakeClock) -> None:
    """MarkPending: back to pending; that a create was once sent is never forgotten."""
    with open_registered(path, clock) as journal:
        journal.apply([MarkInFlight(KEY, "fp"), MarkFailed(KEY, "E", "m", None), MarkPending(KEY)])
        row = journal.get(KEY)
        assert row is not None
        assert (row.state, row.create_sent, row.error_code) == (TaskState.PENDING, True, None)


def test_mark_started_and_exported(path: Path, clock: FakeClock) -> None:
    """MarkStarted then MarkExported keep the migration id and record the download URL."""
    with open_registered(path, clock) as journal:
        journal.apply([MarkCreated(KEY, 9, "r1"), MarkStarted(KEY, "r2")])
        row = journal.get(KEY)
        assert row is not None
        assert (row.state, row.request_id) == (TaskState.STARTED, "r2")
        journal.apply([MarkExported(KEY, "https://example.invalid/pkg.zip")])
        row = journal.get(KEY)
        assert row is not None
        assert (row.state, row.migration_id) == (TaskState.EXPORTED, 9)
        assert row.download_url == "https://example.invalid/pkg.zip"


def test_record_attempt_appends_history_and_counts(path: Path, clock: FakeClock) -> None:
    """Each RecordAttempt adds one history row, in order, and one to the task's count."""
    other = TaskKey("cn-hangzhou", 1, "other")
    with open_registered(path, clock, SPEC, ExportSpec(other)) as journal:
        journal.apply([attempt(outcome="throttled", http_status=429, error_code="Throttling.User")])
        clock.now = 1001.0
        journal.apply([attempt(other, latency_ms=None), attempt(outcome="created", at=999.5)])
        history = journal.attempts(KEY)
        assert [(a.outcome, a.http_status, a.at) for a in history] == [
            ("throttled", 429, 1000.0),
            ("created", 200, 999.5),
        ]
        assert history[0].error_code == "Throttling.User"
        assert history[0].key == KEY
        assert [a.key for a in journal.attempts()] == [KEY, other, KEY]
        assert journal.attempts(other)[0].latency_ms is None
        rows = journal.row_map()
        assert (rows[KEY].attempts, rows[other].attempts) == (2, 1)


def test_rows_are_ordered_and_counted_by_state(path: Path, clock: FakeClock) -> None:
    """rows() sorts by region, project, name; counts() covers every state."""
    keys = [
        TaskKey("cn-shanghai", 2, "b"),
        TaskKey("cn-beijing", 9, "z"),
        TaskKey("cn-shanghai", 2, "a"),
    ]
    with open_registered(path, clock, *(ExportSpec(k) for k in keys)) as journal:
        journal.apply([MarkCreated(keys[0], 1, None), MarkFailed(keys[1], "E", "m", None)])
        assert [r.key for r in journal.rows()] == sorted(keys)
        counts = journal.counts()
        assert (
            counts[TaskState.CREATED] == counts[TaskState.FAILED] == counts[TaskState.PENDING] == 1
        )
        assert sum(counts.values()) == 3
        assert set(counts) == set(TaskState)


def test_a_failing_op_rolls_back_its_whole_batch(path: Path, clock: FakeClock) -> None:
    """An op on an unregistered task fails the batch, and nothing of that batch is kept."""
    stranger = TaskKey("cn-shanghai", 1, "never-registered")
    with open_registered(path, clock) as journal:
        with pytest.raises(JournalError, match="unknown task"):
            journal.apply([MarkCreated(KEY, 5, None), attempt(stranger)])
        row = journal.get(KEY)
        assert row is not None
        assert row.state is TaskState.PENDING
        assert journal.get(stranger) is None
        assert journal.attempts() == []


# --- the writer ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_writer_group_commits_concurrent_writes(path: Path, clock: FakeClock) -> None:
    """Many concurrent writes are committed in far fewer transactions, none lost."""
    specs = [ExportSpec(TaskKey("cn-shanghai", 1, f"t{i}")) for i in range(50)]
    with open_registered(path, clock, *specs) as journal:
        before = journal.transactions
        async with JournalWriter(journal) as writer, anyio.create_task_group() as workers:
            for spec in specs:
                workers.start_soon(writer.write, attempt(spec.key), MarkCreated(spec.key, 1, None))
        assert journal.transactions - before < len(specs) // 5
        assert journal.counts()[TaskState.CREATED] == len(specs)
        assert len(journal.attempts()) == len(specs)


class GatedJournal:
    """Delegates apply() but holds it until released, so a test can look mid-commit."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.entered = threading.Event()
        self.release = threading.Event()

    def apply(self, ops: Sequence[Op]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        self.journal.apply(ops)


@pytest.mark.anyio
async def test_write_returns_only_after_commit(path: Path, clock: FakeClock) -> None:
    """write() is still waiting while the commit is held; once it returns, others can read it."""
    returned = anyio.Event()
    with open_registered(path, clock) as journal:
        gated = GatedJournal(journal)

        async def worker(writer: JournalWriter) -> None:
            await writer.write(MarkInFlight(KEY, "fp"))
            returned.set()

        try:
            async with JournalWriter(gated) as writer, anyio.create_task_group() as workers:
                workers.start_soon(worker, writer)
                assert await anyio.to_thread.run_sync(gated.entered.wait, 10)
                assert not returned.is_set()
                with Journal.open_readonly(path) as reader:
                    assert reader.counts()[TaskState.PENDING] == 1
                gated.release.set()
                await returned.wait()
                with Journal.open_readonly(path) as reader:
                    row = reader.get(KEY)
                    assert row is not None
                    assert row.state is TaskState.IN_FLIGHT
        finally:
            gated.release.set()


class FlakyJournal:
    """apply() raises while `failing` is set; otherwise it records the batch sizes."""

    def __init__(self) -> None:
        self.failing = True
        self.batches: list[int] = []

    def apply(self, ops: Sequence[Op]) -> None:
        if self.failing:
            raise RuntimeError("disk I/O error")
        self.batches.append(len(ops))


@pytest.mark.anyio
async def test_failing_apply_reaches_every_waiter_and_the_writer_goes_on() -> None:
    """Each waiter of a failed batch gets JournalWriteError caused by the apply error."""
    flaky = FlakyJournal()
    causes: list[BaseException | None] = []

    async def worker(writer: JournalWriter) -> None:
        with pytest.raises(JournalWriteError, match="disk I/O error") as caught:
            await writer.write(MarkPending(KEY))
        causes.append(caught.value.__cause__)

    async with JournalWriter(flaky) as writer:
        async with anyio.create_task_group() as workers:
            for _ in range(5):
                workers.start_soon(worker, writer)
        flaky.failing = False
        await writer.write(MarkPending(KEY), MarkPending(KEY))
    assert len(causes) == 5
    assert all(isinstance(c, RuntimeError) for c in causes)
    assert flaky.batches == [2]


@pytest.mark.anyio
async def test_write_after_close_is_refused() -> None:
    """Once the writer is closed, write() raises instead of waiting forever."""
    async with JournalWriter(FlakyJournal()) as writer:
        pass
    with pytest.raises(JournalWriteError, match="closed"):
        await writer.write(MarkPending(KEY))


@pytest.mark.anyio
async def test_a_cancelled_writer_fails_its_waiters() -> None:
    """Writes queued when the writer is cancelled get an error rather than hang."""
    writer = JournalWriter(FlakyJournal())
    errors: list[BaseException] = []

    async def worker() -> None:
        try:
            await writer.write(MarkPending(KEY))
        except JournalWriteError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await writer.run()
    assert len(errors) == 1
    assert "stopped before" in str(errors[0].__cause__)


@pytest.mark.anyio
async def test_a_batch_being_committed_completes_despite_cancellation(
    path: Path, clock: FakeClock
) -> None:
    """Cancelling the writer mid-commit still commits that batch and tells its waiter so."""
    outcomes: list[str] = []
    with open_registered(path, clock) as journal:
        gated = GatedJournal(journal)
        writer = JournalWriter(gated)

        async def worker() -> None:
            await writer.write(MarkInFlight(KEY, "fp"))
            outcomes.append("committed")

        try:
            async with anyio.create_task_group() as workers:
                workers.start_soon(worker)
                async with anyio.create_task_group() as writer_group:
                    writer_group.start_soon(writer.run)
                    assert await anyio.to_thread.run_sync(gated.entered.wait, 10)
                    writer_group.cancel_scope.cancel()
                    gated.release.set()
        finally:
            gated.release.set()
        assert outcomes == ["committed"]
        row = journal.get(KEY)
        assert row is not None
        assert row.state is TaskState.IN_FLIGHT


@pytest.mark.anyio
async def test_a_cancelled_wait_leaves_the_rest_of_its_batch_waiting(
    path: Path, clock: FakeClock
) -> None:
    """A waiter cancelled while its batch commits stops waiting alone: the other waiter of that
    batch still learns that its ops were committed."""
    outcomes: list[str] = []
    scopes: dict[str, anyio.CancelScope] = {}
    with open_registered(path, clock) as journal:
        gated = GatedJournal(journal)

        async def waiter(writer: JournalWriter, name: str) -> None:
            with anyio.CancelScope() as scopes[name]:
                await writer.write(MarkInFlight(KEY, "fp"))
                outcomes.append(name)

        try:
            async with JournalWriter(gated) as writer, anyio.create_task_group() as waiters:
                waiters.start_soon(waiter, writer, "cancelled")
                waiters.start_soon(waiter, writer, "kept")
                assert await anyio.to_thread.run_sync(gated.entered.wait, 10)
                scopes["cancelled"].cancel()
                await anyio.lowlevel.checkpoint()
                gated.release.set()
        finally:
            gated.release.set()
        assert outcomes == ["kept"]
        row = journal.get(KEY)
        assert row is not None
        assert row.state is TaskState.IN_FLIGHT


@pytest.mark.anyio
async def test_an_error_in_the_block_is_not_wrapped(path: Path, clock: FakeClock) -> None:
    """Leaving `async with JournalWriter` by an exception commits what was written, unwrapped."""
    with open_registered(path, clock) as journal:

        async def run() -> None:
            async with JournalWriter(journal) as writer:
                await writer.write(MarkCreated(KEY, 3, None))
                raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await run()
        assert journal.counts()[TaskState.CREATED] == 1


# --- durability ----------------------------------------------------------------------------------

KILLED_AFTER_INTENT = textwrap.dedent(
    """
    import os, signal, sys
    import anyio
    from runner.journal import Journal, MarkInFlight, Register
    from runner.journal_writer import JournalWriter
    from runner.models import ExportSpec, TaskKey

    async def main() -> None:
        spec = ExportSpec(TaskKey("cn-shanghai", 12345, "sales_full"))
        journal = Journal.open(sys.argv[1])
        async with JournalWriter(journal) as writer:
            await writer.write(Register(spec))
            await writer.write(MarkInFlight(spec.key, spec.fingerprint()))
            os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)
    """
)


def test_in_flight_survives_sigkill_right_after_it_is_written(path: Path) -> None:
    """A process killed right after MarkInFlight commits leaves the row in_flight, lock free."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_INTENT, str(path)],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with Journal.open(path) as journal:
        row = journal.get(KEY)
        assert row is not None
        assert row.state is TaskState.IN_FLIGHT
        assert row.create_sent
        assert row.fingerprint == ExportSpec(KEY).fingerprint()


def test_version_1_journal_gains_package_path_and_keeps_rows(path: Path) -> None:
    """A journal written before step 2 is upgraded in place: rows kept, package_path empty."""
    key = TaskKey("cn-shanghai", 12345, "old")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO tasks (region, project_id, name, state, migration_id, created_at,"
        " updated_at) VALUES (?, ?, ?, 'created', 7, 0, 0)",
        (key.region, key.project_id, key.name),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with Journal.open(path) as journal:
        row = journal.get(key)
        assert row is not None
        assert (row.state, row.migration_id, row.package_path) == (TaskState.CREATED, 7, None)
        journal.apply([MarkDownloaded(key, "/p/old.zip")])
        assert journal.get(key).package_path == "/p/old.zip"  # type: ignore[union-attr]
        assert journal.schema_version == len(MIGRATIONS)


def test_journal_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """The journal (which holds presigned URLs) and its lock are created mode 0600."""
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        journal.apply([Register(SPEC)])
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.with_name("j.db.lock").stat().st_mode & 0o777 == 0o600


@pytest.mark.anyio
async def test_a_commit_runs_in_its_thread_and_its_outcome_comes_back() -> None:
    """A job handed to the commit thread runs there (not on the loop), its result is what the
    awaiting task gets, and an error it raises is raised to that task, not lost in the thread."""
    thread = _CommitThread()
    ran_in: list[str] = []

    def commit() -> int:
        ran_in.append(threading.current_thread().name)
        return 7

    def failing() -> int:
        raise JournalWriteError("disk full")

    try:
        assert await thread.run(commit) == 7
        with pytest.raises(JournalWriteError, match="disk full"):
            await thread.run(failing)
        assert await thread.run(commit) == 7  # the thread lives on after a failed job
    finally:
        thread.stop()
    assert ran_in == ["journal commits", "journal commits"]


def test_commit_threads_shorten_the_switch_interval_while_they_live() -> None:
    """While a commit thread lives the switch interval is at most QUICK_SWITCHES.INTERVAL (its
    fsync's end is not kept waiting for the GIL); overlapping threads restore the interval
    they found only when the last one stops."""
    before = sys.getswitchinterval()
    first = _CommitThread()
    assert sys.getswitchinterval() <= QUICK_SWITCHES.INTERVAL
    second = _CommitThread()
    first.stop()
    assert sys.getswitchinterval() <= QUICK_SWITCHES.INTERVAL
    second.stop()
    assert sys.getswitchinterval() == before
