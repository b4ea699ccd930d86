"""runner status: one row per task from the journal."""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path

from runner import reports
from runner.commands.common import ExitCode, stdout
from runner.journal import Journal, JournalError


def execute(
    journal: Path,
    *,
    fmt: str = "table",
    states: Collection[str] = (),
    regions: Collection[str] = (),
    project_ids: Collection[int] = (),
) -> ExitCode:
    """The journal's tasks, or those in one of `states`, `regions` and `project_ids` (each
    filter that is given): the rows to act on in a journal of thousands."""
    try:
        with Journal.open_readonly(journal) as j:
            rows = j.rows(states=states, regions=regions, project_ids=project_ids)
    except JournalError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if fmt == "json":
        print(reports.status_json(rows))
    else:
        reports.status_table(stdout(), rows)
    return ExitCode.OK
