"""runner plan: what a run would do, per task and in totals; sends nothing."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from runner import reports
from runner.commands.common import ExitCode, load_or_report, stdout
from runner.dataworks.sources import default_profile
from runner.journal import Journal, JournalError, TaskRow
from runner.models import TaskKey
from runner.plan import listed_first, make_plan
from runner.stages import next_step


def read_rows(journal: Path) -> dict[TaskKey, TaskRow]:
    """The journal's rows, or none when there is no journal yet."""
    if not journal.exists():
        return {}
    with Journal.open_readonly(journal) as j:
        return j.row_map()


def execute(
    paths: Sequence[str],
    journal: Path,
    *,
    fmt: str = "table",
    only_failed: bool = False,
    profile: str | None = None,
) -> ExitCode:
    manifest = load_or_report(paths)
    if manifest is None:
        return ExitCode.USAGE
    try:
        rows = read_rows(journal)
    except JournalError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    # the default profile as a run names it (--profile, else ALIBABA_CLOUD_PROFILE)
    default, unnamed = default_profile(profile, environ=os.environ)
    plan = make_plan(
        manifest.specs,
        rows,
        only_failed=only_failed,
        default_profile=default,
        unnamed_default=unnamed,
    )
    sent = {(k.region, k.project_id) for k, row in rows.items() if row.create_sent}
    listed = listed_first(plan.actions, sent)
    steps = [next_step(a.spec, rows.get(a.spec.key)) for a in plan.actions]
    if fmt == "json":
        print(reports.plan_json(plan, listed, steps))
    else:
        reports.plan_table(stdout(), plan, listed, steps)
    return ExitCode.OK
