"""What the phases after the create need of a journal row, and the two legs a task's migration
goes through: its export, then (with --import) its import in the target workspace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from runner.journal import (
    MarkExported,
    MarkFailed,
    MarkImported,
    MarkImportFailed,
    MarkImporting,
    MarkStarted,
    Op,
    TaskRow,
)
from runner.models import SummaryStatus, TaskKey, TaskState

LIFECYCLE_STATES = (TaskState.CREATED, TaskState.STARTED, TaskState.EXPORTED)
IMPORT_LIFECYCLE_STATES = (TaskState.IMPORT_CREATED, TaskState.IMPORTING)


@dataclass(frozen=True, slots=True)
class LifecycleTask:
    """A task whose migration (its export, or its import) exists: the migration's id, where it
    lives and where the task stands. `key` is the journal's task; `target` the import task when
    the migration is an import (None: the export, at `key`)."""

    key: TaskKey
    migration_id: int
    state: TaskState
    download_url: str | None = None
    package_path: str | None = None
    profile: str | None = None  # the credentials profile the migration's workspace is reached with
    target: TaskKey | None = None

    @property
    def at(self) -> TaskKey:
        """Where the migration lives: the workspace and name requests about it name."""
        return self.target or self.key

    @classmethod
    def from_row(cls, row: TaskRow) -> LifecycleTask | None:
        """The task if its row has a migration and is created, started or exported."""
        if row.migration_id is None or row.state not in LIFECYCLE_STATES:
            return None
        return cls(
            row.key, row.migration_id, row.state, row.download_url, row.package_path, row.profile
        )

    @classmethod
    def import_of(cls, row: TaskRow) -> LifecycleTask | None:
        """The task's import if it was created and is not finished yet."""
        imports = row.imports
        if imports is None or imports.migration_id is None:
            return None
        if row.state not in IMPORT_LIFECYCLE_STATES:
            return None
        return cls(
            row.key,
            imports.migration_id,
            row.state,
            profile=imports.profile,
            target=imports.target,
        )


@dataclass(frozen=True, slots=True)
class Leg:
    """What differs between starting and waiting for an export and an import: the migration
    type the listings read, the statuses, and the journal ops that record each step."""

    noun: str  # "export" | "import", for logs
    migration_type: str  # ListMigrations' MigrationType
    success: str  # the GetMigrationSummary status of a good end
    failures: Mapping[str, str]  # GetMigrationSummary statuses of a bad end → the error code
    started: Callable[[TaskKey, str | None], Op]  # (key, request id)
    succeeded: Callable[[TaskKey, str | None, str | None], Op]  # (key, download url, request id)
    failed: Callable[[TaskKey, str, str, str | None], Op]  # (key, code, message, request id)
    waiting: str  # what a wait that timed out leaves, and how to go on


def _imported(key: TaskKey, url: str | None, request_id: str | None) -> Op:
    return MarkImported(key, request_id)


EXPORT_LEG = Leg(
    "export",
    "EXPORT",
    SummaryStatus.EXPORT_SUCCESS.value,
    {
        SummaryStatus.EXPORT_ERROR.value: "ExportFailed",
        SummaryStatus.REVOKED.value: "Revoked",
        SummaryStatus.PARTIAL_SUCCESS.value: "ExportPartial",
    },
    MarkStarted,
    MarkExported,
    MarkFailed,
    "the tasks stay started; rerun with --wait (or further) to go on waiting",
)
IMPORT_LEG = Leg(
    "import",
    "IMPORT",
    SummaryStatus.IMPORT_SUCCESS.value,
    {
        SummaryStatus.IMPORT_ERROR.value: "ImportFailed",
        SummaryStatus.REVOKED.value: "ImportRevoked",
        # some objects imported, some not: reported as such, never as done
        SummaryStatus.PARTIAL_SUCCESS.value: "ImportPartial",
    },
    MarkImporting,
    _imported,
    MarkImportFailed,
    "the imports stay importing; rerun with --import to go on waiting",
)
