"""What a run ends with: its result, the exit code it earns and the lines an operator reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.commands.common import ExitCode
from runner.engine import RunStats
from runner.models import ActionKind, TaskState
from runner.phases import Stage
from runner.text import printable


@dataclass(frozen=True, slots=True)
class RunResult:
    exit_code: ExitCode
    stats: RunStats = field(default_factory=RunStats)
    states: dict[str, int] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0


# The stage a task in each state has reached.
_REACHED = {
    TaskState.CREATED.value: Stage.CREATE,
    TaskState.STARTED.value: Stage.START,
    TaskState.EXPORTED.value: Stage.DOWNLOAD,
    TaskState.UPLOADED.value: Stage.DOWNLOAD,
    TaskState.IMPORT_CREATED.value: Stage.DOWNLOAD,
    TaskState.IMPORTING.value: Stage.DOWNLOAD,
    TaskState.IMPORTED.value: Stage.IMPORT,
}


def exit_code(
    states: Mapping[str, int],
    stats: RunStats,
    stage: Stage,
    *,
    only_failed: bool = False,
    without_import: int = 0,
) -> ExitCode:
    """0 when every task reached the stage asked for (created, started, exported and, with
    --download, saved; with --import, imported, or exported when it has no import target:
    `without_import` counts those); 1 when some did not; 3 when a fatal answer stopped the
    run."""
    if stats.fatal is not None:
        return ExitCode.FATAL
    skipped = {TaskState.PENDING.value} if only_failed else set()

    def short(state: str) -> bool:
        reached = _REACHED.get(state)
        return state not in skipped and (reached is None or reached < stage)

    not_done = sum(n for state, n in states.items() if short(state))
    if stage is Stage.IMPORT:
        not_done -= without_import
    if stage >= Stage.DOWNLOAD:
        not_done += stats.download_failed
    return ExitCode.OK if not_done == 0 else ExitCode.TASKS_FAILED


def summary_line(result: RunResult, journal: Path) -> str:
    """The few lines an operator reads at the end of a run (stdout)."""
    states = ", ".join(f"{state} {n}" for state, n in sorted(result.states.items()))
    stats = result.stats
    lines = [
        f"tasks: {states or 'none'}",
        f"this run: {stats.created} created, {stats.adopted} adopted, {stats.failed} failed;"
        f" {stats.requests} requests ({stats.creates_sent} creates), {stats.throttled} throttled,"
        f" {result.elapsed:.1f}s",
    ]
    if stats.errors:
        lines.append(f"request errors: {_errors(stats)}")
    if stats.unresolved:
        lines.append(
            f"unresolved: {stats.unresolved} tasks are left as they were: no answer this run could"
            " use (the request errors say why); a rerun goes on from there"
        )
    if stats.started or stats.exported or stats.downloaded or stats.lifecycle_requests:
        lines.append(
            f"lifecycle: {stats.started} started, {stats.exported} exported,"
            f" {stats.downloaded} downloaded, {stats.export_failed} failed,"
            f" {stats.not_started} not started,"
            f" {stats.still_running} still running, {stats.download_failed} not downloaded;"
            f" {stats.lifecycle_requests} requests"
        )
    imports = (stats.uploaded, stats.imports_created, stats.imports_adopted, stats.imported)
    if any(imports) or stats.import_failed:
        lines.append(
            f"imports: {stats.uploaded} uploaded, {stats.imports_created} created,"
            f" {stats.imports_adopted} adopted,"
            f" {stats.import_start.started} started, {stats.imported} imported,"
            f" {stats.import_failed} failed, {stats.import_wait.still_running} still running"
        )
    if exists := result.states.get(TaskState.EXISTS.value, 0):
        lines.append(
            f"exists: {exists} names are taken in their workspaces by tasks this journal never"
            " made (a lost journal, or another tool); nothing was sent for them: rerun with"
            " --adopt-existing to adopt them"
        )
    if drifted := result.planned.get(ActionKind.DRIFTED.value, 0):
        lines.append(
            f"drifted: {drifted} done tasks differ from the manifest now (runner plan lists"
            " them); an export task cannot be changed: give it a new name to export it again"
        )
    if stats.fatal is not None:
        fatal = stats.fatal
        lines.append(f"stopped: {printable(fatal.code)}: {printable(fatal.message)}")
    if result.exit_code is not ExitCode.OK:
        lines.append(f"details: runner report --journal {journal}; rerun to retry what is left")
    return "\n".join(lines)


ERROR_EXAMPLE = 160  # characters of a code's first message in the summary


def _errors(stats: RunStats) -> str:
    """Failed requests by code, the most frequent first, each with its first message."""
    parts = []
    for code, count in sorted(stats.errors.items(), key=lambda item: (-item[1], item[0])):
        example = stats.first_errors.get(code, "")
        if len(example) > ERROR_EXAMPLE:
            example = example[:ERROR_EXAMPLE] + "…"
        parts.append(f"{code} x{count}" + (f" ({example})" if example else ""))
    return "; ".join(parts)
