"""One migration task as the simulator stores it, and the statuses it shows over time.

A task is INIT until started; then it runs for its type's duration (`--export-duration`,
`--import-duration`) and ends as drawn when it was started: an export EXPORT_SUCCESS or
EXPORT_ERROR; an import IMPORT_SUCCESS, IMPORT_ERROR or PARTIAL_SUCCESS. ListMigrations shows the
coarser RUNNING, SUCCESS or FAILURE: every end but the success is a FAILURE there.
"""

from __future__ import annotations

from dataclasses import dataclass

EXPORT = "EXPORT"
IMPORT = "IMPORT"
EXPORT_MODES = ("FULL", "INCREMENTAL")
OBJECT_STATUSES = ("SAVED", "SUBMITTED", "DEPLOYED")
MIGRATION_TYPES = (IMPORT, EXPORT)
PACKAGE_TYPES = ("DWMA", "DATAWORKS_MODEL", "DATAWORKS_V2", "DATAWORKS_V3")
EXPORT_STEPS = ("EXPORT_PREPARE", "EXPORT_OBJECTS", "EXPORT_PACKAGE")
IMPORT_STEPS = ("IMPORT_PREPARE", "IMPORT_OBJECTS", "IMPORT_COMMIT")
EXPORT_SUCCESS = "EXPORT_SUCCESS"
IMPORT_ERROR = "IMPORT_ERROR"
PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
FAILURE_MESSAGE = "An internal system error occurred. The export package could not be built."
IMPORT_FAILURE_MESSAGE = "An internal system error occurred. The package could not be imported."
PARTIAL_MESSAGE = "Some objects of the package could not be imported."


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
    # an import: the export whose package it was made from, and that package's sha256
    source_migration_id: int | None = None
    package_sha256: str | None = None

    def finished(self, now: float, duration: float) -> bool:
        return self.started_at is not None and now >= self.started_at + duration

    def summary_status(self, now: float, duration: float) -> str:
        """The GetMigrationSummary status at `now`."""
        if self.started_at is None:
            return "INIT"
        if not self.finished(now, duration):
            return "EXPORTING" if self.migration_type == EXPORT else "IMPORTING"
        return self.end_status_name()

    def end_status_name(self) -> str:
        """The summary status the task ends in, as drawn when it was started."""
        if self.end_status is not None:
            return self.end_status
        if self.migration_type == EXPORT:
            return "EXPORT_ERROR" if self.will_fail else EXPORT_SUCCESS
        return IMPORT_ERROR if self.will_fail else "IMPORT_SUCCESS"

    def list_status(self, now: float, duration: float) -> str:
        """The ListMigrations status at `now` (a coarser enum than the summary's)."""
        if self.started_at is None:
            return "INIT"
        if not self.finished(now, duration):
            return "RUNNING"
        return "FAILURE" if self.failed_end else "SUCCESS"

    @property
    def failed_end(self) -> bool:
        return self.will_fail or self.end_status is not None

    def message(self, now: float, duration: float) -> str:
        """ListMigrations' Message: the error text of a task that ended in failure."""
        if not self.finished(now, duration):
            return ""
        if self.migration_type == EXPORT:
            return FAILURE_MESSAGE if self.will_fail else ""
        if self.end_status == PARTIAL_SUCCESS:
            return PARTIAL_MESSAGE
        return IMPORT_FAILURE_MESSAGE if self.failed_end else ""

    def modified_at(self, now: float, duration: float) -> float:
        if self.started_at is not None and self.finished(now, duration):
            return self.started_at + duration
        return self.updated_at
