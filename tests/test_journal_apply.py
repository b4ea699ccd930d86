"""A batch of ops applied grouped (a few executemany runs), and staged: applied on the caller's
thread, committed from another."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from runner.journal import (
    Journal,
    JournalError,
    MarkCreated,
    MarkDownloaded,
    MarkExists,
    MarkExported,
    MarkFailed,
    MarkImportCreated,
    MarkImported,
    MarkImportFailed,
    MarkImportInFlight,
    MarkImporting,
    MarkInFlight,
    MarkPending,
    MarkStarted,
    MarkUploaded,
    Op,
    RecordAttempt,
    Register,
)
from runner.models import ExportSpec, ImportSpec, TaskKey, TaskState

KEYS = [TaskKey("cn-shanghai", 7, f"t{i}") for i in range(6)]


def clock() -> float:
    return 1000.0


def random_op(rng: random.Random, key: TaskKey) -> Op:
    """Any op but Register, with values that can be stored."""
    n = rng.randrange(1, 10**6)
    ops: list[Op] = [
        MarkInFlight(key, f"fp{n}"),
        MarkCreated(key, n, f"r{n}"),
        MarkCreated(key, n, None, fingerprint=f"fp{n}"),
        MarkFailed(key, "E", f"m{n}", None),
        MarkPending(key, unsent=rng.random() < 0.5),
        MarkStarted(key, f"r{n}"),
        MarkExported(key, f"https://x/{n}", None),
        MarkDownloaded(key, f"/p/{n}.zip"),
        MarkExists(key, n, "taken"),
        MarkUploaded(key, f"file{n}"),
        MarkImportInFlight(key),
        MarkImportCreated(key, n, None),
        MarkImporting(key, f"r{n}"),
        MarkImported(key, None),
        MarkImportFailed(key, "E", "m", f"r{n}"),
        RecordAttempt(key, "create", 200, None, f"r{n}", 1.5, "ok"),
        RecordAttempt(key, "start", 500, "Boom", None, None, "retryable", at=5.0 + n),
    ]
    return rng.choice(ops)


def snapshot(journal: Journal) -> tuple[object, object]:
    history = sorted(journal.attempts(), key=lambda a: a.key)  # stable: each task's in order
    return journal.rows(), history


@pytest.mark.parametrize("seed", range(20))
def test_a_batch_applied_grouped_ends_as_its_ops_applied_one_by_one(
    tmp_path: Path, seed: int
) -> None:
    """Whatever the mix (a task's ops back to back or spread, attempts before outcomes), one
    batch leaves every row and each task's history as applying its ops one at a time does."""
    rng = random.Random(seed)
    specs = [ExportSpec(k) for k in KEYS]
    late = ExportSpec(TaskKey("cn-shanghai", 8, "late"), import_into=ImportSpec(KEYS[0]))
    ops: list[Op] = [Register(late)]
    for _ in range(40):
        key = rng.choice([*KEYS, late.key])
        ops.append(random_op(rng, key))
        if rng.random() < 0.3:  # an attempt, then the same task's outcome
            ops.append(random_op(rng, key))
    with (
        Journal.open(tmp_path / "a.db", clock=clock) as grouped,
        Journal.open(tmp_path / "b.db", clock=clock) as single,
    ):
        for journal in (grouped, single):
            journal.register(specs)
        grouped.apply(ops)
        for op in ops:
            single.apply([op])
        assert snapshot(grouped) == snapshot(single)


def test_staged_ops_are_seen_only_once_committed_from_another_thread(tmp_path: Path) -> None:
    """stage() applies on the calling thread and holds the journal; the commit, from another
    thread, makes the batch visible and frees the journal."""
    path = tmp_path / "j.db"
    with Journal.open(path, clock=clock) as journal:
        journal.register([ExportSpec(k) for k in KEYS])
        staged = journal.stage([[MarkInFlight(KEYS[0], "fp")], [MarkInFlight(KEYS[1], "fp")]])
        assert staged.rejected == {}
        with Journal.open_readonly(path) as reader:
            assert reader.counts()[TaskState.IN_FLIGHT] == 0
        before = journal.transactions
        thread = threading.Thread(target=staged.commit)
        thread.start()
        thread.join()
        assert journal.transactions == before + 1
        with Journal.open_readonly(path) as reader:
            assert reader.counts()[TaskState.IN_FLIGHT] == 2
        journal.apply([MarkCreated(KEYS[0], 5, None)])  # usable again


def test_a_staged_group_that_cannot_be_stored_is_left_out_alone(tmp_path: Path) -> None:
    """A group holding an id beyond 64 bits is rejected, whole, naming its op; the groups
    around it are committed."""
    with Journal.open(tmp_path / "j.db", clock=clock) as journal:
        journal.register([ExportSpec(k) for k in KEYS])
        attempt = RecordAttempt(KEYS[1], "create", 200, None, None, 1.0, "ok")
        staged = journal.stage(
            [
                [MarkCreated(KEYS[0], 1, None)],
                [attempt, MarkCreated(KEYS[1], 2**64, None)],
                [MarkCreated(KEYS[2], 3, None)],
            ]
        )
        staged.commit()
        assert list(staged.rejected) == [1]
        assert "MarkCreated of" in str(staged.rejected[1])
        states = [row.state for row in journal.rows()[:3]]
        assert states == [TaskState.CREATED, TaskState.PENDING, TaskState.CREATED]
        assert journal.attempts() == []


class _FailingCommit:
    """A connection whose COMMIT fails as a full disk makes it fail; all else is the real one."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._real.execute(sql, *args)


def test_a_staged_batch_whose_commit_fails_is_rolled_back_as_a_journal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMMIT that fails reaches the committer as JournalError naming the journal, never as
    sqlite3's error; the batch is rolled back and the journal can be written again."""
    path = tmp_path / "j.db"
    with Journal.open(path, clock=clock) as journal:
        journal.register([ExportSpec(KEYS[0])])
        real = journal._conn
        monkeypatch.setattr(journal, "_conn", _FailingCommit(real))
        staged = journal.stage([[MarkInFlight(KEYS[0], "fp")]])
        with pytest.raises(JournalError, match=r"j\.db: write failed: database or disk is full"):
            staged.commit()
        monkeypatch.setattr(journal, "_conn", real)
        assert not real.in_transaction
        row = journal.get(KEYS[0])
        assert row is not None
        assert row.state is TaskState.PENDING
        journal.apply([MarkCreated(KEYS[0], 4, None)])  # the journal is free again


def test_staging_an_unknown_task_fails_the_batch_and_frees_the_journal(tmp_path: Path) -> None:
    """A task never registered fails the whole staged batch, nothing applied, and the journal
    can be written again at once."""
    stranger = TaskKey("cn-shanghai", 9, "nobody")
    with Journal.open(tmp_path / "j.db", clock=clock) as journal:
        journal.register([ExportSpec(KEYS[0])])
        with pytest.raises(JournalError, match="unknown task"):
            journal.stage([[MarkInFlight(KEYS[0], "fp")], [MarkStarted(stranger, None)]])
        journal.apply([MarkCreated(KEYS[0], 4, None)])
        row = journal.get(KEYS[0])
        assert row is not None
        assert (row.state, row.create_sent) == (TaskState.CREATED, False)


@pytest.mark.parametrize(("rows_at_most", "values_at_most"), [(256, 32766), (3, 32766), (256, 20)])
def test_rows_inserted_as_few_statements_are_every_row_once(
    rows_at_most: int, values_at_most: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Insert of many rows stores each row once, in order, also when the rows are cut into
    several statements by its own cap or by SQLite's limit on values per statement; its
    ON CONFLICT clause applies to each row."""
    import sqlite3

    from runner.journal_apply import Insert

    monkeypatch.setattr(Insert, "ROWS", rows_at_most)
    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, values_at_most)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
    upsert = Insert(
        "INSERT INTO t (k, v, n) VALUES", "(?, ?, 1)", " ON CONFLICT DO UPDATE SET n = n + 1"
    )
    upsert.run(conn, [(k, f"v{k}") for k in range(10)])
    upsert.run(conn, [(k, f"w{k}") for k in range(5, 12)])
    assert conn.execute("SELECT k, v, n FROM t ORDER BY k").fetchall() == [
        *((k, f"v{k}", 1) for k in range(5)),
        *((k, f"v{k}", 2) for k in range(5, 10)),
        *((k, f"w{k}", 1) for k in range(10, 12)),
    ]
