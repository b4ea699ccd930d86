"""Where each task stands along the whole chain, from its journal row: the stages it has reached
(`runner report`) and the step a run would take next (`runner plan`). Pure: no I/O."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable

from runner.journal import TaskRow
from runner.models import IMPORT_STATES, ExportSpec, TaskState

_STARTED = IMPORT_STATES | {TaskState.STARTED, TaskState.EXPORTED}
_EXPORTED = _STARTED - {TaskState.STARTED}
_IMPORT_STARTED = frozenset({TaskState.IMPORTING, TaskState.IMPORTED})


class Reached(enum.StrEnum):
    """A stage a task has got through; each implies the ones before it."""

    CREATED = "created"
    STARTED = "started"
    EXPORTED = "exported"
    DOWNLOADED = "downloaded"
    UPLOADED = "uploaded"
    IMPORT_CREATED = "import_created"
    IMPORT_STARTED = "import_started"
    IMPORTED = "imported"


def reached(row: TaskRow) -> list[Reached]:
    """The stages a task has got through, in order."""
    stages: list[Reached] = []
    imports = row.imports
    # a row in a failed state keeps its migration id when the failure came after the create
    done = (
        row.migration_id is not None and row.state not in (TaskState.EXISTS, TaskState.IN_FLIGHT),
        row.state in _STARTED,
        row.state in _EXPORTED,
        row.package_path is not None,
        imports is not None and imports.package_file is not None,
        imports is not None and imports.migration_id is not None,
        row.state in _IMPORT_STARTED
        or (row.state is TaskState.IMPORT_FAILED and imports is not None and imports.migration_id),
        row.state is TaskState.IMPORTED,
    )
    for stage, yes in zip(Reached, done, strict=True):
        if not yes:
            break
        stages.append(stage)
    return stages


def stage_counts(rows: Iterable[TaskRow]) -> dict[str, int]:
    """How many tasks got through each stage."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update(stage.value for stage in reached(row))
    return {stage.value: counts.get(stage.value, 0) for stage in Reached}


class Step(enum.StrEnum):
    """What a run with the flags to go that far would do next for a task."""

    CREATE = "create"  # or look up, as the plan's action says
    START = "start"  # run --start
    WAIT = "wait"  # run --wait
    DOWNLOAD = "download"  # run --download
    UPLOAD = "upload"  # run --import, and so on
    CREATE_IMPORT = "create_import"
    START_IMPORT = "start_import"
    WAIT_IMPORT = "wait_import"
    NONE = "none"  # done, or stopped where only an operator can help


def next_step(spec: ExportSpec, row: TaskRow | None) -> Step:
    """The next step along the chain for a task of the manifest."""
    if row is None:
        return Step.CREATE
    state = row.state
    imports = row.imports if spec.import_into is not None else None
    match state:
        case TaskState.PENDING | TaskState.IN_FLIGHT | TaskState.EXISTS:
            return Step.CREATE
        case TaskState.FAILED:
            return Step.CREATE if row.migration_id is None else Step.NONE
        case TaskState.CREATED:
            return Step.START
        case TaskState.STARTED:
            return Step.WAIT
        case TaskState.EXPORTED if row.package_path is None:
            return Step.DOWNLOAD
        case TaskState.EXPORTED:
            return Step.UPLOAD if imports is not None else Step.NONE
        case TaskState.UPLOADED:
            return Step.CREATE_IMPORT
        case TaskState.IMPORT_CREATED:
            return Step.START_IMPORT
        case TaskState.IMPORTING:
            return Step.WAIT_IMPORT
        case TaskState.IMPORT_FAILED if imports is not None and imports.migration_id is None:
            return Step.UPLOAD if imports.package_file is None else Step.CREATE_IMPORT
    return Step.NONE
