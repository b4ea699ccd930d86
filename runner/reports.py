"""Journal rows and plans → table, JSON or CSV text for stdout."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.journal import AttemptRow, TaskRow
from runner.models import IMPORT_STATES, TaskState
from runner.plan import Plan
from runner.redact import scrub_url_secrets
from runner.stages import Step, stage_counts
from runner.text import printable

STATUS_FIELDS = (
    "project_id",
    "name",
    "region",
    "state",
    "migration_id",
    "attempts",
    "error_code",
    "error_message",
    "request_id",
    "download_url",
    "package_path",
    "waiting_since",
    "profile",
    # the import leg (run --import): the target, the uploaded package, the import task
    "import_region",
    "import_project_id",
    "import_name",
    "import_profile",
    "package_file",
    "import_migration_id",
    "import_state",
)
IMPORT_FIELDS = STATUS_FIELDS[STATUS_FIELDS.index("import_region") :]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def waiting_since(row: TaskRow) -> str | None:
    """For a task whose create's outcome is still unknown (in flight): since when it waits on a
    lookup, as the journal last heard of it."""
    return _iso(row.updated_at) if row.state is TaskState.IN_FLIGHT else None


def import_state(row: TaskRow) -> str | None:
    """Where the task's import stands: its state once the import leg has begun, `pending`
    before (`in_flight` while a create's outcome is unknown), None without an import target."""
    imports = row.imports
    if imports is None:
        return None
    if row.state in IMPORT_STATES:
        if row.state is TaskState.UPLOADED and imports.sent:
            return TaskState.IN_FLIGHT.value
        return row.state.value
    return TaskState.PENDING.value


def _import_record(row: TaskRow) -> dict[str, Any]:
    imports = row.imports
    if imports is None:
        return dict.fromkeys(IMPORT_FIELDS)
    return {
        "import_region": imports.target.region,
        "import_project_id": imports.target.project_id,
        "import_name": imports.target.name,
        "import_profile": imports.profile,
        "package_file": imports.package_file,
        "import_migration_id": imports.migration_id,
        "import_state": import_state(row),
    }


def status_record(row: TaskRow) -> dict[str, Any]:
    return {
        "project_id": row.key.project_id,
        "name": row.key.name,
        "region": row.key.region,
        "state": row.state.value,
        "migration_id": row.migration_id,
        "attempts": row.attempts,
        "error_code": row.error_code,
        "error_message": row.error_message,
        "request_id": row.request_id,
        # the presigned URL's signature is a credential for the package: never printed
        "download_url": scrub_url_secrets(row.download_url) if row.download_url else None,
        "package_path": row.package_path,
        "waiting_since": waiting_since(row),
        "profile": row.profile,
        **_import_record(row),
    }


def status_json(rows: Iterable[TaskRow]) -> str:
    return json.dumps([status_record(r) for r in rows], indent=2, ensure_ascii=False)


def cell(value: object) -> Text:
    """A table cell shown as it is: journal text (server messages, names, the redaction mark) is
    never read as rich markup, which would hide `[redacted]` and fail on a stray `[/x]`, and
    carries no escape sequence or control character to the terminal."""
    return Text("" if value is None else printable(str(value)))


ALWAYS_SHOWN = frozenset({"project_id", "name", "region", "state", "attempts"})


def status_table(console: Console, rows: Sequence[TaskRow]) -> None:
    records = [status_record(row) for row in rows]
    # a column is shown when some row has a value there (the task and its state always): the
    # columns a run has not reached yet (errors, packages, the import leg) take no room
    shown = [
        f
        for f in STATUS_FIELDS
        if f in ALWAYS_SHOWN or any(record[f] is not None for record in records)
    ]
    table = Table(title=f"{len(rows)} tasks")
    for name in shown:
        table.add_column(name, overflow="fold")
    for record in records:
        table.add_row(*(cell(record[f]) for f in shown))
    console.print(table)


LISTING_WHY = (
    "workspaces this journal never sent a create to are listed whole before their first create,"
    " so that a task made by a lost journal (or anyone) is never made again"
)


def _step_totals(steps: Sequence[Step]) -> dict[str, int]:
    counts = Counter(steps)
    return {step.value: counts.get(step, 0) for step in Step}


def plan_json(
    plan: Plan, listed: Sequence[tuple[str, int]] = (), steps: Sequence[Step] = ()
) -> str:
    steps = steps or [Step.CREATE] * len(plan.actions)
    return json.dumps(
        {
            "totals": {k.value: v for k, v in plan.totals().items()},
            # the next step of each task along the chain (create … wait_import), for a run with
            # the flags that go that far
            "next_steps": _step_totals(steps),
            "listings": {
                "workspaces": [{"region": r, "project_id": p} for r, p in listed],
                "reads_at_least": len(listed),
                "why": LISTING_WHY,
            },
            "tasks": [
                {
                    "region": a.spec.key.region,
                    "project_id": a.spec.key.project_id,
                    "name": a.spec.key.name,
                    "action": a.kind.value,
                    "reason": a.reason,
                    "profile": a.spec.profile,
                    "next_step": step.value,
                }
                for a, step in zip(plan.actions, steps, strict=True)
            ],
        },
        indent=2,
        ensure_ascii=False,
    )


def plan_table(
    console: Console,
    plan: Plan,
    listed: Sequence[tuple[str, int]] = (),
    steps: Sequence[Step] = (),
) -> None:
    table = Table(title="plan")
    profiles = any(a.spec.profile for a in plan.actions)  # a column only when a workspace names one
    names = (
        "region",
        "project_id",
        "name",
        *(("profile",) if profiles else ()),
        "action",
        "reason",
    )
    for name in names:
        table.add_column(name)
    for a in plan.actions:
        key = a.spec.key
        values = (key.region, key.project_id, key.name, a.spec.profile, a.kind.value, a.reason)
        table.add_row(*map(cell, values if profiles else values[:3] + values[4:]))
    console.print(table)
    totals = ", ".join(f"{k.value} {v}" for k, v in plan.totals().items())
    console.print(f"totals: {totals}", markup=False)
    if steps:
        ahead = ", ".join(f"{k} {v}" for k, v in _step_totals(steps).items() if v)
        console.print(f"next steps: {ahead}", markup=False)
    if listed:
        console.print(
            f"listings first: {len(listed)} workspaces, at least {len(listed)} ListMigrations"
            f" reads ({LISTING_WHY})",
            markup=False,
        )


@dataclass(frozen=True, slots=True)
class Report:
    totals: dict[str, int]
    failures: list[dict[str, Any]]
    timings: dict[str, Any]
    # tasks whose create's outcome is unknown: they wait on a lookup (the next run looks again)
    waiting: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)  # tasks through each stage of the chain

    def as_dict(self) -> dict[str, Any]:
        return {
            "totals": self.totals,
            "failures": self.failures,
            "timings": self.timings,
            "waiting": self.waiting,
            "stages": self.stages,
        }


def nearest_rank(ordered: Sequence[float], percent: int) -> float:
    """The `percent`-th percentile of sorted values by the nearest-rank method: the smallest value
    that at least `percent`% of them do not exceed (the ceil(percent/100 × n)-th, from 1)."""
    rank = -(-percent * len(ordered) // 100)  # ceil in integers: no float rounding at the edges
    return ordered[max(rank, 1) - 1]


def build_report(rows: Sequence[TaskRow], attempts: Sequence[AttemptRow]) -> Report:
    states = Counter(r.state.value for r in rows)
    totals = {s.value: states.get(s.value, 0) for s in TaskState}
    totals["total"] = len(rows)
    grouped: dict[str, list[TaskRow]] = defaultdict(list)
    for row in rows:
        if row.state in (TaskState.FAILED, TaskState.EXISTS, TaskState.IMPORT_FAILED):
            grouped[row.error_code or "unknown"].append(row)
    failures = [
        {
            "error_code": code,
            "count": len(items),
            "example_message": items[0].error_message,
            "tasks": [str(r.key) for r in items[:20]],
        }
        for code, items in sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
    latencies = sorted(a.latency_ms for a in attempts if a.latency_ms is not None)
    by_outcome = Counter(a.outcome for a in attempts)
    # the failed requests by what the service (or the transport) said: why a run went slowly or
    # left tasks unresolved, also for tasks that ended well after retries
    by_code = Counter(a.error_code for a in attempts if a.error_code is not None)
    timings: dict[str, Any] = {
        "requests": len(attempts),
        "by_outcome": dict(sorted(by_outcome.items())),
        "by_error_code": dict(sorted(by_code.items())),
    }
    if latencies:
        timings["latency_ms"] = {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(nearest_rank(latencies, 95), 1),
            "max": round(latencies[-1], 1),
        }
    if attempts:
        first = min(a.at for a in attempts)
        last = max(a.at for a in attempts)
        timings["first_request_at"] = first
        timings["last_request_at"] = last
        timings["span_s"] = round(last - first, 3)
    in_flight = sorted((r for r in rows if r.state is TaskState.IN_FLIGHT), key=_updated)
    waiting: dict[str, Any] = {"count": len(in_flight)}
    if in_flight:
        waiting["oldest_since"] = _iso(in_flight[0].updated_at)
        waiting["tasks"] = [str(r.key) for r in in_flight[:20]]
    return Report(totals, failures, timings, waiting, stage_counts(rows))


def _updated(row: TaskRow) -> float:
    return row.updated_at


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)


def report_csv(report: Report) -> str:
    """The report as CSV; the text that came from the service is made printable (no escapes)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", "value", "detail"])
    for state, count in report.totals.items():
        writer.writerow(["totals", state, count, ""])
    for failure in report.failures:
        code, message = failure["error_code"], failure["example_message"] or ""
        writer.writerow(["failures", printable(code), failure["count"], printable(message)])
    for name, value in report.timings.items():
        writer.writerow(["timings", name, json.dumps(value), ""])
    for name, value in report.waiting.items():
        writer.writerow(["waiting", name, json.dumps(value), ""])
    for stage, count in report.stages.items():
        writer.writerow(["stages", stage, count, ""])
    return out.getvalue()


def report_table(console: Console, report: Report) -> None:
    totals = Table(title="totals")
    totals.add_column("state")
    totals.add_column("tasks", justify="right")
    for state, count in report.totals.items():
        totals.add_row(cell(state), cell(count))
    console.print(totals)
    stages = ", ".join(f"{stage} {count}" for stage, count in report.stages.items())
    console.print(f"stages reached: {stages}", markup=False)
    if report.failures:
        failures = Table(title="failures by error code")
        for name in ("error_code", "count", "example_message"):
            failures.add_column(name, overflow="fold")
        for f in report.failures:
            failures.add_row(cell(f["error_code"]), cell(f["count"]), cell(f["example_message"]))
        console.print(failures)
    console.print(f"timings: {json.dumps(report.timings)}", markup=False)
    if report.waiting.get("count"):
        console.print(
            f"waiting on a lookup (outcome unknown, the next run looks again):"
            f" {json.dumps(report.waiting)}",
            markup=False,
        )
