"""The journal's lock and its files: one runner per journal (an flock on `<journal>.lock` that
names its holder), files never opened through a link or when another user could write them, and
the read-only connection (a journal on read-only media too)."""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from runner.files import UnsafeFileError, check_not_linked, open_private
from runner.journal_ops import JournalBusyError, JournalError


def acquire_lock(path: Path) -> int:
    """Take the exclusive lock on `<path>.lock`, held until the returned fd is closed."""
    lock_path = path.with_name(path.name + ".lock")
    fd = private(lock_path, "journal lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = holder_of(os.pread(fd, 512, 0).decode(errors="replace"))
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


def holder_of(text: str) -> str:
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


def private(path: Path, what: str) -> int:
    """`path` opened for writing (created 0600), never through a link, only if it is ours."""
    try:
        return open_private(path, os.O_RDWR | os.O_CREAT, what=what)
    except UnsafeFileError as exc:
        raise JournalError(exc.strerror) from None
    except OSError as exc:  # a read-only file system, a file made immutable, no permission
        raise JournalError(f"cannot write the {what} {path}: {exc.strerror}") from None


# The files SQLite opens by name next to the journal (WAL mode, and a rollback journal).
SIDE_FILES = ("-wal", "-shm", "-journal")


def check_side_files(path: Path) -> None:
    try:
        for suffix in SIDE_FILES:
            check_not_linked(path.with_name(path.name + suffix), what="journal file")
    except UnsafeFileError as exc:
        raise JournalError(exc.strerror) from None


@contextmanager
def sqlite_errors(path: Path, doing: str) -> Iterator[None]:
    """Callers see JournalError only, never sqlite3's exceptions."""
    try:
        yield
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: {doing}: {exc}") from exc


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. A journal in a folder this user cannot write (an archive, a
    read-only mount) cannot be read through the write-ahead log's shared memory, which SQLite
    must create beside it: it is then read as an immutable file, which is right only when its
    write-ahead log holds nothing (a run that ended closed it so); else it is refused."""
    uri = path.resolve().as_uri()
    with sqlite_errors(path, "cannot open"):
        conn = sqlite3.connect(
            uri + "?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
    try:
        conn.execute("PRAGMA user_version").fetchone()  # the shared memory is made here
        return conn
    except sqlite3.Error as exc:
        conn.close()
        if not isinstance(exc, sqlite3.OperationalError) or os.access(path.parent, os.W_OK):
            raise JournalError(f"journal {path}: cannot read: {exc}") from exc
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise JournalError(
            f"journal {path}: its folder is read-only and its write-ahead log {wal.name} holds"
            " changes not yet in the journal: copy both files to a folder you can write"
        )
    with sqlite_errors(path, "cannot open"):
        return sqlite3.connect(
            uri + "?mode=ro&immutable=1", uri=True, check_same_thread=False, isolation_level=None
        )
