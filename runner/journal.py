"""The journal: each task's current state and the history of attempts, in one SQLite file.

One process writes (an exclusive flock on `<journal>.lock` for the Journal's lifetime); any number
may read with `Journal.open_readonly`. Writes are small op values applied in one transaction per
batch. `JournalWriter` is the single writer for async code: it commits every op waiting at that
moment in one transaction (group commit) and wakes each caller only once its ops are on disk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from runner.files import (
    UnsafeFileError,
    check_not_linked,
    check_private,
    make_private_dirs,
)
from runner.journal_apply import (
    apply_batch,
    key_args,
    register_all,
)
from runner.journal_lock import (
    acquire_lock,
    check_side_files,
    connect_readonly,
    private,
    sqlite_errors,
)
from runner.journal_ops import (
    ATTEMPT_COLUMNS,
    BY_KEY,
    TASK_COLUMNS,
    AttemptRow,
    ImportRow,
    JournalBusyError,
    JournalDataError,
    JournalError,
    JournalMissingError,
    JournalVersionError,
    JournalWriteError,
    MarkCreated,
    MarkDownloaded,
    MarkError,
    MarkExists,
    MarkExported,
    MarkFailed,
    MarkImportCreated,
    MarkImported,
    MarkImportFailed,
    MarkImportInFlight,
    MarkImporting,
    MarkInFlight,
    MarkListedAbsent,
    MarkPending,
    MarkStarted,
    MarkUploaded,
    Op,
    RecordAttempt,
    Register,
    TaskRow,
    attempt_row,
    task_row,
)
from runner.journal_schema import MIGRATIONS
from runner.models import ExportSpec, TaskKey, TaskState

__all__ = [
    "AttemptRow",
    "ImportRow",
    "Journal",
    "JournalBusyError",
    "JournalDataError",
    "JournalError",
    "JournalMissingError",
    "JournalVersionError",
    "JournalWriteError",
    "MarkCreated",
    "MarkDownloaded",
    "MarkError",
    "MarkExists",
    "MarkExported",
    "MarkFailed",
    "MarkImportCreated",
    "MarkImportFailed",
    "MarkImportInFlight",
    "MarkImported",
    "MarkImporting",
    "MarkInFlight",
    "MarkListedAbsent",
    "MarkPending",
    "MarkStarted",
    "MarkUploaded",
    "Op",
    "RecordAttempt",
    "Register",
    "TaskRow",
]

BUSY_TIMEOUT_MS = 5000


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _configure_writer(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise JournalError(f"journal {path}: the filesystem refused WAL mode (got {mode})")
    # With WAL, synchronous=NORMAL survives a killed process but not power loss or an OS crash:
    # the WAL is fsynced only at checkpoints, so the latest commits can vanish. FULL fsyncs the
    # WAL at every commit, so an in_flight intent committed before its create was sent survives.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")


def _refuse_newer(path: Path, version: int) -> None:
    if version > len(MIGRATIONS):
        raise JournalVersionError(
            f"journal {path} has schema version {version}, newer than this runner knows"
            f" ({len(MIGRATIONS)}): use a newer runner, or another --journal"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to the latest version, every missing step in one transaction."""
    with _transaction(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        _refuse_newer(path, version)
        if version < len(MIGRATIONS):
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


class Journal:
    """One journal file: `Journal.open` for the single writer, `Journal.open_readonly` to look."""

    def __init__(
        self, path: Path, conn: sqlite3.Connection, lock_fd: int | None, clock: Callable[[], float]
    ) -> None:
        self.path = path
        self.readonly = lock_fd is None
        self.transactions = 0  # apply() transactions committed: shows group commit at work
        self._conn = conn
        self._lock_fd = lock_fd
        self._clock = clock
        # JournalWriter calls apply() from a worker thread: the connection is used by one at a time.
        self._mutex = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> Self:
        """Open for writing, creating and migrating as needed; refuses a journal in use, and one
        (or its lock) that is a symbolic link, another user's, or writable by group or others."""
        path = Path(path)
        try:
            make_private_dirs(path.parent)  # .runner/ is 0700 when made here
        except OSError as exc:
            raise JournalError(f"cannot make the folder {path.parent}: {exc.strerror}") from None
        lock_fd = acquire_lock(path)
        try:
            # owner-only: the journal holds presigned DownloadUrls (SQLite gives its -wal and
            # -shm files the same mode)
            fd = private(path, "journal")
            try:
                check_side_files(path)
                with sqlite_errors(path, "cannot open"):
                    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                if not os.path.samestat(os.fstat(fd), os.lstat(path)):
                    conn.close()
                    raise JournalError(f"journal {path} was replaced while it was being opened")
            finally:
                os.close(fd)
        except BaseException:
            os.close(lock_fd)
            raise
        journal = cls(path, conn, lock_fd, clock)
        with journal._close_on_error(), sqlite_errors(path, "cannot open"):
            _configure_writer(conn, path)
            _migrate(conn, path)
        return journal

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Self:
        """Open for queries only; takes no lock, so it works while a run is writing."""
        path = Path(path)
        if not path.is_symlink() and not path.is_file():
            raise JournalMissingError(f"no journal at {path}: nothing has been run with it yet")
        try:
            check_not_linked(path, what="journal")
            check_private(os.lstat(path), path, what="journal")
        except UnsafeFileError as exc:
            raise JournalError(exc.strerror) from None
        check_side_files(path)
        conn = connect_readonly(path)
        journal = cls(path, conn, None, time.time)
        with journal._close_on_error(), sqlite_errors(path, "cannot read"):
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            _refuse_newer(path, version)
            if version < len(MIGRATIONS):
                raise JournalVersionError(
                    f"journal {path} has schema version {version}, older than this runner's"
                    f" {len(MIGRATIONS)}: a `runner run` with it upgrades it"
                )
        return journal

    @contextmanager
    def _close_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection and release the lock; safe to call twice."""
        with self._mutex:
            self._conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the only fd on the lock file releases the flock
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._fetch("PRAGMA user_version")[0][0])

    def apply(self, ops: Sequence[Op]) -> None:
        """Apply every op in one transaction and commit; on any error none of them is applied."""
        if self.readonly:
            raise JournalError(f"journal {self.path} is open read-only")
        if not ops:
            return
        with self._mutex, sqlite_errors(self.path, "write failed"), _transaction(self._conn):
            rejected = apply_batch(self._conn, (ops,), self._clock(), self.path)
            if rejected:
                raise rejected[0]
        self.transactions += 1

    def stage(self, groups: Sequence[Sequence[Op]]) -> Staged:
        """Apply the groups' ops in one transaction on this thread and leave it open for
        `Staged.commit` (from any thread: the fsync is there); the journal is held until then.
        A group holding a value that cannot be stored is left out, whole (`Staged.rejected`);
        any other error rolls back and is raised."""
        if self.readonly:
            raise JournalError(f"journal {self.path} is open read-only")
        self._mutex.acquire()
        try:
            with sqlite_errors(self.path, "write failed"):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    return Staged(self, apply_batch(self._conn, groups, self._clock(), self.path))
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
        except BaseException:
            self._mutex.release()
            raise

    def _commit_staged(self) -> None:
        # no context manager on the way in: the commit thread reaches the COMMIT, where the
        # sqlite3 module lets go of the GIL, with as little Python as it can
        try:
            self._conn.execute("COMMIT")
            self.transactions += 1
        except BaseException:
            with sqlite_errors(self.path, "write failed"):  # sqlite3's errors as JournalError
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        finally:
            self._mutex.release()

    def register(self, specs: Iterable[ExportSpec], default_profile: str | None = None) -> None:
        """Register every task (as `Register` does) in one transaction, streamed, with the
        profile it is reached with (its own, else `default_profile`). A task no create was ever
        sent for takes the manifest's profile; one sent for keeps the profile that sent it."""
        if self.readonly:
            raise JournalError(f"journal {self.path} is open read-only")
        with self._mutex, sqlite_errors(self.path, "write failed"), _transaction(self._conn):
            register_all(self._conn, specs, self._clock(), default_profile)
        self.transactions += 1

    def iter_rows(self, *, chunk: int = 2000) -> Iterator[TaskRow]:
        """Every task row in key order (region, project id, name), read a chunk at a time."""
        sql = f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY region, project_id, name"
        with self._mutex, sqlite_errors(self.path, "read failed"):
            cursor = self._conn.execute(sql)
        while True:
            with self._mutex, sqlite_errors(self.path, "read failed"):
                found = cursor.fetchmany(chunk)
            if not found:
                return
            yield from (task_row(r) for r in found)

    def sent_workspaces(self) -> set[tuple[str, int]]:
        """The (region, project id) of every workspace this journal has sent a create to."""
        sql = "SELECT DISTINCT region, project_id FROM tasks WHERE create_sent = 1"
        return {(region, project_id) for region, project_id in self._fetch(sql)}

    def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._mutex, sqlite_errors(self.path, "read failed"):
            return self._conn.execute(sql, args).fetchall()

    def rows(
        self,
        *,
        states: Collection[str] = (),
        regions: Collection[str] = (),
        project_ids: Collection[int] = (),
    ) -> list[TaskRow]:
        """Every task row in key order; with filters, only those in one of `states`, `regions`
        and `project_ids` (each filter that is given)."""
        where: list[str] = []
        args: list[Any] = []
        for column, wanted in (("state", states), ("region", regions), ("project_id", project_ids)):
            if wanted:
                where.append(f"{column} IN ({', '.join('?' * len(wanted))})")
                args.extend(wanted)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {TASK_COLUMNS} FROM tasks{clause} ORDER BY region, project_id, name"
        return [task_row(r) for r in self._fetch(sql, tuple(args))]

    def row_map(self) -> dict[TaskKey, TaskRow]:
        return {row.key: row for row in self.rows()}

    def get(self, key: TaskKey) -> TaskRow | None:
        found = self._fetch(f"SELECT {TASK_COLUMNS} FROM tasks {BY_KEY}", key_args(key))
        return task_row(found[0]) if found else None

    def attempts(self, key: TaskKey | None = None) -> list[AttemptRow]:
        """The history in the order it was written, of one task or of all."""
        sql = f"SELECT {ATTEMPT_COLUMNS} FROM attempts"
        if key is None:
            found = self._fetch(f"{sql} ORDER BY id")
        else:
            found = self._fetch(f"{sql} {BY_KEY} ORDER BY id", key_args(key))
        return [attempt_row(r) for r in found]

    def exported_without_import(self) -> int:
        """Tasks exported that have no import target."""
        sql = "SELECT COUNT(*) FROM tasks WHERE state = 'exported' AND import_region IS NULL"
        return int(self._fetch(sql)[0][0])

    def counts(self) -> dict[TaskState, int]:
        """Tasks per state; every state is present, zero when none."""
        counts = dict.fromkeys(TaskState, 0)
        for state, n in self._fetch("SELECT state, COUNT(*) FROM tasks GROUP BY state"):
            counts[TaskState(state)] = int(n)
        return counts


@dataclass(frozen=True, slots=True, eq=False)
class Staged:
    """A batch applied by `Journal.stage`, its transaction still open: `commit` exactly once."""

    journal: Journal
    rejected: dict[int, JournalDataError]  # groups left out, by index

    def commit(self) -> None:
        """Commit (on error roll back) and let the journal be used again."""
        self.journal._commit_staged()
