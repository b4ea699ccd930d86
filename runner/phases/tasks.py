"""What the phases after the create need of a journal row."""

from __future__ import annotations

from dataclasses import dataclass

from runner.journal import TaskRow
from runner.models import TaskKey, TaskState

LIFECYCLE_STATES = (TaskState.CREATED, TaskState.STARTED, TaskState.EXPORTED)


@dataclass(frozen=True, slots=True)
class LifecycleTask:
    """A task that was created, at least: its migration and where it stands."""

    key: TaskKey
    migration_id: int
    state: TaskState
    download_url: str | None = None
    package_path: str | None = None
    profile: str | None = None  # the credentials profile its workspace is reached with

    @classmethod
    def from_row(cls, row: TaskRow) -> LifecycleTask | None:
        """The task if its row has a migration and is created, started or exported."""
        if row.migration_id is None or row.state not in LIFECYCLE_STATES:
            return None
        return cls(
            row.key, row.migration_id, row.state, row.download_url, row.package_path, row.profile
        )
