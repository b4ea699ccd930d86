"""The journal's files: opened without following links, made private, refused when someone else
could change them."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from runner.files import make_private_dirs
from runner.journal import Journal, JournalError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_journal_folder_is_created_private(tmp_path: Path) -> None:
    """A missing .runner/ (and any missing parent) is made 0700."""
    path = tmp_path / "a" / ".runner" / "journal.db"
    with Journal.open(path):
        pass
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / ".runner") == 0o700
    assert mode(path) == 0o600


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    """A folder the user made is left as it is."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    make_private_dirs(folder / "inner")
    assert (mode(folder), mode(folder / "inner")) == (0o755, 0o700)


def test_a_journal_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    """A journal path that is a link is never followed: the file it points at is untouched."""
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    link = tmp_path / "j.db"
    link.symlink_to(target)
    with pytest.raises(JournalError, match="symbolic link"):
        Journal.open(link)
    with pytest.raises(JournalError, match="symbolic link"):
        Journal.open_readonly(link)
    assert target.read_bytes() == b"precious"


def test_a_lock_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    """The lock file, which is truncated and written, is never opened through a link."""
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    (tmp_path / "j.db.lock").symlink_to(target)
    with pytest.raises(JournalError, match="symbolic link"):
        Journal.open(tmp_path / "j.db")
    assert target.read_bytes() == b"precious"


def test_a_side_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    """SQLite opens -wal and -shm by name: a link planted there is refused too."""
    with Journal.open(tmp_path / "j.db"):
        pass
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    wal = tmp_path / "j.db-wal"
    if wal.exists():
        wal.unlink()
    wal.symlink_to(target)
    with pytest.raises(JournalError, match="symbolic link"):
        Journal.open(tmp_path / "j.db")
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize("bits", [0o020, 0o002], ids=["group", "others"])
def test_a_journal_others_can_write_is_refused(tmp_path: Path, bits: int) -> None:
    """A journal group or others may write is refused, for runs and for status alike."""
    path = tmp_path / "j.db"
    with Journal.open(path):
        pass
    path.chmod(0o600 | bits)
    for opener in (Journal.open, Journal.open_readonly):
        with pytest.raises(JournalError, match="written by group or others"):
            opener(path)


def test_a_journal_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal that belongs to another user is refused with a clear message."""
    path = tmp_path / "j.db"
    with Journal.open(path):
        pass
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(path).st_uid + 1)
    for opener in (Journal.open, Journal.open_readonly):
        with pytest.raises(JournalError, match="belongs to another user"):
            opener(path)


def test_a_run_on_a_foreign_journal_exits_2(tmp_path: Path) -> None:
    """Through the CLI, a group-writable journal stops the run with exit 2, nothing sent."""
    from click.testing import CliRunner

    from runner.cli import cli

    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\ndefaults:\n  region: cn-shanghai\n  name: t\n"
        "workspaces:\n  - project_id: 101\n"
    )
    path = tmp_path / "j.db"
    with Journal.open(path):
        pass
    path.chmod(0o666)
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    args = ["run", str(manifest), "--journal", str(path), "--endpoint", "http://127.0.0.1:1"]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 2
    assert "written by group or others" in result.stderr


def test_a_journal_that_cannot_be_written_is_named_with_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal on a read-only file system (or made immutable) is refused as such, exit 2 with
    nothing sent, not reported as a run stopped halfway."""
    from click.testing import CliRunner

    from runner.cli import cli

    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\ndefaults:\n  region: cn-shanghai\n  name: t\n"
        "workspaces:\n  - project_id: 101\n"
    )
    path = tmp_path / "j.db"
    real_open = os.open

    def read_only(name: object, flags: int, mode: int = 0o777) -> int:
        if str(name).startswith(str(path)) and flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(30, "Read-only file system")
        return real_open(name, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(JournalError, match=r"cannot write the journal lock .*Read-only file"):
        Journal.open(path)
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    args = ["run", str(manifest), "--journal", str(path), "--endpoint", "http://127.0.0.1:1"]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 2
    assert "Read-only file system" in result.stderr
    assert "rerun" not in result.stderr


class _NoSharedMemory:
    """A read-only connection as SQLite gives it in a folder it cannot write: it opens, and
    fails at the first read, when it must create the -shm file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, *args: object) -> sqlite3.Cursor:
        raise sqlite3.OperationalError("unable to open database file")

    def close(self) -> None:
        self._conn.close()


def test_a_journal_in_a_read_only_folder_can_still_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archived journal on read-only media is read (status, report, plan) when its
    write-ahead log is empty, and refused with the way out when the log holds changes."""
    from runner.journal import Register
    from runner.models import ExportSpec, TaskKey

    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        journal.apply([Register(ExportSpec(TaskKey("cn-shanghai", 101, "t")))])
    real_connect = sqlite3.connect

    def connect(database: str, **kwargs: Any) -> Any:
        conn = real_connect(database, **kwargs)
        return conn if "immutable=1" in database else _NoSharedMemory(conn)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(os, "access", lambda *_: False)
    with Journal.open_readonly(path) as journal:
        assert [str(row.key) for row in journal.rows()] == ["cn-shanghai/101/t"]
    path.with_name("j.db-wal").write_bytes(b"not yet checkpointed")
    with pytest.raises(JournalError, match=r"write-ahead log j\.db-wal holds changes"):
        Journal.open_readonly(path)
