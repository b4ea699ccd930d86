"""The journal's values and errors: the rows it reads back, and the ops a batch of writes is
made of (small frozen values; `Journal.apply` commits a batch of them in one transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, assert_never

from runner.models import ExportSpec, TaskKey, TaskState

_CLEAR = ", error_code = NULL, error_message = NULL"


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


TASK_COLUMNS = (
    "region, project_id, name, state, migration_id, attempts, error_code, error_message,"
    " request_id, download_url, fingerprint, create_sent, updated_at, package_path, profile,"
    " import_region, import_project_id, import_name, import_profile, import_params,"
    " package_file, import_migration_id, import_sent, listed_at"
)
ATTEMPT_COLUMNS = (
    "region, project_id, name, at, action, http_status, error_code, request_id, latency_ms, outcome"
)
BY_KEY = "WHERE region = ? AND project_id = ? AND name = ?"


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
    imports: ImportRow | None = None  # the import leg, when the manifest gave it one
    # when a listing of this journal's showed the name absent (a pending task whose run stopped
    # before its create): a rerun creates it with no listing of its workspace first
    listed_at: float | None = None


@dataclass(frozen=True, slots=True)
class ImportRow:
    """A task's import leg as the journal holds it."""

    target: TaskKey  # the import task: target region, project id, import name
    profile: str | None  # the credentials profile the target is reached with
    params: str  # CreateImportMigration's parameters but PackageFile, as JSON
    package_file: str | None = None  # the uploaded package, as CreateImportMigration names it
    migration_id: int | None = None  # the import task's id, once created
    sent: bool = False  # a CreateImportMigration was sent (its outcome may be unknown)


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


def task_row(r: Sequence[Any]) -> TaskRow:
    """A task row as `TASK_COLUMNS` selects it."""
    key, state = TaskKey(r[0], r[1], r[2]), TaskState(r[3])
    imports = None
    if r[15] is not None:  # the import leg: target, profile, params, file, id, sent
        target = TaskKey(r[15], r[16], r[17])
        imports = ImportRow(target, r[18], r[19], r[20], r[21], bool(r[22]))
    return TaskRow(
        key,
        state,
        r[4],
        r[5],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        bool(r[11]),
        r[12],
        r[13],
        r[14],
        imports,
        r[23],
    )


def attempt_row(r: Sequence[Any]) -> AttemptRow:
    """An attempt row as `ATTEMPT_COLUMNS` selects it."""
    return AttemptRow(TaskKey(r[0], r[1], r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9])


# --- ops: small values; a batch of them is applied in one transaction -----------------------------


@dataclass(frozen=True, slots=True)
class Register:
    """Insert the task as pending unless it is already known (its stored fingerprint is kept)."""

    spec: ExportSpec


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
class MarkInFlight:
    """A create is about to be sent: to be committed before the request leaves."""

    key: TaskKey
    fingerprint: str


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
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
class MarkError:
    """A step along the chain failed and the task stays where it is (a download or an upload
    that gave up for this run): its last error, for status and report."""

    key: TaskKey
    error_code: str
    error_message: str


@dataclass(frozen=True, slots=True)
class MarkListedAbsent:
    """A listing of this journal's showed the task's name absent from its workspace, and the
    run stopped before its create was sent: a rerun need not list the workspace for it."""

    key: TaskKey
    at: float


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


# The history labels of the reads that look a task up (runner.lookup's policies). Counted on
# the task, they leave its updated_at as it was: a rerun's visibility window for a lost send
# counts from when that send was last heard of, and lookups must not push it back.
LOOKUPS = frozenset({"list", "summary"})


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
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


@dataclass(frozen=True, slots=True)
class MarkUploaded:
    """The task's package is uploaded, whole, and named `package_file` for its import."""

    key: TaskKey
    package_file: str


@dataclass(frozen=True, slots=True)
class MarkImportInFlight:
    """A CreateImportMigration is about to be sent: committed before the request leaves."""

    key: TaskKey


@dataclass(frozen=True, slots=True)
class MarkImportCreated:
    key: TaskKey
    import_migration_id: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class MarkImporting:
    """The import task was started."""

    key: TaskKey
    request_id: str | None


@dataclass(frozen=True, slots=True)
class MarkImported:
    key: TaskKey
    request_id: str | None


@dataclass(frozen=True, slots=True)
class MarkImportFailed:
    key: TaskKey
    error_code: str
    error_message: str
    request_id: str | None


ImportOp: TypeAlias = (
    MarkUploaded
    | MarkImportInFlight
    | MarkImportCreated
    | MarkImporting
    | MarkImported
    | MarkImportFailed
)
Op: TypeAlias = (
    (Register | MarkInFlight | MarkCreated | MarkFailed | MarkPending | MarkStarted | MarkExported)
    | (MarkDownloaded | MarkExists | MarkListedAbsent | MarkError)
    | ImportOp
    | RecordAttempt
)


# the SET clauses of the ops every create makes, made once (a new string per op would be
# hashed again each time the journal looks its statement up)
_IN_FLIGHT_SETS = (
    "state = 'in_flight', create_sent = 1, fingerprint = ?, request_id = NULL" + _CLEAR
)
_CREATED_SETS = "state = 'created', migration_id = ?, request_id = ?" + _CLEAR


def changes_of(op: Op) -> tuple[str, tuple[Any, ...]]:
    """The SET clause and its arguments for an op that changes an existing task row."""
    match op:
        case MarkInFlight():
            return _IN_FLIGHT_SETS, (op.fingerprint,)
        case MarkCreated() if op.fingerprint is not None:
            sets = "state = 'created', migration_id = ?, request_id = ?, fingerprint = ?"
            return sets + _CLEAR, (op.migration_id, op.request_id, op.fingerprint)
        case MarkCreated():
            return _CREATED_SETS, (op.migration_id, op.request_id)
        case MarkFailed():
            sets = "state = 'failed', error_code = ?, error_message = ?, request_id = ?"
            return sets, (op.error_code, op.error_message, op.request_id)
        case MarkExists():
            sets = "state = 'exists', migration_id = ?, error_code = 'NameExists',"
            return sets + " error_message = ?", (op.migration_id, op.message)
        case MarkPending():
            sent = ", create_sent = 0" if op.unsent else ""
            return "state = 'pending'" + sent + _CLEAR, ()
        case MarkListedAbsent():
            return "listed_at = ?", (op.at,)
        case MarkError():
            return "error_code = ?, error_message = ?", (op.error_code, op.error_message)
        case MarkStarted():
            return "state = 'started', request_id = ?" + _CLEAR, (op.request_id,)
        case MarkExported():
            sets = "state = 'exported', download_url = ?, request_id = ?"
            return sets + _CLEAR, (op.download_url, op.request_id)
        case MarkDownloaded():
            return "package_path = ?" + _CLEAR, (op.path,)
        case MarkUploaded():
            return "state = 'uploaded', package_file = ?" + _CLEAR, (op.package_file,)
        case MarkImportInFlight():
            return "import_sent = 1, request_id = NULL", ()
        case MarkImportCreated():
            sets = "state = 'import_created', import_migration_id = ?, request_id = ?"
            return sets + _CLEAR, (op.import_migration_id, op.request_id)
        case MarkImporting():
            return "state = 'importing', request_id = ?" + _CLEAR, (op.request_id,)
        case MarkImported():
            return "state = 'imported', request_id = ?" + _CLEAR, (op.request_id,)
        case MarkImportFailed():
            sets = "state = 'import_failed', error_code = ?, error_message = ?, request_id = ?"
            return sets, (op.error_code, op.error_message, op.request_id)
        case RecordAttempt():
            return "attempts = attempts + 1", ()
        case Register():
            raise TypeError("Register inserts; it changes no row")
        case _:
            assert_never(op)
