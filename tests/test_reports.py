"""`runner report` and `runner status` on journals built with the journal API: totals per state,
failures by error code, timings (p50, p95, max), as table, JSON and CSV; status rows."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from runner import reports
from runner.cli import cli
from runner.journal import (
    Journal,
    MarkCreated,
    MarkExported,
    MarkFailed,
    MarkInFlight,
    MarkStarted,
    Op,
    RecordAttempt,
    Register,
)
from runner.models import ExportSpec, TaskKey
from runner.plan import make_plan

CREATED_A = TaskKey("cn-shanghai", 101, "a")
CREATED_B = TaskKey("cn-shanghai", 101, "b")
MISSING_102 = TaskKey("cn-shanghai", 102, "a")
MISSING_103 = TaskKey("cn-shanghai", 103, "a")
FORBIDDEN = TaskKey("cn-hangzhou", 104, "a")
PENDING = TaskKey("cn-hangzhou", 105, "a")
IN_FLIGHT = TaskKey("cn-hangzhou", 106, "a")
STARTED = TaskKey("cn-shanghai", 107, "a")
EXPORTED = TaskKey("cn-shanghai", 108, "a")
ALL_KEYS = (
    *(CREATED_A, CREATED_B, MISSING_102, MISSING_103, FORBIDDEN),
    *(PENDING, IN_FLIGHT, STARTED, EXPORTED),
)

SIGNED_URL = (
    "https://pkg.oss-cn-shanghai.aliyuncs.com/export/108.zip?Expires=1700000000"
    "&OSSAccessKeyId=LTAI5tExample&Signature=abc%2Bdef%3D"
)
SHOWN_URL = (
    "https://pkg.oss-cn-shanghai.aliyuncs.com/export/108.zip?Expires=1700000000"
    "&OSSAccessKeyId=[redacted]&Signature=[redacted]"
)

# 20 latencies 10, 20, …, 200 ms: p50 is the mean of the middle two (105), p95 the 19th value by
# the nearest-rank method (ceil(0.95 × 20) = 19: 190), max the last (200).
LATENCIES = [10.0 * i for i in range(1, 21)]
OUTCOMES = ["ok"] * 15 + ["throttled"] * 3 + ["server_error"] * 2
CODES = {"ok": None, "throttled": "Throttling.User", "server_error": "InternalError"}


def attempt(
    key: TaskKey, outcome: str, latency_ms: float | None, at: float, code: str | None = None
) -> RecordAttempt:
    return RecordAttempt(key, "create", 200, code, f"req-{at}", latency_ms, outcome, at)


def write_journal(path: Path, ops: Sequence[Op], *keys: TaskKey) -> Path:
    with Journal.open(path, clock=lambda: 5000.0) as journal:
        journal.apply([Register(ExportSpec(key)) for key in keys])
        journal.apply(ops)
    return path


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """Nine tasks in every state, three failed under two codes, 21 requests (one timed out)."""
    created = [MarkInFlight(k, "fp") for k in (CREATED_A, CREATED_B, STARTED, EXPORTED)] + [
        MarkCreated(k, 9000 + k.project_id, f"req-{k.name}")
        for k in (CREATED_A, CREATED_B, STARTED, EXPORTED)
    ]
    ops: list[Op] = [
        *created,
        MarkStarted(STARTED, "req-s"),
        MarkStarted(EXPORTED, "req-s"),
        MarkExported(EXPORTED, SIGNED_URL, "req-e"),
        MarkFailed(MISSING_102, "InvalidProject.NotFound", "project 102 not found", "req-f1"),
        MarkFailed(MISSING_103, "InvalidProject.NotFound", "project 103 not found", "req-f2"),
        MarkFailed(FORBIDDEN, "Forbidden.Access", "no permission", "req-f3"),
        MarkInFlight(IN_FLIGHT, "fp"),
        *(
            attempt(CREATED_A, outcome, latency, 1000.0 + i, CODES[outcome])
            for i, (outcome, latency) in enumerate(zip(OUTCOMES, LATENCIES, strict=True))
        ),
        # no answer: counted, but has no latency
        attempt(IN_FLIGHT, "timeout", None, 1030.5, "ExchangeError"),
    ]
    return write_journal(tmp_path / "j.db", ops, *ALL_KEYS)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def report_of(path: Path) -> reports.Report:
    with Journal.open_readonly(path) as j:
        return reports.build_report(j.rows(), j.attempts())


TOTALS = {
    "pending": 1,
    "in_flight": 1,
    "created": 2,
    "started": 1,
    "exported": 1,
    "failed": 3,
    "exists": 0,
    "uploaded": 0,
    "import_created": 0,
    "importing": 0,
    "imported": 0,
    "import_failed": 0,
    "total": 9,
}
# created 4 (two only created), started 2, exported 1; no package saved, no import leg
STAGES = {
    "created": 4,
    "started": 2,
    "exported": 1,
    "downloaded": 0,
    "uploaded": 0,
    "import_created": 0,
    "import_started": 0,
    "imported": 0,
}
# the in-flight task: its create's outcome unknown since the journal last heard of it
WAITING = {"count": 1, "oldest_since": "1970-01-01T01:23:20Z", "tasks": ["cn-hangzhou/106/a"]}
FAILURES = [
    {
        "error_code": "InvalidProject.NotFound",
        "count": 2,
        "example_message": "project 102 not found",
        "tasks": ["cn-shanghai/102/a", "cn-shanghai/103/a"],
    },
    {
        "error_code": "Forbidden.Access",
        "count": 1,
        "example_message": "no permission",
        "tasks": ["cn-hangzhou/104/a"],
    },
]
TIMINGS = {
    "requests": 21,
    "by_outcome": {"ok": 15, "server_error": 2, "throttled": 3, "timeout": 1},
    "by_error_code": {"ExchangeError": 1, "InternalError": 2, "Throttling.User": 3},
    "latency_ms": {"p50": 105.0, "p95": 190.0, "max": 200.0},
    "first_request_at": 1000.0,
    "last_request_at": 1030.5,
    "span_s": 30.5,
}


# --- report -------------------------------------------------------------------------------------


def test_report_json_has_totals_failures_by_code_and_timings(journal: Path) -> None:
    """report --format json: every state counted, failures grouped by code (most first) with an
    example and the tasks, and the request timings, on stdout."""
    code, out, err = invoke("report", "--journal", str(journal), "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "totals": TOTALS,
        "failures": FAILURES,
        "timings": TIMINGS,
        "waiting": WAITING,
        "stages": STAGES,
    }


def test_report_csv_parses_back(journal: Path) -> None:
    """report --format csv: a header, then one row per state, per error code and per timing; the
    timing values are JSON, so they parse back to what the JSON report holds."""
    code, out, _ = invoke("report", "--journal", str(journal), "--format", "csv")
    assert code == 0
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert header == ["section", "key", "value", "detail"]
    assert all(len(row) == 4 for row in rows)
    assert {r[1]: int(r[2]) for r in rows if r[0] == "totals"} == TOTALS
    assert [r[1:] for r in rows if r[0] == "failures"] == [
        ["InvalidProject.NotFound", "2", "project 102 not found"],
        ["Forbidden.Access", "1", "no permission"],
    ]
    assert {r[1]: json.loads(r[2]) for r in rows if r[0] == "timings"} == TIMINGS
    assert {r[1]: json.loads(r[2]) for r in rows if r[0] == "waiting"} == WAITING
    sections = [r[0] for r in rows]
    assert sections == ["totals"] * len(TOTALS) + ["failures"] * 2 + ["timings"] * 7 + [
        "waiting"
    ] * len(WAITING) + ["stages"] * len(STAGES)
    assert {r[1]: int(r[2]) for r in rows if r[0] == "stages"} == STAGES


def console(out: io.StringIO, width: int = 120) -> Console:
    """A console like the commands' stdout one (soft wrap), writing into `out`."""
    return Console(file=out, width=width, soft_wrap=True)


def cells(text: str) -> list[list[str]]:
    """The body rows of the tables in `text`, each as its stripped cell texts."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def test_report_table_shows_totals_failures_and_timings(journal: Path) -> None:
    """The table report: a totals table, a failures table, and the timings as one JSON line."""
    out = io.StringIO()
    reports.report_table(console(out), report_of(journal))
    text = out.getvalue()
    assert cells(text) == [
        *([state, str(count)] for state, count in TOTALS.items()),
        ["InvalidProject.NotFound", "2", "project 102 not found"],
        ["Forbidden.Access", "1", "no permission"],
    ]
    assert "failures by error code" in text
    [timings] = [line for line in text.splitlines() if line.startswith("timings: ")]
    assert json.loads(timings.removeprefix("timings: ")) == TIMINGS


def test_report_table_without_failures_has_no_failures_table(tmp_path: Path) -> None:
    """With nothing failed, the failures table is left out rather than shown empty."""
    path = write_journal(tmp_path / "j.db", [], PENDING)
    out = io.StringIO()
    reports.report_table(console(out), report_of(path))
    assert "failures" not in out.getvalue()
    assert "totals" in out.getvalue()


MARKUP_LIKE = "value [/Name] is not [bold]valid[/bold]"


def test_tables_show_server_text_as_it_is_not_as_markup(tmp_path: Path) -> None:
    """A server message that looks like rich markup is shown verbatim by status and report
    tables: it neither breaks them (a stray closing tag) nor loses its brackets."""
    ops = [MarkFailed(PENDING, "InvalidParameter", MARKUP_LIKE, None)]
    path = write_journal(tmp_path / "j.db", ops, PENDING)
    with Journal.open_readonly(path) as j:
        rows = j.rows()
    status, report = io.StringIO(), io.StringIO()
    reports.status_table(console(status, width=300), rows)
    reports.report_table(console(report, width=300), report_of(path))
    assert MARKUP_LIKE in status.getvalue()
    assert MARKUP_LIKE in report.getvalue()


def test_plan_table_shows_names_as_they_are(tmp_path: Path) -> None:
    """A task name with brackets (manifests allow them) is shown verbatim in the plan table."""
    spec = ExportSpec(TaskKey("cn-shanghai", 1, "backup [/old] [b]x"))
    out = io.StringIO()
    reports.plan_table(console(out), make_plan([spec], {}))
    assert cells(out.getvalue()) == [["cn-shanghai", "1", "backup [/old] [b]x", "create", "new"]]


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        pytest.param(LATENCIES, {"p50": 105.0, "p95": 190.0, "max": 200.0}, id="20 samples"),
        pytest.param(
            [float(i) for i in range(100, 0, -1)],  # written out of order
            {"p50": 50.5, "p95": 95.0, "max": 100.0},
            id="100 samples",
        ),
        pytest.param([1.0, 2.0], {"p50": 1.5, "p95": 2.0, "max": 2.0}, id="2 samples"),
        pytest.param([42.0], {"p50": 42.0, "p95": 42.0, "max": 42.0}, id="1 sample"),
    ],
)
def test_latency_percentiles(tmp_path: Path, latencies: list[float], expected: Any) -> None:
    """p50 is the median, p95 the nearest rank (ceil(0.95 n)-th smallest), max the largest."""
    ops = [attempt(PENDING, "ok", ms, 1000.0 + i) for i, ms in enumerate(latencies)]
    report = report_of(write_journal(tmp_path / "j.db", ops, PENDING))
    assert report.timings["latency_ms"] == expected
    assert report.timings["requests"] == len(latencies)


def test_no_latency_samples_means_no_latency_entry(tmp_path: Path) -> None:
    """Requests that never got an answer are counted, but give no latency figures at all."""
    ops = [attempt(PENDING, "timeout", None, 1000.0), attempt(PENDING, "reset", None, 1002.0)]
    report = report_of(write_journal(tmp_path / "j.db", ops, PENDING))
    assert report.timings == {
        "requests": 2,
        "by_outcome": {"reset": 1, "timeout": 1},
        "by_error_code": {},
        "first_request_at": 1000.0,
        "last_request_at": 1002.0,
        "span_s": 2.0,
    }


def test_report_of_an_untouched_journal(tmp_path: Path) -> None:
    """A journal with no requests: zero totals but for pending, no failures, no timing figures;
    the CSV is still a header and the totals."""
    path = write_journal(tmp_path / "j.db", [], PENDING)
    report = report_of(path)
    assert report.totals == {**dict.fromkeys(TOTALS, 0), "pending": 1, "total": 1}
    assert report.failures == []
    assert report.timings == {"requests": 0, "by_outcome": {}, "by_error_code": {}}
    rows = list(csv.reader(io.StringIO(reports.report_csv(report))))
    assert rows[-4 - len(STAGES) :] == [
        ["timings", "requests", "0", ""],
        ["timings", "by_outcome", "{}", ""],
        ["timings", "by_error_code", "{}", ""],
        ["waiting", "count", "0", ""],
        *(["stages", stage, "0", ""] for stage in STAGES),
    ]


def test_failures_without_a_code_are_unknown_and_list_at_most_20_tasks(tmp_path: Path) -> None:
    """A failure with an empty code is grouped as `unknown`; a group names at most 20 tasks but
    counts them all; groups of equal size are ordered by code."""
    many = [TaskKey("cn-shanghai", 200 + i, "t") for i in range(25)]
    odd = [TaskKey("cn-hangzhou", 1, "x"), TaskKey("cn-hangzhou", 2, "x")]
    ops: list[Op] = [MarkFailed(k, "Throttling.User", "slow down", None) for k in many]
    ops += [MarkFailed(odd[0], "", "?", None), MarkFailed(odd[1], "Forbidden", "no", None)]
    failures = report_of(write_journal(tmp_path / "j.db", ops, *many, *odd)).failures
    assert [(f["error_code"], f["count"], len(f["tasks"])) for f in failures] == [
        ("Throttling.User", 25, 20),
        ("Forbidden", 1, 1),
        ("unknown", 1, 1),
    ]
    assert failures[0]["tasks"][0] == "cn-shanghai/200/t"


# --- status -------------------------------------------------------------------------------------


def test_status_shows_only_the_tasks_asked_for(journal: Path) -> None:
    """status --state/--region/--project-id: only the rows in one of the states (repeatable),
    and in the region and workspace when those are given too; the fields stay the same."""

    def keys(*args: str) -> list[TaskKey]:
        code, out, _ = invoke("status", "--journal", str(journal), "--format", "json", *args)
        assert code == 0
        rows = json.loads(out)
        assert all(list(r) == list(reports.STATUS_FIELDS) for r in rows)
        return [TaskKey(r["region"], r["project_id"], r["name"]) for r in rows]

    failed = sorted((MISSING_102, MISSING_103, FORBIDDEN))
    assert keys("--state", "failed") == failed
    assert keys("--state", "failed", "--state", "pending") == sorted((*failed, PENDING))
    assert keys("--state", "failed", "--region", "cn-hangzhou") == [FORBIDDEN]
    assert keys("--project-id", "101") == [CREATED_A, CREATED_B]
    assert keys("--project-id", "101", "--project-id", "108", "--state", "exported") == [EXPORTED]
    assert keys("--state", "imported") == []


def test_status_refuses_a_state_it_does_not_know(journal: Path) -> None:
    """An unknown --state is a usage error (exit 2) naming the choices, not an empty list."""
    code, _, err = invoke("status", "--journal", str(journal), "--state", "done")
    assert code == 2
    assert "pending" in err
    assert "failed" in err


def test_status_json_rows(journal: Path) -> None:
    """status --format json: one row per task in (region, project, name) order with the documented
    fields; a failed row carries its code, message and request id."""
    code, out, _ = invoke("status", "--journal", str(journal), "--format", "json")
    assert code == 0
    rows = json.loads(out)
    keys = [TaskKey(r["region"], r["project_id"], r["name"]) for r in rows]
    assert keys == sorted(ALL_KEYS)
    assert all(list(r) == list(reports.STATUS_FIELDS) for r in rows)
    by_key = {(r["region"], r["project_id"], r["name"]): r for r in rows}
    assert by_key["cn-shanghai", 102, "a"] == {
        "project_id": 102,
        "name": "a",
        "region": "cn-shanghai",
        "state": "failed",
        "migration_id": None,
        "attempts": 0,
        "error_code": "InvalidProject.NotFound",
        "error_message": "project 102 not found",
        "request_id": "req-f1",
        "download_url": None,
        "package_path": None,
        "waiting_since": None,
        "profile": None,
        # no import target: the import leg's fields are there, empty
        **dict.fromkeys(reports.IMPORT_FIELDS),
    }
    assert by_key["cn-hangzhou", 106, "a"]["waiting_since"] == "1970-01-01T01:23:20Z"
    created = by_key["cn-shanghai", 101, "a"]
    assert (created["state"], created["migration_id"], created["attempts"]) == ("created", 9101, 20)


def test_status_table_leaves_out_the_columns_no_task_fills(tmp_path: Path) -> None:
    """The table shows a column when some task has a value there, and always the task and its
    state: a journal of pending tasks shows no error, request, package or import columns; a
    failure brings its error columns back."""
    pending = write_journal(tmp_path / "pending.db", [], PENDING)
    failed = write_journal(
        tmp_path / "failed.db", [MarkFailed(PENDING, "Forbidden", "no", "req-1")], PENDING
    )
    headers = {}
    for name, path in (("pending", pending), ("failed", failed)):
        with Journal.open_readonly(path) as j:
            out = io.StringIO()
            reports.status_table(console(out, width=400), j.rows())
        headers[name] = out.getvalue().splitlines()[2]
    for column in ("project_id", "name", "region", "state", "attempts"):
        assert column in headers["pending"]
    for column in ("error_code", "error_message", "request_id", "download_url", "import_state"):
        assert column not in headers["pending"]
    for column in ("error_code", "error_message", "request_id"):
        assert column in headers["failed"]
    assert "download_url" not in headers["failed"]


def test_status_masks_the_download_url_signature(journal: Path) -> None:
    """The presigned URL keeps its host, path and expiry, but its signature and key id are masked,
    in JSON and in the table."""
    _, out, _ = invoke("status", "--journal", str(journal), "--format", "json")
    [exported] = [r for r in json.loads(out) if r["state"] == "exported"]
    assert exported["download_url"] == SHOWN_URL
    assert "abc%2Bdef" not in out
    with Journal.open_readonly(journal) as j:
        rows = j.rows()
    table = io.StringIO()
    reports.status_table(console(table, width=400), rows)
    assert SHOWN_URL in table.getvalue()
    assert "abc%2Bdef" not in table.getvalue()
    assert "LTAI5tExample" not in table.getvalue()
    assert "9 tasks" in table.getvalue()


def test_a_table_written_to_a_pipe_keeps_each_task_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runner status | grep NAME` finds every task: off a terminal the table is not wrapped at
    80 columns, however long the name and the error; COLUMNS, when set, still rules."""
    monkeypatch.delenv("COLUMNS", raising=False)
    long_name = TaskKey("cn-shanghai", 101, "quarterly-sales-backup-of-the-finance-workspace")
    message = "the workspace is not reachable with this key: ask its owner for the role"
    path = write_journal(
        tmp_path / "j.db", [MarkFailed(long_name, "Forbidden", message, "req-1")], long_name
    )
    _, out, _ = invoke("status", "--journal", str(path))
    lines = [line for line in out.splitlines() if long_name.name in line]
    assert len(lines) == 1
    assert message in lines[0]
    assert "Forbidden" in lines[0]
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = invoke("status", "--journal", str(path))
    assert max(len(line) for line in out.splitlines()) <= 80
