"""runner report: totals, failures grouped by error code, timings."""

from __future__ import annotations

import sys
from pathlib import Path

from runner import reports
from runner.commands.common import ExitCode, stdout
from runner.journal import Journal, JournalError


def execute(journal: Path, *, fmt: str = "table") -> ExitCode:
    try:
        with Journal.open_readonly(journal) as j:
            report = reports.build_report(j.rows(), j.attempts())
    except JournalError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if fmt == "json":
        print(reports.report_json(report))
    elif fmt == "csv":
        sys.stdout.write(reports.report_csv(report))
    else:
        reports.report_table(stdout(), report)
    return ExitCode.OK
