"""The journal: each task's current state and the history of attempts, in one SQLite file.

One process writes (an exclusive flock on `<journal>.lock` for the Journal's lifetime); any number
may read with `Journal.open_readonly`. Writes are small op values applied in one transaction per
batch. `JournalWriter` is the single writer for async code: it commits every op waiting at that
moment in one transaction (group commit) and wakes each caller only once its ops are on disk.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias, assert_never

from runner.files import (
    UnsafeFileError,
    check_not_linked,
    check_private,
    make_private_dirs,
    open_private,
)
from runner.journal_schema import MIGRATIONS
from runner.models import ExportSpec, TaskKey, TaskState

BUSY_TIMEOUT_MS = 5000


class JournalError(Exception):
    """The journal cannot be used as asked."""


class JournalBusyError(JournalError):
    """Another runner holds the journal."""


class JournalMissingError(JournalError):
    """A read-only open found no journal file."""


class JournalVersionError(JournalError):
    """The journal's schema version is not one this code can use."""


class JournalWriteError(JournalError):
    """A batch of ops could not be committed; the cause is chained."""


class JournalDataError(JournalError):
    """An op holds a value SQLite cannot store (an integer beyond 64 bits, text that is not
    valid Unicode): that op's fault, not the journal's; nothing of its batch was applied."""


@dataclass(frozen=True, slots=True)
class TaskRow:
    key: TaskKey
    state: TaskState
    migration_id: int | None
    attempts: int
    error_code: str | None
    error_message: str | None
    request_id: str | None
    download_url: str | None
    fingerprint: str | None
    create_sent: bool
    updated_at: float
    package_path: str | None = None  # the downloaded export package, once saved
    profile: str | None = None  # the credentials profile its workspace is reached with


@dataclass(frozen=True, slots=True)
class AttemptRow:
    key: TaskKey
    at: float
    action: str
    http_status: int | None
    error_code: str | None
    request_id: str | None
    latency_ms: float | None
    outcome: str


# --- ops: small values; a batch of them is applied in one transaction -----------------------------


@dataclass(frozen=True, slots=True)
class Register:
    """Insert the task as pending unless it is already known (its stored fingerprint is kept)."""

    spec: ExportSpec


@dataclass(frozen=True, slots=True)
class MarkInFlight:
    """A create is about to be sent: to be committed before the request leaves."""

    key: TaskKey
    fingerprint: str


@dataclass(frozen=True, slots=True)
class MarkCreated:
    key: TaskKey
    migration_id: int
    request_id: str | None
    fingerprint: str | None = None  # replaces the stored one when given (an adopted task)


@dataclass(frozen=True, slots=True)
class MarkFailed:
    key: TaskKey
    error_code: str
    error_message: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class MarkPending:
    """Back to pending: error fields are cleared; create_sent is kept unless `unsent` (the only
    create sent was refused before anything was done)."""

    key: TaskKey
    unsent: bool = False


@dataclass(frozen=True, slots=True)
class MarkStarted:
    key: TaskKey
    request_id: str | None


@dataclass(frozen=True, slots=True)
class MarkExported:
    key: TaskKey
    download_url: str | None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class MarkDownloaded:
    """The task's export package is saved (complete, under its final name) at `path`."""

    key: TaskKey
    path: str


@dataclass(frozen=True, slots=True)
class RecordAttempt:
    """Append one request to the history and count it on the task; `at` defaults to commit time."""

    key: TaskKey
    action: str
    http_status: int | None
    error_code: str | None
    request_id: str | None
    latency_ms: float | None
    outcome: str
    at: float | None = None


@dataclass(frozen=True, slots=True)
class MarkExists:
    """The workspace already holds an export task of this name that this journal never made."""

    key: TaskKey
    migration_id: int
    message: str


Op: TypeAlias = (
    (Register | MarkInFlight | MarkCreated | MarkFailed | MarkPending | MarkStarted | MarkExported)
    | (MarkDownloaded | MarkExists)
    | RecordAttempt
)

_TASK_COLUMNS = (
    "region, project_id, name, state, migration_id, attempts, error_code, error_message,"
    " request_id, download_url, fingerprint, create_sent, updated_at, package_path, profile"
)
_ATTEMPT_COLUMNS = (
    "region, project_id, name, at, action, http_status, error_code, request_id, latency_ms, outcome"
)
_BY_KEY = "WHERE region = ? AND project_id = ? AND name = ?"
_CLEAR = ", error_code = NULL, error_message = NULL"


def _key_args(key: TaskKey) -> tuple[str, int, str]:
    return (key.region, key.project_id, key.name)


def _changes(op: Op) -> tuple[str, tuple[Any, ...]]:
    """The SET clause and its arguments for an op that changes an existing task row."""
    match op:
        case MarkInFlight():
            sets = "state = 'in_flight', create_sent = 1, fingerprint = ?, request_id = NULL"
            return sets + _CLEAR, (op.fingerprint,)
        case MarkCreated() if op.fingerprint is not None:
            sets = "state = 'created', migration_id = ?, request_id = ?, fingerprint = ?"
            return sets + _CLEAR, (op.migration_id, op.request_id, op.fingerprint)
        case MarkCreated():
            sets = "state = 'created', migration_id = ?, request_id = ?"
            return sets + _CLEAR, (op.migration_id, op.request_id)
        case MarkFailed():
            sets = "state = 'failed', error_code = ?, error_message = ?, request_id = ?"
            return sets, (op.error_code, op.error_message, op.request_id)
        case MarkExists():
            sets = "state = 'exists', migration_id = ?, error_code = 'NameExists',"
            return sets + " error_message = ?", (op.migration_id, op.message)
        case MarkPending():
            sent = ", create_sent = 0" if op.unsent else ""
            return "state = 'pending'" + sent + _CLEAR, ()
        case MarkStarted():
            return "state = 'started', request_id = ?" + _CLEAR, (op.request_id,)
        case MarkExported():
            sets = "state = 'exported', download_url = ?, request_id = ?"
            return sets + _CLEAR, (op.download_url, op.request_id)
        case MarkDownloaded():
            return "package_path = ?", (op.path,)
        case RecordAttempt():
            return "attempts = attempts + 1", ()
        case Register():
            raise TypeError("Register inserts; it changes no row")
        case _:
            assert_never(op)


def _op_key(op: Op) -> TaskKey:
    return op.spec.key if isinstance(op, Register) else op.key


def _apply_op(conn: sqlite3.Connection, op: Op, now: float) -> None:
    if isinstance(op, Register):
        conn.execute(
            "INSERT INTO tasks (region, project_id, name, state, fingerprint, created_at,"
            " updated_at, profile) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (*_key_args(op.spec.key), op.spec.fingerprint(), now, now, op.spec.profile),
        )
        return
    sets, args = _changes(op)
    sql = f"UPDATE tasks SET {sets}, updated_at = ? {_BY_KEY}"
    if conn.execute(sql, (*args, now, *_key_args(op.key))).rowcount == 0:
        raise JournalError(f"unknown task {op.key}: it was never registered in the journal")
    if isinstance(op, RecordAttempt):
        at = now if op.at is None else op.at
        head = (*_key_args(op.key), at, op.action, op.http_status, op.error_code, op.request_id)
        conn.execute(
            f"INSERT INTO attempts ({_ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*head, op.latency_ms, op.outcome),
        )


def _task_row(r: Sequence[Any]) -> TaskRow:
    key, state = TaskKey(r[0], r[1], r[2]), TaskState(r[3])
    return TaskRow(
        key, state, r[4], r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11]), r[12], r[13], r[14]
    )


def _attempt_row(r: Sequence[Any]) -> AttemptRow:
    return AttemptRow(TaskKey(r[0], r[1], r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9])


def _acquire_lock(path: Path) -> int:
    """Take the exclusive lock on `<path>.lock`, held until the returned fd is closed."""
    lock_path = path.with_name(path.name + ".lock")
    fd = _private(lock_path, "journal lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(os.pread(fd, 512, 0).decode(errors="replace"))
        os.close(fd)
        raise JournalBusyError(
            f"journal {path} is in use by {holder}; wait for that run to end, or stop it (it"
            " keeps what it did). Two runs on one journal could send the same create twice."
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {started}\n".encode(), 0)
    return fd


def _holder(text: str) -> str:
    """Who holds a lock, from what it wrote there: pid, host, start time, and the command line
    when the process is on this host."""
    parts = text.split()
    if not parts or not parts[0].isdigit():
        return "another runner"
    pid = parts[0]
    where = f" on {parts[1]}" if len(parts) > 1 else ""
    since = f" since {parts[2]}" if len(parts) > 2 else ""
    described = f"runner pid {pid}{where}{since}"
    if len(parts) < 2 or parts[1] == socket.gethostname():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return described
        command = " ".join(a.decode(errors="replace") for a in argv if a)[:300]
        described += f" ({command})" if command else ""
    return described


def _private(path: Path, what: str) -> int:
    """`path` opened for writing (created 0600), never through a link, only if it is ours."""
    try:
        return open_private(path, os.O_RDWR | os.O_CREAT, what=what)
    except UnsafeFileError as exc:
        raise JournalError(exc.strerror) from None


# The files SQLite opens by name next to the journal (WAL mode, and a rollback journal).
SIDE_FILES = ("-wal", "-shm", "-journal")


def _check_side_files(path: Path) -> None:
    try:
        for suffix in SIDE_FILES:
            check_not_linked(path.with_name(path.name + suffix), what="journal file")
    except UnsafeFileError as exc:
        raise JournalError(exc.strerror) from None


@contextmanager
def _sqlite_errors(path: Path, doing: str) -> Iterator[None]:
    """Callers see JournalError only, never sqlite3's exceptions."""
    try:
        yield
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: {doing}: {exc}") from exc


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
        lock_fd = _acquire_lock(path)
        try:
            # owner-only: the journal holds presigned DownloadUrls (SQLite gives its -wal and
            # -shm files the same mode)
            fd = _private(path, "journal")
            try:
                _check_side_files(path)
                with _sqlite_errors(path, "cannot open"):
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
        with journal._close_on_error(), _sqlite_errors(path, "cannot open"):
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
        _check_side_files(path)
        uri = path.resolve().as_uri() + "?mode=ro"
        with _sqlite_errors(path, "cannot open"):
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        journal = cls(path, conn, None, time.time)
        with journal._close_on_error(), _sqlite_errors(path, "cannot read"):
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
        with self._mutex, _sqlite_errors(self.path, "write failed"), _transaction(self._conn):
            now = self._clock()
            for op in ops:
                try:
                    _apply_op(self._conn, op, now)
                except (OverflowError, UnicodeEncodeError, sqlite3.InterfaceError) as exc:
                    raise JournalDataError(
                        f"journal {self.path}: {type(op).__name__} of {_op_key(op)} holds a value"
                        f" that cannot be stored ({type(exc).__name__})"
                    ) from exc
        self.transactions += 1

    def register(self, specs: Iterable[ExportSpec], default_profile: str | None = None) -> None:
        """Register every task (as `Register` does) in one transaction, streamed, with the
        profile it is reached with (its own, else `default_profile`). A task no create was ever
        sent for takes the manifest's profile; one sent for keeps the profile that sent it."""
        if self.readonly:
            raise JournalError(f"journal {self.path} is open read-only")
        sql = (
            "INSERT INTO tasks (region, project_id, name, state, fingerprint, created_at,"
            " updated_at, profile) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)"
            " ON CONFLICT DO UPDATE SET profile = excluded.profile"
            " WHERE create_sent = 0 AND profile IS NOT excluded.profile"
        )
        with self._mutex, _sqlite_errors(self.path, "write failed"), _transaction(self._conn):
            now = self._clock()
            rows = (
                (*_key_args(s.key), s.fingerprint(), now, now, s.profile or default_profile)
                for s in specs
            )
            self._conn.executemany(sql, rows)
        self.transactions += 1

    def iter_rows(self, *, chunk: int = 2000) -> Iterator[TaskRow]:
        """Every task row in key order (region, project id, name), read a chunk at a time."""
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY region, project_id, name"
        with self._mutex, _sqlite_errors(self.path, "read failed"):
            cursor = self._conn.execute(sql)
        while True:
            with self._mutex, _sqlite_errors(self.path, "read failed"):
                found = cursor.fetchmany(chunk)
            if not found:
                return
            yield from (_task_row(r) for r in found)

    def sent_workspaces(self) -> set[tuple[str, int]]:
        """The (region, project id) of every workspace this journal has sent a create to."""
        sql = "SELECT DISTINCT region, project_id FROM tasks WHERE create_sent = 1"
        return {(region, project_id) for region, project_id in self._fetch(sql)}

    def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._mutex, _sqlite_errors(self.path, "read failed"):
            return self._conn.execute(sql, args).fetchall()

    def rows(self) -> list[TaskRow]:
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY region, project_id, name"
        return [_task_row(r) for r in self._fetch(sql)]

    def row_map(self) -> dict[TaskKey, TaskRow]:
        return {row.key: row for row in self.rows()}

    def get(self, key: TaskKey) -> TaskRow | None:
        found = self._fetch(f"SELECT {_TASK_COLUMNS} FROM tasks {_BY_KEY}", _key_args(key))
        return _task_row(found[0]) if found else None

    def attempts(self, key: TaskKey | None = None) -> list[AttemptRow]:
        """The history in the order it was written, of one task or of all."""
        sql = f"SELECT {_ATTEMPT_COLUMNS} FROM attempts"
        if key is None:
            found = self._fetch(f"{sql} ORDER BY id")
        else:
            found = self._fetch(f"{sql} {_BY_KEY} ORDER BY id", _key_args(key))
        return [_attempt_row(r) for r in found]

    def counts(self) -> dict[TaskState, int]:
        """Tasks per state; every state is present, zero when none."""
        counts = dict.fromkeys(TaskState, 0)
        for state, n in self._fetch("SELECT state, COUNT(*) FROM tasks GROUP BY state"):
            counts[TaskState(state)] = int(n)
        return counts


# --- the single writer for async code ------------------------------------------------------------
