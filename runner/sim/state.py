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
- a task finishes `duration` seconds after it was started (an import `import_duration`); an
  export's DownloadUrl is presigned each time it is read and stays valid for `download_ttl` s;
- CreateImportMigration takes only a PackageFile naming an object uploaded to this simulator's
  OSS (`objects`) whose manifest names one of its exports that ended EXPORT_SUCCESS.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.sim.objects import ObjectStore, StoredObject
from runner.sim.params import SimError as SimError
from runner.sim.params import (
    check_json_object,
    invalid,
    parse_enum,
    parse_int,
    parse_text,
    project_not_found,
)
from runner.sim.records import (
    EXPORT,
    EXPORT_MODES,
    EXPORT_STEPS,
    EXPORT_SUCCESS,
    IMPORT,
    IMPORT_ERROR,
    IMPORT_STEPS,
    MIGRATION_TYPES,
    OBJECT_STATUSES,
    PACKAGE_TYPES,
    MigrationRecord,
)

FIRST_MIGRATION_ID = 100001
TENANT_ID = 524257424564736


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
    import_duration: float | None = None  # seconds an import runs; None: `duration`
    objects: ObjectStore = field(default_factory=ObjectStore)  # the uploads (runner.sim.objects)
    duplicates: int = 0  # tasks made under a taken name, exports and imports
    duplicate_imports: int = 0
    next_id: int = FIRST_MIGRATION_ID
    migrations: dict[int, MigrationRecord] = field(default_factory=dict)
    names: dict[tuple[int, str, str], int] = field(default_factory=dict)
    # each workspace's tasks of a type, in id order: a listing reads its own, not every task
    listed: dict[tuple[int, str], list[MigrationRecord]] = field(default_factory=dict)

    # -- lookups ---------------------------------------------------------------------------

    def project(self, params: Mapping[str, str]) -> int:
        project_id = parse_int(params, "ProjectId", low=2)
        if project_id in self.missing_projects:
            raise project_not_found()
        return project_id

    def lasting(self, record: MigrationRecord) -> float:
        """How long a task runs once started."""
        if record.migration_type == IMPORT and self.import_duration is not None:
            return self.import_duration
        return self.duration

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
        package_file = parse_text(params, "PackageFile")
        for json_param in ("CommitRule", "CalculateEngineMap", "ResourceGroupMap", "WorkspaceMap"):
            check_json_object(params, json_param)
        stored = self.objects.resolve(package_file)
        source = self._source_of(stored, package_file, now)
        record = self._add(project_id, IMPORT, name, package_type, params, now, access_key_id)
        record.source_migration_id = source
        record.package_sha256 = stored.sha256
        return record.migration_id

    def _source_of(self, stored: StoredObject, package_file: str, now: float) -> int:
        """The export an uploaded package was made by: one of ours that ended EXPORT_SUCCESS."""
        manifest = stored.manifest
        record = None if manifest is None else self.migrations.get(manifest.migration_id)
        if (
            manifest is None
            or record is None
            or record.migration_type != EXPORT
            or (record.project_id, record.name) != (manifest.project_id, manifest.name)
            or record.summary_status(now, self.lasting(record)) != EXPORT_SUCCESS
        ):
            raise SimError(
                400,
                "Invalid.Param",
                f"The PackageFile '{package_file}' is not a package of a successful export.",
            )
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
            self.duplicate_imports += migration_type == IMPORT
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
        self.listed.setdefault((project_id, migration_type), []).append(record)  # ids ascend
        return record

    def start_migration(
        self,
        params: Mapping[str, str],
        now: float,
        *,
        will_fail: bool = False,
        import_end: Callable[[], str | None] | None = None,
    ) -> tuple[bool, str]:
        """Start a task: (Data, ErrorMessage). A task that already ran is not started again.
        An export fails when `will_fail`; an import ends as `import_end()` says when it is
        started: None (IMPORT_SUCCESS), IMPORT_ERROR or PARTIAL_SUCCESS."""
        project_id = self.project(params)
        migration_id = parse_int(params, "MigrationId", low=2)
        record = self._record(project_id, migration_id, now)
        if record.started_at is not None:
            status = record.summary_status(now, self.lasting(record))
            return False, f"The migration task {migration_id} is already {status}."
        record.started_at = now
        record.updated_at = now
        if record.migration_type == EXPORT:
            record.will_fail = will_fail
        else:
            end = import_end() if import_end is not None else None
            record.will_fail = end == IMPORT_ERROR
            record.end_status = None if end in (None, IMPORT_ERROR) else end
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
            "GmtModified": _ms(record.modified_at(now, self.lasting(record))),
            "CreateUser": record.create_user,
            "OpUser": record.create_user,
            "ProjectId": record.project_id,
            "Status": record.summary_status(now, self.lasting(record)),
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
        elif record.finished(now, lasting := self.lasting(record)):
            statuses = ["SUCCESS"] * len(steps)
            if record.will_fail or (record.migration_type == IMPORT and record.failed_end):
                statuses[-1] = "FAILURE"
        else:
            elapsed = (now - record.started_at) / lasting if lasting > 0 else 1.0
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
        migration_type = parse_enum(params, "MigrationType", MIGRATION_TYPES) or ""
        page_number = parse_int(params, "PageNumber", low=1, high=100, default=1)
        page_size = parse_int(params, "PageSize", low=10, high=100, default=10)
        if self.max_page_size is not None:
            page_size = min(page_size, self.max_page_size)  # served, and echoed, capped
        owner = params.get("Owner") or None
        matching = [
            r
            for r in self.listed.get((project_id, migration_type), ())
            if now >= r.visible_at and (owner is None or r.create_user == owner)
        ]
        start = (page_number - 1) * page_size
        page = matching[start : start + page_size]
        return {
            "PageNumber": page_number,
            "PageSize": page_size,
            "TotalCount": len(matching),
            "Migrations": [self._list_item(r, now, base_url) for r in page],
        }

    def _list_item(self, record: MigrationRecord, now: float, base_url: str) -> dict[str, Any]:
        return {
            "Id": record.migration_id,
            "Name": record.name,
            "MigrationType": record.migration_type,
            "PackageType": record.package_type,
            "Status": record.list_status(now, self.lasting(record)),
            "Message": record.message(now, self.lasting(record)),
            "DownloadUrl": self.download_url(record, now, base_url),
            "Description": record.description,
            "ProjectId": record.project_id,
            "TenantId": TENANT_ID,
            "CreateTime": _ms(record.created_at),
            "UpdateTime": _ms(record.modified_at(now, self.lasting(record))),
            "CreateUser": record.create_user,
            "CreateUserName": record.create_user,
            "UpdateUser": record.create_user,
            "UpdateUserName": record.create_user,
        }

    # -- download URLs ---------------------------------------------------------------------

    def download_url(self, record: MigrationRecord, now: float, base_url: str) -> str:
        """A presigned package URL once an export succeeded, else the empty string."""
        if record.migration_type != EXPORT:
            return ""
        if record.summary_status(now, self.lasting(record)) != EXPORT_SUCCESS:
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
        if record is None or record.summary_status(now, self.lasting(record)) != EXPORT_SUCCESS:
            raise SimError(404, "NoSuchKey", "The specified key does not exist.")
        return record
