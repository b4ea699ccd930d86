"""The simulator's in-memory DataWorks state: migration tasks, their lifecycle and validation.

Pure: no I/O, no clock of its own. Every operation takes the raw request parameters (strings)
and the current time in epoch seconds, and returns the `Data` part of the success body or raises
`SimError` with the HTTP status, code and message the gateway would answer.

Design choices where the service is silent (see dataworks-api.md §4, §5.5):
- ids come from one counter shared by all projects, starting at 100001;
- names are unique per (project, migration type);
- StartMigration on a task that already ran answers `Data: false` with an ErrorMessage;
- an unknown MigrationId answers 400 `Invalid.Param`;
- ListMigrations sorts by id ascending;
- a task finishes `duration` seconds after it was started; its DownloadUrl is presigned each
  time it is read and stays valid for `download_ttl` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.sim.params import SimError as SimError
from runner.sim.params import invalid, parse_enum, parse_int, parse_text, project_not_found

FIRST_MIGRATION_ID = 100001
TENANT_ID = 524257424564736

EXPORT = "EXPORT"
IMPORT = "IMPORT"
EXPORT_MODES = ("FULL", "INCREMENTAL")
OBJECT_STATUSES = ("SAVED", "SUBMITTED", "DEPLOYED")
MIGRATION_TYPES = (IMPORT, EXPORT)
PACKAGE_TYPES = ("DWMA", "DATAWORKS_MODEL", "DATAWORKS_V2", "DATAWORKS_V3")
EXPORT_STEPS = ("EXPORT_PREPARE", "EXPORT_OBJECTS", "EXPORT_PACKAGE")
IMPORT_STEPS = ("IMPORT_PREPARE", "IMPORT_OBJECTS", "IMPORT_COMMIT")
FAILURE_MESSAGE = "An internal system error occurred. The export package could not be built."


@dataclass(slots=True)
class MigrationRecord:
    """One migration task as the simulator stores it; timestamps in epoch seconds."""

    migration_id: int
    project_id: int
    name: str
    migration_type: str
    package_type: str
    description: str
    created_at: float
    create_user: str
    export_mode: str | None = None
    export_object_status: str | None = None
    incremental_since: int | None = None
    started_at: float | None = None
    will_fail: bool = False
    updated_at: float = 0.0
    end_status: str | None = None  # a failed end other than the type's error (e.g. REVOKED)
    visible_at: float = 0.0  # before this, reads do not show it and its name is free (apply lag)

    def finished(self, now: float, duration: float) -> bool:
        return self.started_at is not None and now >= self.started_at + duration

    def summary_status(self, now: float, duration: float) -> str:
        """The GetMigrationSummary status at `now`."""
        running, ok, failed = (
            ("EXPORTING", "EXPORT_SUCCESS", "EXPORT_ERROR")
            if self.migration_type == EXPORT
            else ("IMPORTING", "IMPORT_SUCCESS", "IMPORT_ERROR")
        )
        if self.started_at is None:
            return "INIT"
        if not self.finished(now, duration):
            return running
        if self.end_status is not None:
            return self.end_status
        return failed if self.will_fail else ok

    def list_status(self, now: float, duration: float) -> str:
        """The ListMigrations status at `now` (a coarser enum than the summary's)."""
        if self.started_at is None:
            return "INIT"
        if not self.finished(now, duration):
            return "RUNNING"
        return "FAILURE" if self.will_fail or self.end_status is not None else "SUCCESS"

    def modified_at(self, now: float, duration: float) -> float:
        if self.started_at is not None and self.finished(now, duration):
            return self.started_at + duration
        return self.updated_at


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def user_of(access_key_id: str) -> str:
    """A stable, plausible account user id for an access key."""
    return str(100_000_000_000_000 + zlib.crc32(access_key_id.encode()))


@dataclass(slots=True)
class DataWorksState:
    """Every migration task the simulator knows, with the operations that read and change them."""

    duration: float = 5.0
    download_ttl: float = 3600.0
    missing_projects: frozenset[int] = frozenset()
    url_secret: bytes = b"sim-download-secret"
    unique_names: bool = True  # False: a second task with a taken name is made (and counted)
    apply_lag: float = 0.0  # seconds before an accepted create shows in reads and takes its name
    max_page_size: int | None = None  # ListMigrations serves at most this many a page
    duplicates: int = 0
    next_id: int = FIRST_MIGRATION_ID
    migrations: dict[int, MigrationRecord] = field(default_factory=dict)
    names: dict[tuple[int, str, str], int] = field(default_factory=dict)

    # -- lookups ---------------------------------------------------------------------------

    def project(self, params: Mapping[str, str]) -> int:
        project_id = parse_int(params, "ProjectId", low=2)
        if project_id in self.missing_projects:
            raise project_not_found()
        return project_id

    def _record(self, project_id: int, migration_id: int, now: float) -> MigrationRecord:
        record = self.migrations.get(migration_id)
        if record is None or record.project_id != project_id or now < record.visible_at:
            raise SimError(
                400,
                "Invalid.Param",
                f"The migration task {migration_id} does not exist in project {project_id}.",
            )
        return record

    # -- writes ----------------------------------------------------------------------------

    def create_export_migration(
        self, params: Mapping[str, str], now: float, access_key_id: str = ""
    ) -> int:
        project_id = self.project(params)
        name = parse_text(params, "Name")
        mode = parse_enum(params, "ExportMode", EXPORT_MODES)
        status = parse_enum(params, "ExportObjectStatus", OBJECT_STATUSES, required=False)
        since: int | None = None
        if mode == "INCREMENTAL":
            if not params.get("IncrementalSince"):
                raise invalid("IncrementalSince", "it is required when ExportMode is INCREMENTAL.")
            since = parse_int(params, "IncrementalSince", low=0)
        record = self._add(project_id, EXPORT, name, "DATAWORKS_MODEL", params, now, access_key_id)
        record.export_mode = mode
        record.export_object_status = status
        record.incremental_since = since
        return record.migration_id

    def create_import_migration(
        self, params: Mapping[str, str], now: float, access_key_id: str = ""
    ) -> int:
        project_id = self.project(params)
        name = parse_text(params, "Name")
        package_type = parse_enum(params, "PackageType", PACKAGE_TYPES) or ""
        parse_text(params, "PackageFile")
        record = self._add(project_id, IMPORT, name, package_type, params, now, access_key_id)
        return record.migration_id

    def _add(
        self,
        project_id: int,
        migration_type: str,
        name: str,
        package_type: str,
        params: Mapping[str, str],
        now: float,
        access_key_id: str,
    ) -> MigrationRecord:
        key = (project_id, migration_type, name)
        taken = self.names.get(key)
        if taken is not None and self.unique_names and now >= self.migrations[taken].visible_at:
            kind = "export" if migration_type == EXPORT else "import"
            raise SimError(
                400,
                "Invalid.Param",
                f"The {kind} task name '{name}' already exists in project {project_id}.",
            )
        if taken is not None:
            self.duplicates += 1
        record = MigrationRecord(
            migration_id=self.next_id,
            project_id=project_id,
            name=name,
            migration_type=migration_type,
            package_type=package_type,
            description=params.get("Description", ""),
            created_at=now,
            updated_at=now,
            create_user=user_of(access_key_id),
            visible_at=now + self.apply_lag,
        )
        self.next_id += 1
        self.migrations[record.migration_id] = record
        self.names[key] = record.migration_id
        return record

    def start_migration(
        self, params: Mapping[str, str], now: float, *, will_fail: bool = False
    ) -> tuple[bool, str]:
        """Start a task: (Data, ErrorMessage). A task that already ran is not started again."""
        project_id = self.project(params)
        migration_id = parse_int(params, "MigrationId", low=2)
        record = self._record(project_id, migration_id, now)
        if record.started_at is not None:
            status = record.summary_status(now, self.duration)
            return False, f"The migration task {migration_id} is already {status}."
        record.started_at = now
        record.updated_at = now
        record.will_fail = will_fail
        return True, ""

    # -- reads -----------------------------------------------------------------------------

    def get_migration_summary(
        self, params: Mapping[str, str], now: float, base_url: str
    ) -> dict[str, Any]:
        project_id = self.project(params)
        record = self._record(project_id, parse_int(params, "MigrationId", low=1), now)
        data: dict[str, Any] = {
            "MigrationId": record.migration_id,
            "Name": record.name,
            "GmtCreate": _ms(record.created_at),
            "GmtModified": _ms(record.modified_at(now, self.duration)),
            "CreateUser": record.create_user,
            "OpUser": record.create_user,
            "ProjectId": record.project_id,
            "Status": record.summary_status(now, self.duration),
        }
        url = self.download_url(record, now, base_url)
        if url:
            data["DownloadUrl"] = url
        return data

    def get_migration_process(self, params: Mapping[str, str], now: float) -> list[dict[str, str]]:
        project_id = self.project(params)
        record = self._record(project_id, parse_int(params, "MigrationId", low=1), now)
        steps = EXPORT_STEPS if record.migration_type == EXPORT else IMPORT_STEPS
        if record.started_at is None:
            statuses = ["INIT"] * len(steps)
        elif record.finished(now, self.duration):
            statuses = ["SUCCESS"] * len(steps)
            if record.will_fail:
                statuses[-1] = "FAILURE"
        else:
            elapsed = (now - record.started_at) / self.duration if self.duration > 0 else 1.0
            current = min(len(steps) - 1, int(elapsed * len(steps)))
            statuses = ["SUCCESS"] * current + ["RUNNING"] + ["INIT"] * (len(steps) - current - 1)
        return [
            {"TaskName": step, "TaskStatus": status}
            for step, status in zip(steps, statuses, strict=True)
        ]

    def list_migrations(
        self, params: Mapping[str, str], now: float, base_url: str
    ) -> dict[str, Any]:
        project_id = self.project(params)
        migration_type = parse_enum(params, "MigrationType", MIGRATION_TYPES)
        page_number = parse_int(params, "PageNumber", low=1, high=100, default=1)
        page_size = parse_int(params, "PageSize", low=10, high=100, default=10)
        if self.max_page_size is not None:
            page_size = min(page_size, self.max_page_size)  # served, and echoed, capped
        owner = params.get("Owner") or None
        matching = sorted(
            (
                r
                for r in self.migrations.values()
                if r.project_id == project_id
                and r.migration_type == migration_type
                and now >= r.visible_at
                and (owner is None or r.create_user == owner)
            ),
            key=lambda r: r.migration_id,
        )
        start = (page_number - 1) * page_size
        page = matching[start : start + page_size]
        return {
            "PageNumber": page_number,
            "PageSize": page_size,
            "TotalCount": len(matching),
            "Migrations": [self._list_item(r, now, base_url) for r in page],
        }

    def _list_item(self, record: MigrationRecord, now: float, base_url: str) -> dict[str, Any]:
        failed = record.will_fail and record.finished(now, self.duration)
        return {
            "Id": record.migration_id,
            "Name": record.name,
            "MigrationType": record.migration_type,
            "PackageType": record.package_type,
            "Status": record.list_status(now, self.duration),
            "Message": FAILURE_MESSAGE if failed else "",
            "DownloadUrl": self.download_url(record, now, base_url),
            "Description": record.description,
            "ProjectId": record.project_id,
            "TenantId": TENANT_ID,
            "CreateTime": _ms(record.created_at),
            "UpdateTime": _ms(record.modified_at(now, self.duration)),
            "CreateUser": record.create_user,
            "CreateUserName": record.create_user,
            "UpdateUser": record.create_user,
            "UpdateUserName": record.create_user,
        }

    # -- download URLs ---------------------------------------------------------------------

    def download_url(self, record: MigrationRecord, now: float, base_url: str) -> str:
        """A presigned package URL once an export succeeded, else the empty string."""
        if record.migration_type != EXPORT or record.summary_status(now, self.duration) != (
            "EXPORT_SUCCESS"
        ):
            return ""
        return self.presign(record.migration_id, now + self.download_ttl, base_url)

    def presign(self, migration_id: int, expires: float, base_url: str) -> str:
        """The package URL of a task, signed to work until `expires` (epoch seconds)."""
        until = int(expires)
        signature = self._url_signature(migration_id, until)
        path = f"{base_url.rstrip('/')}/download/{migration_id}.zip"
        return f"{path}?Expires={until}&Signature={signature}"

    def _url_signature(self, migration_id: int, expires: int) -> str:
        message = f"{migration_id}:{expires}".encode()
        return hmac.new(self.url_secret, message, hashlib.sha256).hexdigest()

    def check_download(
        self, migration_id: int, expires: str, signature: str, now: float
    ) -> MigrationRecord:
        """The record a presigned URL points at; SimError(403) if forged or expired."""
        try:
            expires_at = int(expires)
        except ValueError:
            raise SimError(403, "AccessDenied", "Invalid Expires.") from None
        good = self._url_signature(migration_id, expires_at)
        if not hmac.compare_digest(good, signature):
            raise SimError(403, "SignatureDoesNotMatch", "The download signature is not valid.")
        if now > expires_at:
            raise SimError(403, "AccessDenied", "Request has expired.")
        record = self.migrations.get(migration_id)
        if record is None or record.summary_status(now, self.duration) != "EXPORT_SUCCESS":
            raise SimError(404, "NoSuchKey", "The specified key does not exist.")
        return record
