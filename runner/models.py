"""Values shared by every layer: specs, keys, actions, outcomes and classified errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ExportMode(enum.StrEnum):
    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"


class ObjectStatus(enum.StrEnum):
    SAVED = "SAVED"
    SUBMITTED = "SUBMITTED"
    DEPLOYED = "DEPLOYED"


class TaskState(enum.StrEnum):
    """Where a task stands in the journal."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    CREATED = "created"
    STARTED = "started"
    EXPORTED = "exported"
    FAILED = "failed"
    EXISTS = "exists"  # the name was taken in the workspace by a task this journal never made
    # the import leg (runner run --import): the package uploaded, the import task created in the
    # target workspace, started, and how it ended
    UPLOADED = "uploaded"
    IMPORT_CREATED = "import_created"
    IMPORTING = "importing"
    IMPORTED = "imported"
    IMPORT_FAILED = "import_failed"


DONE_STATES = frozenset(
    {
        TaskState.CREATED,
        TaskState.STARTED,
        TaskState.EXPORTED,
        TaskState.UPLOADED,
        TaskState.IMPORT_CREATED,
        TaskState.IMPORTING,
        TaskState.IMPORTED,
    }
)
# States of a task whose export is done and whose import leg has begun (or ended).
IMPORT_STATES = frozenset(
    {
        TaskState.UPLOADED,
        TaskState.IMPORT_CREATED,
        TaskState.IMPORTING,
        TaskState.IMPORTED,
        TaskState.IMPORT_FAILED,
    }
)

# The fingerprint of a task adopted with --adopt-existing: made by someone else, with parameters
# this runner never saw, so it can be neither matched against the manifest nor called drifted.
ADOPTED_FINGERPRINT = "adopted"
# workers (and connections) of a run at most, from --concurrency or settings.concurrency: far
# above what any account's rate limit keeps busy, and each costs memory
MAX_CONCURRENCY = 1024


class Access(enum.StrEnum):
    """Which rate-limit bucket a request is paced by."""

    READ = "read"
    WRITE = "write"


class ErrorKind(enum.StrEnum):
    """What a failure means for the run: the kind decides what happens next."""

    RETRYABLE = "retryable"
    UNKNOWN_OUTCOME = "unknown_outcome"
    PERMANENT = "permanent"
    FATAL = "fatal"


class ActionKind(enum.StrEnum):
    CREATE = "create"
    RECONCILE = "reconcile"
    RETRY = "retry"
    SKIP = "skip"
    DRIFTED = "drifted"


@dataclass(frozen=True, slots=True, order=True)
class TaskKey:
    """A task's identity: the name is unique per workspace, workspaces live in a region."""

    region: str
    project_id: int
    name: str

    def __str__(self) -> str:
        return f"{self.region}/{self.project_id}/{self.name}"


class PackageType(enum.StrEnum):
    """CreateImportMigration's PackageType (dataworks-api.md §3.2)."""

    DATAWORKS_MODEL = "DATAWORKS_MODEL"
    DATAWORKS_V2 = "DATAWORKS_V2"
    DATAWORKS_V3 = "DATAWORKS_V3"


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """Where and how an export's package is imported (the manifest's `import_into`).

    `key` is the import task in the target workspace: its region, project id and name. The maps
    and the commit rule are kept as the JSON text that is sent (compact, keys sorted), already
    validated by the manifest loader.
    """

    key: TaskKey
    package_type: PackageType = PackageType.DATAWORKS_MODEL
    commit_rule: str | None = None  # JSON object of booleans
    calculate_engine_map: str | None = None  # JSON: {"ODPS": {"src": "dst"}, ...}
    resource_group_map: str | None = None  # JSON: {"SCHEDULER_RESOURCE_GROUP": {...}, ...}
    workspace_map: str | None = None  # JSON: {"src-prefix": "dst-prefix"}
    description: str | None = None
    profile: str | None = None  # credentials profile of the target; None: the run's default

    def params(self) -> dict[str, str]:
        """The CreateImportMigration body parameters, all but PackageFile."""
        params = {
            "ProjectId": str(self.key.project_id),
            "Name": self.key.name,
            "PackageType": self.package_type.value,
        }
        optional = (
            ("CommitRule", self.commit_rule),
            ("CalculateEngineMap", self.calculate_engine_map),
            ("ResourceGroupMap", self.resource_group_map),
            ("WorkspaceMap", self.workspace_map),
            ("Description", self.description),
        )
        params.update((name, value) for name, value in optional if value is not None)
        return params

    def fingerprint(self) -> str:
        """A stable text of what would be sent, PackageFile aside."""
        return "&".join(f"{k}={v}" for k, v in sorted(self.params().items()))


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """One export task as the manifest describes it."""

    key: TaskKey
    export_mode: ExportMode = ExportMode.FULL
    export_object_status: ObjectStatus | None = None
    description: str | None = None
    incremental_since: int | None = None  # epoch milliseconds
    label: str | None = None
    source: str = ""  # "FILE:LINE" where the task was defined
    profile: str | None = None  # credentials profile of its workspace; None: the run's default
    import_into: ImportSpec | None = None  # where its package is imported (run --import)

    def request_params(self) -> dict[str, str]:
        """The CreateExportMigration body parameters this spec asks for."""
        # a StrEnum member formats as its value (str() here): quicker than enum's .value
        params = {
            "ProjectId": str(self.key.project_id),
            "Name": self.key.name,
            "ExportMode": str(self.export_mode),
        }
        if self.export_object_status is not None:
            params["ExportObjectStatus"] = str(self.export_object_status)
        if self.description is not None:
            params["Description"] = self.description
        if self.incremental_since is not None and self.export_mode is ExportMode.INCREMENTAL:
            params["IncrementalSince"] = str(self.incremental_since)
        return params

    def fingerprint(self) -> str:
        """A stable text of what would be sent, so a rerun can tell when the manifest drifted:
        request_params() as `name=value` joined by '&' in sorted name order, written out in
        that order (made twice per create: when registered and in its intent)."""
        key, status = self.key, self.export_object_status
        text = f"ExportMode={self.export_mode}"  # a StrEnum member formats as its value
        if self.description is not None:
            text = f"Description={self.description}&{text}"
        if status is not None:
            text = f"{text}&ExportObjectStatus={status}"
        if self.incremental_since is not None and self.export_mode is ExportMode.INCREMENTAL:
            text = f"{text}&IncrementalSince={self.incremental_since}"
        return f"{text}&Name={key.name}&ProjectId={key.project_id}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Run settings a manifest may carry; CLI flags override them."""

    rate: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    specs: tuple[ExportSpec, ...]
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    spec: ExportSpec
    reason: str = ""
    create_sent: bool = False  # the journal shows a create was sent for the task before
    since: float | None = None  # RECONCILE: when the journal last heard of the create (epoch s)
    taken: bool = False  # the name was found taken by another's task: look it up before any create
    listed: bool = False  # a listing of this journal's showed the name absent: no listing first


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration task as ListMigrations reports it."""

    migration_id: int
    name: str
    project_id: int
    migration_type: str
    status: str
    download_url: str | None = None
    message: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class MigrationPage:
    migrations: tuple[Migration, ...]
    page_number: int
    page_size: int | None  # as echoed; None when the answer did not say
    total_count: int | None  # None when the answer did not say
    request_id: str | None = None


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
class Created:
    migration_id: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Started:
    """A StartMigration answer. `started` is false when the service did not start the task (it
    is running or finished already, or cannot be started); the code and message say why."""

    started: bool
    request_id: str | None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """A GetMigrationSummary answer: the task's status and, once exported, its package URL."""

    status: str
    download_url: str | None
    name: str
    request_id: str | None


class SummaryStatus(enum.StrEnum):
    """GetMigrationSummary statuses an export or an import goes through (dataworks-api.md §3.5)."""

    INIT = "INIT"
    EDITING = "EDITING"
    EXPORTING = "EXPORTING"
    EXPORT_ERROR = "EXPORT_ERROR"
    EXPORT_SUCCESS = "EXPORT_SUCCESS"
    IMPORTING = "IMPORTING"
    IMPORT_ERROR = "IMPORT_ERROR"
    IMPORT_SUCCESS = "IMPORT_SUCCESS"
    REVOKED = "REVOKED"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"


# A task in one of these was never started: a StartMigration that answered false left it alone.
NOT_STARTED_STATUSES = frozenset({SummaryStatus.INIT.value, SummaryStatus.EDITING.value})


class ApiError(Exception):
    """A failed call, classified: the kind decides retry, reconcile, fail or stop."""

    def __init__(
        self,
        kind: ErrorKind,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after  # seconds, from x-acs-retry-after

    @property
    def is_throttled(self) -> bool:
        """Answered "throttled" (429, Throttling.*): the rate, or the daily quota (fatal)."""
        return self.code.startswith("Throttling") or self.http_status == 429

    @property
    def is_throttling(self) -> bool:
        """Throttled for the rate (retryable): what the limiter learns the limit from."""
        return self.is_throttled and self.kind is ErrorKind.RETRYABLE

    @property
    def is_duplicate_name(self) -> bool:
        """The service refused a create because the name is taken in the workspace."""
        return self.code == DUPLICATE_NAME_CODE or (
            self.code in ("Invalid.Param", "InvalidParameter")
            and "already exists" in self.message.lower()
        )


# Code the runner uses for "name already exists" once recognised (the service has no documented
# code; the simulator answers Invalid.Param with a message naming the duplicate).
DUPLICATE_NAME_CODE = "Invalid.Param.DuplicateName"
