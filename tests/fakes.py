"""A fake DataWorks client for scheduler tests: in-memory tasks and scripted failures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio.lowlevel

from runner.clock import FakeClock
from runner.dataworks.download import DownloadError, check_url, url_expires, url_place
from runner.models import (
    DUPLICATE_NAME_CODE,
    ApiError,
    Created,
    ErrorKind,
    ExportSpec,
    Migration,
    MigrationPage,
    Started,
    Summary,
)

# A script step decides the fate of one create call: "ok", an ApiError to raise before applying,
# or "applied-then-lost" (the create happens, the answer is lost: an unknown outcome).
Step = str | ApiError


@dataclass
class FakeService:
    """Keeps names unique per project, like the service; follows a script per task name."""

    account: str = "AKID"
    scripts: dict[str, list[Step]] = field(default_factory=dict)
    existing: dict[tuple[int, str], int] = field(default_factory=dict)
    on_create: Callable[[ExportSpec], None] | None = None
    creates: list[str] = field(default_factory=list)
    lists: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    next_id: int = 100_001
    unique_names: bool = True  # False: a service that does not refuse a second create
    created: list[tuple[int, str, int]] = field(default_factory=list)  # every task it made
    # the lifecycle: exports end `export_duration` after their start, on `clock`
    clock: FakeClock | None = None
    export_duration: float = 30.0
    url_ttl: float = 3600.0  # DownloadUrls expire this long after they are handed out
    wall: Callable[[], float] = time.time  # epoch seconds, for the URLs' Expires
    end_status: dict[str, str] = field(default_factory=dict)  # by name: the export's end status
    start_scripts: dict[str, list[Step]] = field(default_factory=dict)  # "ok", "refuse", errors
    summary_scripts: dict[str, list[Step]] = field(default_factory=dict)
    started_at: dict[int, float] = field(default_factory=dict)  # by migration id
    starts: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)

    def limit_scope(self, region: str) -> str:
        return region

    async def create_export_migration(self, spec: ExportSpec) -> Created:
        self.creates.append(spec.key.name)
        if self.on_create is not None:
            self.on_create(spec)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
            script = self.scripts.get(spec.key.name)
            step: Step = script.pop(0) if script else "ok"
            if isinstance(step, ApiError):
                raise step
            ident = (spec.key.project_id, spec.key.name)
            if ident in self.existing and self.unique_names:
                raise ApiError(
                    ErrorKind.PERMANENT, DUPLICATE_NAME_CODE, "already exists", http_status=400
                )
            self.existing[ident] = self.next_id
            self.created.append((spec.key.project_id, spec.key.name, self.next_id))
            self.next_id += 1
            if step == "applied-then-lost":
                raise ApiError(ErrorKind.UNKNOWN_OUTCOME, "ExchangeError", "timed out")
            if step == "applied-then-500":
                raise ApiError(
                    ErrorKind.UNKNOWN_OUTCOME, "InternalError.System", "oops", http_status=500
                )
            return Created(self.existing[ident], f"req-{spec.key.name}")
        finally:
            self.in_flight -= 1

    async def list_migrations(
        self,
        region: str,
        project_id: int,
        *,
        page_number: int = 1,
        page_size: int = 100,
        migration_type: str = "EXPORT",
    ) -> MigrationPage:
        self.lists += 1
        await anyio.lowlevel.checkpoint()
        mine = sorted((i, n) for (p, n), i in self.existing.items() if p == project_id)
        chunk = mine[(page_number - 1) * page_size : page_number * page_size]
        return MigrationPage(
            tuple(self._listed(i, n, project_id) for i, n in chunk),
            page_number,
            page_size,
            len(mine),
        )

    def _listed(self, migration_id: int, name: str, project_id: int) -> Migration:
        """How ListMigrations shows a task: INIT, RUNNING, then SUCCESS (with a URL) or FAILURE."""
        began = self.started_at.get(migration_id)
        status, url = "INIT", None
        if began is not None and self._now() < began + self.export_duration:
            status = "RUNNING"
        elif began is not None:
            ok = self.end_status.get(name, "EXPORT_SUCCESS") == "EXPORT_SUCCESS"
            status = "SUCCESS" if ok else "FAILURE"
            url = self.url(migration_id, self.wall() + self.url_ttl) if ok else None
        return Migration(migration_id, name, project_id, "EXPORT", status, url)

    def _name_of(self, migration_id: int) -> str:
        return next(n for (_, n), i in self.existing.items() if i == migration_id)

    def _now(self) -> float:
        return self.clock.now if self.clock is not None else 0.0

    async def start_migration(self, region: str, project_id: int, migration_id: int) -> Started:
        name = self._name_of(migration_id)
        self.starts.append(name)
        await anyio.lowlevel.checkpoint()
        script = self.start_scripts.get(name)
        step: Step = script.pop(0) if script else "ok"
        if isinstance(step, ApiError):
            raise step
        if step == "refuse":
            return Started(False, f"start-{name}", "Invalid.Migration.Status", "cannot start")
        if migration_id in self.started_at:
            return Started(False, f"start-{name}", "Invalid.Migration.Status", "already running")
        self.started_at[migration_id] = self._now()
        if step == "applied-then-lost":
            raise ApiError(ErrorKind.UNKNOWN_OUTCOME, "ExchangeError", "timed out")
        return Started(True, f"start-{name}")

    def url(self, migration_id: int, expires: float) -> str:
        return (
            f"https://oss.example.com/pkg/{migration_id}.zip?Expires={int(expires)}"
            "&OSSAccessKeyId=OSSKEYSECRETID&Signature=SIGSECRETVALUE"
        )

    async def get_migration_summary(
        self, region: str, project_id: int, migration_id: int
    ) -> Summary:
        name = self._name_of(migration_id)
        self.summaries.append(name)
        await anyio.lowlevel.checkpoint()
        script = self.summary_scripts.get(name)
        if script and isinstance(step := script.pop(0), ApiError):
            raise step
        began = self.started_at.get(migration_id)
        if began is None:
            return Summary("INIT", None, name, f"sum-{name}")
        if self._now() < began + self.export_duration:
            return Summary("EXPORTING", None, name, f"sum-{name}")
        status = self.end_status.get(name, "EXPORT_SUCCESS")
        url = self.url(migration_id, self.wall() + self.url_ttl)
        return Summary(status, url if status == "EXPORT_SUCCESS" else None, name, f"sum-{name}")


def error(
    kind: ErrorKind, code: str, status: int = 400, retry_after: float | None = None
) -> ApiError:
    return ApiError(kind, code, f"{code} happened", http_status=status, retry_after=retry_after)


class FakeDownloader:
    """A downloader for tests: answers from a function of the URL, writes atomically like the
    real one, and records every URL it was asked for."""

    def __init__(self, content: bytes = b"PK\x05\x06" + bytes(18)) -> None:
        self.content = content
        self.urls: list[str] = []
        self.fail_with: dict[str, list[DownloadError]] = {}  # by url_place: errors to raise first
        self.refuse_expired_before: float | None = None  # epoch s: URLs expiring earlier get 403
        self.break_after_part: bool = False  # fail as a transfer cut mid-way would

    async def fetch(self, url: str, dest: Path, timeout: float) -> int:
        self.urls.append(url)
        check_url(url)
        queued = self.fail_with.get(url_place(url))
        if queued:
            raise queued.pop(0)
        expires = url_expires(url)
        limit = self.refuse_expired_before
        if limit is not None and expires is not None and expires < limit:
            raise DownloadError(f"HTTP 403 from {url_place(url)}", status=403, retryable=False)
        if self.break_after_part:
            raise DownloadError(f"connection lost from {url_place(url)}", retryable=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(self.content)
        os.replace(part, dest)
        return len(self.content)
