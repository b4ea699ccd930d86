"""runner status: one row per task from the journal."""

from __future__ import annotations

import sys
from pathlib import Path

from runner import reports
from runner.commands.common import ExitCode, stdout
from runner.journal import Journal, JournalError


def execute(journal: Path, *, fmt: str = "table") -> ExitCode:
    try:
        with Journal.open_readonly(journal) as j:
            rows = j.rows()
    except JournalError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if fmt == "json":
        print(reports.status_json(rows))
    else:
        reports.status_table(stdout(), rows)
    return ExitCode.OK
