"""The test service (the simulator's model, in process, with scripted failures) and a fake
downloader."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import anyio.lowlevel

from runner.clock import FakeClock
from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials
from runner.dataworks.download import DownloadError, check_url, url_expires, url_place
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.upload import UploadGrant
from runner.models import (
    ApiError,
    Created,
    ErrorKind,
    ExportSpec,
    MigrationPage,
    Started,
    Summary,
)
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport, InProcessUploader
from runner.sim.packages import export_package
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState

# A script step decides the fate of one call: "ok", an ApiError to raise before anything is
# applied, "applied-then-lost" (applied, the answer lost: an unknown outcome), "applied-then-500",
# or for a start "refuse" (answered Data false, nothing started).
Step = str | ApiError

SECRET = "fake-access-key-secret"
PACKAGE_HOST = "https://oss.example.com"


class FakeService:
    """The simulator's own model of the service, in process, reached through the real client,
    plus the scripted failures the tests need; it records what it was asked.

    Time is the fake clock's, counted from the wall time when the fake was made, so exports end
    `export_duration` fake seconds after their start and DownloadUrls carry real epoch expiries.
    """

    def __init__(
        self,
        *,
        account: str = "AKID",
        scripts: dict[str, list[Step]] | None = None,
        existing: dict[tuple[int, str], int] | None = None,
        on_create: Callable[[ExportSpec], None] | None = None,
        unique_names: bool = True,
        clock: FakeClock | None = None,
        export_duration: float = 30.0,
        url_ttl: float = 3600.0,
        end_status: dict[str, str] | None = None,
        start_scripts: dict[str, list[Step]] | None = None,
        summary_scripts: dict[str, list[Step]] | None = None,
        apply_lag: float = 0.0,
        max_page_size: int | None = None,
        page_filter: Callable[[MigrationPage], MigrationPage] | None = None,
    ) -> None:
        self.account = account
        self.scripts = scripts or {}
        self.on_create = on_create
        self.clock = clock
        self.end_status = end_status or {}
        self.start_scripts = start_scripts or {}
        self.summary_scripts = summary_scripts or {}
        self.state = DataWorksState(
            duration=export_duration,
            download_ttl=url_ttl,
            unique_names=unique_names,
            apply_lag=apply_lag,
            max_page_size=max_page_size,
        )
        self.page_filter = page_filter  # what a misbehaving gateway does to a listing
        self.sim_stats = SimStats()
        service = Service(self.state, self.sim_stats, Faults(), random.Random(0))
        self.service = service
        self._wall0 = time.time()
        self._clock0 = clock.now if clock is not None else 0.0
        transport = InProcessTransport(service, now=self.now, base_url=PACKAGE_HOST)
        self._client = DataWorksClient(
            transport, Credentials(account, SECRET), Endpoints(), timeout=5.0
        )
        self.creates: list[str] = []
        self.lists = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[str] = []
        self.summaries: list[str] = []
        self.import_creates: list[str] = []  # CreateImportMigration calls, by import name
        self.grants = 0
        self.import_scripts: dict[str, list[Step]] = {}  # by import name
        self.import_end: dict[str, str] = {}  # an import's end status other than success, by name
        for (project_id, name), migration_id in (existing or {}).items():
            self.add_existing(project_id, name, migration_id)

    # -- the service's state, as tests set it up and read it ---------------------------------

    def now(self) -> float:
        """Epoch seconds on the service's clock."""
        if self.clock is None:
            return time.time()
        return self._wall0 + (self.clock.now - self._clock0)

    def add_existing(self, project_id: int, name: str, migration_id: int | None = None) -> int:
        """An export task made by someone else (with the given id, when one is given)."""
        if migration_id is not None:
            self.state.next_id = migration_id
        params = {"ProjectId": str(project_id), "Name": name, "ExportMode": "FULL"}
        return self.state.create_export_migration(params, self.now(), self.account)

    def start_elsewhere(self, migration_id: int) -> None:
        """Start a task as someone else would (not through this fake's client)."""
        record = self.state.migrations[migration_id]
        params = {"ProjectId": str(record.project_id), "MigrationId": str(migration_id)}
        self.state.start_migration(params, self.now())
        self._set_end(record.name, migration_id)

    @property
    def existing(self) -> dict[tuple[int, str], int]:
        """Export tasks by (project id, name) (the last made, when names are not unique)."""
        return {(p, n): i for (p, t, n), i in self.state.names.items() if t == "EXPORT"}

    @property
    def created(self) -> list[tuple[int, str, int]]:
        """Every export task the service holds, duplicates included, by id."""
        return [
            (r.project_id, r.name, r.migration_id)
            for r in self.state.migrations.values()
            if r.migration_type == "EXPORT"
        ]

    def _set_end(self, name: str, migration_id: int) -> None:
        record = self.state.migrations[migration_id]
        ends = self.end_status if record.migration_type == "EXPORT" else self.import_end
        status = ends.get(name)
        if status is not None and status not in ("EXPORT_SUCCESS", "IMPORT_SUCCESS"):
            record.end_status = status

    # -- the client protocol -----------------------------------------------------------------

    def limit_scope(self, region: str) -> str:
        return region

    async def create_export_migration(
        self,
        spec: ExportSpec,
        *,
        after: Awaitable[None] | None = None,
        fingerprint: str | None = None,
    ) -> Created:
        if after is not None:
            await after  # the intent's commit: only then is a create sent
        self.creates.append(spec.key.name)
        if self.on_create is not None:
            self.on_create(spec)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
            step = _next(self.scripts, spec.key.name)
            if isinstance(step, ApiError):
                raise step
            created = await self._client.create_export_migration(spec)
            _after_applied(step)
            return created
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
        page = await self._client.list_migrations(
            region,
            project_id,
            page_number=page_number,
            page_size=page_size,
            migration_type=migration_type,
        )
        return page if self.page_filter is None else self.page_filter(page)

    async def start_migration(self, region: str, project_id: int, migration_id: int) -> Started:
        name = self.state.migrations[migration_id].name
        self.starts.append(name)
        step = _next(self.start_scripts, name)
        if isinstance(step, ApiError):
            raise step
        if step == "refuse":
            return Started(False, f"start-{name}", "Invalid.Migration.Status", "cannot start")
        started = await self._client.start_migration(region, project_id, migration_id)
        if started.started:
            self._set_end(name, migration_id)
        _after_applied(step)
        return started

    async def authorize_file_upload(self, region: str) -> UploadGrant:
        self.grants += 1
        return await self._client.authorize_file_upload(region)

    async def create_import_migration(
        self, region: str, params: Mapping[str, str], package_file: str
    ) -> Created:
        name = params["Name"]
        self.import_creates.append(name)
        step = _next(self.import_scripts, name)
        if isinstance(step, ApiError):
            raise step
        created = await self._client.create_import_migration(region, params, package_file)
        _after_applied(step)
        return created

    def uploader(self) -> InProcessUploader:
        """An uploader posting into this service's object store."""
        return InProcessUploader(self.service, now=self.now)

    def downloader(self) -> FakeDownloader:
        """A downloader that saves the very package the service made for each export."""

        def package(url: str) -> bytes:
            migration_id = int(urlsplit(url).path.rsplit("/", 1)[-1].removesuffix(".zip"))
            return export_package(self.state.migrations[migration_id])

        return FakeDownloader(content_of=package)

    @property
    def imports(self) -> list[tuple[int, str, int, int | None]]:
        """Every import task the service holds: (project id, name, id, source export id)."""
        return [
            (r.project_id, r.name, r.migration_id, r.source_migration_id)
            for r in self.state.migrations.values()
            if r.migration_type == "IMPORT"
        ]

    def url(self, migration_id: int, expires: float) -> str:
        """A package URL as the service presigns it, working until `expires` (epoch seconds)."""
        return self.state.presign(migration_id, expires, PACKAGE_HOST)

    async def get_migration_summary(
        self, region: str, project_id: int, migration_id: int
    ) -> Summary:
        name = self.state.migrations[migration_id].name
        self.summaries.append(name)
        step = _next(self.summary_scripts, name)
        if isinstance(step, ApiError):
            raise step
        return await self._client.get_migration_summary(region, project_id, migration_id)


def _next(scripts: dict[str, list[Step]], name: str) -> Step:
    script = scripts.get(name)
    return script.pop(0) if script else "ok"


def _after_applied(step: Step) -> None:
    """What a step does once the call was applied: lose the answer, or answer 500."""
    if step == "applied-then-lost":
        raise ApiError(ErrorKind.UNKNOWN_OUTCOME, "ExchangeError", "timed out")
    if step == "applied-then-500":
        raise ApiError(ErrorKind.UNKNOWN_OUTCOME, "InternalError.System", "oops", http_status=500)


def error(
    kind: ErrorKind, code: str, status: int = 400, retry_after: float | None = None
) -> ApiError:
    return ApiError(kind, code, f"{code} happened", http_status=status, retry_after=retry_after)


class FakeDownloader:
    """A downloader for tests: answers from a function of the URL, writes atomically like the
    real one, and records every URL it was asked for."""

    def __init__(
        self,
        content: bytes = b"PK\x05\x06" + bytes(18),
        content_of: Callable[[str], bytes] | None = None,
    ) -> None:
        self.content = content
        self.content_of = content_of  # the body for a URL, when it depends on the URL
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
        content = self.content if self.content_of is None else self.content_of(url)
        part.write_bytes(content)
        os.replace(part, dest)
        return len(content)
