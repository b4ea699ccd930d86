"""Files and folders the runner makes or opens for its own use: private, never through a link.

The journal holds presigned URLs, the packages hold a workspace's code: the folders made for them
are 0700, and a journal (or its lock) that is a symbolic link, belongs to another user, or that
group or others may write, is refused: whoever could change it could steer what a run does.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700


class UnsafeFileError(OSError):
    """A file the runner would use is a link, someone else's, or writable by others."""


def make_private_dirs(path: Path) -> None:
    """Create `path` and every missing parent, each with mode 0700 (existing ones are left as
    they are). Raises OSError when a component exists and is not a folder."""
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))


def open_private(path: Path, flags: int, *, what: str) -> int:
    """Open (or create, mode 0600) `path` without following a symbolic link, and check the
    result: a regular file owned by this user that neither group nor others can write."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(
                errno.ELOOP, f"{what} {path} is a symbolic link: refusing to follow it"
            ) from None
        raise
    try:
        check_private(os.fstat(fd), path, what=what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_private(info: os.stat_result, path: Path, *, what: str) -> None:
    """Refuse a file that is not regular, is another user's, or that others may write."""
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(errno.EINVAL, f"{what} {path} is not a regular file")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise UnsafeFileError(
            errno.EPERM,
            f"{what} {path} belongs to another user (uid {info.st_uid}, you are {uid}):"
            " refusing to use it",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFileError(
            errno.EPERM,
            f"{what} {path} can be written by group or others (mode"
            f" {stat.S_IMODE(info.st_mode):04o}): refusing to use it; chmod 600 it if it is yours",
        )


def check_not_linked(path: Path, *, what: str) -> None:
    """Refuse `path` when it exists as a symbolic link (SQLite opens its side files by name)."""
    if path.is_symlink():
        raise UnsafeFileError(
            errno.ELOOP, f"{what} {path} is a symbolic link: refusing to follow it"
        )
