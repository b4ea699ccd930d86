"""Fetching export packages from their presigned DownloadUrls: the `Downloader` seam and what the
URLs may safely show. The aiohttp implementation lives with the transport (`AiohttpDownloader`).

A package is streamed to `<dest>.part` and renamed into place only once complete, so a file under
the final name is always whole. A DownloadUrl carries its signature (and the OSS key id) in the
query: only its host and path are ever logged or raised.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from runner.dataworks.endpoints import is_loopback_host

CHUNK = 256 * 1024
DEFAULT_MAX_PACKAGE = 4 * 1024**3  # bytes: --max-package-size
FREE_SPACE_RESERVE = 64 * 1024**2  # bytes left free on the disk after a package is saved
EXPIRY_MARGIN = 60.0  # seconds: a URL this close to its Expires is treated as expired
MAX_NAME = 120  # characters of a task name kept in its file name


class TransferError(Exception):
    """A package could not be moved to or from storage. `status` is the HTTP status when there
    was an answer; `retryable` says whether the same request may work if tried again; `refused`
    says the storage refused its signature (expired or bad): a fresh URL or grant is needed."""

    NO_ANSWER = "TransferError"  # the code when there was no HTTP answer

    def __init__(self, message: str, *, status: int | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable

    @property
    def refused(self) -> bool:
        return self.status == 403

    @property
    def code(self) -> str:
        return f"HTTP{self.status}" if self.status is not None else self.NO_ANSWER


class DownloadError(TransferError):
    """A package could not be fetched."""

    NO_ANSWER = "DownloadError"


class Downloader(Protocol):
    async def fetch(self, url: str, dest: Path, timeout: float) -> int:
        """Save the body of `url` as `dest` (atomically); return the bytes written."""
        ...


def url_place(url: str) -> str:
    """host/path of a URL: what a log may say about a presigned URL (never its query)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or ''}{parts.path}"
    except ValueError:  # not even a URL (an unclosed IPv6 bracket, …)
        return "(malformed URL)"


def url_host(url: str) -> str:
    """host[:port] of a URL, without any user info: what an error may say about where it went."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(malformed URL)"
    return f"{host}:{port}" if port is not None else host


def url_expires(url: str) -> float | None:
    """The epoch second a presigned URL stops working (its `Expires`), or None if it has none
    (or is not a URL at all: the download then fails on it, not this)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    for name, value in parse_qsl(query):
        if name == "Expires":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def is_expired(url: str, now: float, margin: float = EXPIRY_MARGIN) -> bool:
    """True when the URL will have expired before a download could reasonably start."""
    expires = url_expires(url)
    return expires is not None and expires - margin <= now


def is_local_host(host: str) -> bool:
    """Whether `host` names this machine in any spelling: localhost (any case, trailing dot,
    any subdomain), a loopback or unspecified address, IPv4-mapped too, or an IPv4 address in
    a legacy form the resolver accepts (127.1, 0x7f.1, 2130706433)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except (OSError, ValueError):
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def check_url(url: str, *, allow_loopback: bool = False) -> None:
    """A package URL the downloader may fetch: https, to a host that is not this machine. With
    `allow_loopback` (the API endpoint is loopback itself: the simulator), a loopback host is
    fine too, over plain http as well. Malformed URLs (a port out of range, user info, an
    unclosed bracket) are refused. Raises DownloadError (not retryable)."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise DownloadError(f"malformed package URL ({exc})", retryable=False) from None
    if parts.scheme not in ("http", "https") or not host:
        raise DownloadError(f"not an http(s) URL: {url_place(url)!r}", retryable=False)
    if parts.username is not None or parts.password is not None:
        raise DownloadError(f"package URL with user info: {host}", retryable=False)
    local = is_local_host(host)
    if local and not allow_loopback:
        raise DownloadError(
            f"refusing a package URL on this machine ({host}): the API endpoint is not loopback",
            retryable=False,
        )
    if parts.scheme == "http" and not (allow_loopback and is_loopback_host(host)):
        raise DownloadError(f"refusing plain http for a package: {host}", retryable=False)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A file name made from a task name: portable characters only, no leading dot, bounded.

    When anything had to change, a short hash of the original name is appended, so two names
    that differ only in unsafe characters never share a file.
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(".")[:MAX_NAME]
    if cleaned == name and cleaned:
        return cleaned
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{cleaned or 'task'}-{digest}"


def package_path(root: Path, region: str, project_id: int, name: str, migration_id: int) -> Path:
    """Where a task's package is saved: ROOT/<region>/<project_id>/<safe name>-<migration id>.zip.

    The migration id ties the file to the task that made it: a package left by an earlier task
    of the same name is never taken for this one's, and names that differ only in case (one
    file on some file systems) still get files of their own."""
    folder = root / safe_name(region) / str(project_id)
    return folder / f"{safe_name(name)}-{migration_id}.zip"
