"""The real CLI, as a subprocess, against `runner sim` as a subprocess on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runner.journal import Journal
from tests.integration.conftest import (
    SECRET,
    Cli,
    Sim,
    SimFactory,
    Workload,
    assert_secret_absent,
    journal_counts,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

STATUS_FIELDS = {
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
    "import_region",
    "import_project_id",
    "import_name",
    "import_profile",
    "package_file",
    "import_migration_id",
    "import_state",
}
FAST = ("--rate", "200")
PROJECT_MISSING = "Invalid.Tenant.ProjectNotExists"
MISSING_ID = 50002


@pytest.fixture
def workload(tmp_path: Path) -> Workload:
    """36 tasks: 12 workspaces over 3 regions, 3 tasks each."""
    return write_manifest(tmp_path / "tasks.yaml", workspaces=12, per_workspace=3)


def states(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(row["state"]) for row in rows)


def assert_all_created(
    rows: list[dict[str, Any]], workload: Workload, *, one_sim: bool = True
) -> None:
    assert len(rows) == workload.size
    for row in rows:
        assert set(row) == STATUS_FIELDS
        assert row["state"] == "created", row
        assert isinstance(row["migration_id"], int)
        assert row["error_code"] is None
        assert row["region"] == workload.projects[row["project_id"]]
    if one_sim:  # migration ids are unique per simulator instance
        assert len({row["migration_id"] for row in rows}) == workload.size


def test_happy_path_creates_every_task_once_and_rerun_sends_nothing(
    cli: Cli, sim: Sim, workload: Workload
) -> None:
    """A clean run exits 0 with every task created once; a rerun exits 0 and sends no create."""
    first = cli.run(workload.path, sim.url, *FAST)
    assert first.returncode == 0, first.stderr
    rows = cli.status()
    assert_all_created(rows, workload)
    assert all(row["attempts"] >= 1 and row["request_id"] for row in rows)
    assert sim.stats()["creates_applied"] == workload.size
    sent = sim.creates_requested()

    second = cli.run(workload.path, sim.url, *FAST)
    assert second.returncode == 0, second.stderr
    assert sim.creates_requested() == sent
    assert sim.stats()["creates_applied"] == workload.size
    assert cli.status() == rows


@pytest.mark.parametrize(
    "sim",
    [
        (
            "--error-rate",
            "0.1",
            "--timeout-rate",
            "0.05",
            "--reset-rate",
            "0.05",
            "--applied-error-rate",
            "0.05",
            "--allow-duplicate-names",
        )
    ],
    indirect=True,
)
def test_faults_still_create_every_task_exactly_once(
    cli: Cli, sim: Sim, workload: Workload
) -> None:
    """With 5xx, lost answers and resets injected, every task is created once and none fails,
    on a simulator that would accept a name twice (so a resent create would show)."""
    result = cli.run(workload.path, sim.url, *FAST, "--timeout", "0.5")
    assert result.returncode == 0, result.stderr
    stats = sim.stats()
    assert sum(stats["faults"].values()) > 0, "the simulator injected no fault"
    assert stats["duplicates_created"] == 0
    assert stats["creates_applied"] == workload.size
    assert_all_created(cli.status(), workload)


@pytest.mark.parametrize(
    "sim", [("--timeout-rate", "0.2", "--allow-duplicate-names")], indirect=True
)
def test_kill_9_mid_run_then_rerun_never_creates_twice(cli: Cli, sim: Sim, tmp_path: Path) -> None:
    """A SIGKILLed run leaves a usable, unlocked journal; a rerun finishes with no duplicate."""
    workload = write_manifest(tmp_path / "big.yaml", workspaces=15, per_workspace=4)
    # a fifth of the creates are applied and then left unanswered (the client waits 10 s), so the
    # kill lands while some creates that the simulator applied are still in_flight in the journal
    background = cli.start_run(workload.path, sim.url, "--rate", "20", name="killed")

    def mid_run() -> bool:
        assert background.proc.poll() is None, "the run ended before it could be killed"
        counts = journal_counts(cli.journal)
        if counts is None or counts["created"] < 10:
            return False
        # a create applied and left hanging: its row stays in_flight until the client gives up
        return int(sim.stats()["faults"].get("timeout", 0)) >= 1

    wait_for(mid_run, timeout=15, what="10 tasks created and a create left unanswered")
    os.kill(background.proc.pid, signal.SIGKILL)
    assert background.proc.wait(timeout=5) == -signal.SIGKILL
    assert_secret_absent(*background.output())

    counts = journal_counts(cli.journal)
    assert counts is not None
    assert counts["created"] < workload.size, counts
    assert counts["in_flight"] >= 1, counts
    with Journal.open(cli.journal) as journal:  # opens, and the lock is free
        assert len(journal.rows()) == workload.size

    rerun = cli.run(workload.path, sim.url, *FAST, "--timeout", "0.5")
    assert rerun.returncode == 0, rerun.stderr
    stats = sim.stats()
    assert stats["duplicates_created"] == 0
    assert stats["creates_applied"] == workload.size
    assert stats["requests"].get("ListMigrations", 0) >= 1, "in_flight rows must be looked up"
    assert_all_created(cli.status(), workload)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_mid_run_stops_as_ctrl_c_does(
    cli: Cli, sim: Sim, tmp_path: Path, stop: signal.Signals
) -> None:
    """A run told to stop (a service manager's SIGTERM, a closed terminal's SIGHUP) cancels its
    workers, keeps what it did, and exits 130 saying so; a rerun then ends the job, once each."""
    workload = write_manifest(tmp_path / "big.yaml", workspaces=15, per_workspace=4)
    background = cli.start_run_until_created(workload.path, sim.url, "--rate", "20", name="stop")
    os.kill(background.proc.pid, stop)
    assert background.proc.wait(timeout=10) == 130
    _, err = background.output()
    assert "interrupted" in err
    assert "Traceback" not in err
    counts = journal_counts(cli.journal)
    assert counts is not None
    assert counts["created"] < workload.size, counts
    rerun = cli.run(workload.path, sim.url, *FAST)
    assert rerun.returncode == 0, rerun.stderr
    stats = sim.stats()
    assert stats["duplicates_created"] == 0
    assert stats["creates_applied"] == workload.size


def test_bad_manifest_exits_2_with_positions_and_sends_nothing(
    cli: Cli, sim: Sim, tmp_path: Path
) -> None:
    """An invalid manifest: validate and run exit 2, every problem as FILE:LINE:COL, no request."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\n"
        "workspaces:\n"
        "  - project_id: 1001\n"
        "    colour: blue\n"
        "    tasks:\n"
        "      - name: a\n"
        "        export_mode: SIDEWAYS\n"
        "      - name: b\n"
        "        export_mode: INCREMENTAL\n"
    )
    position = re.compile(rf"^{re.escape(str(bad))}:\d+:\d+: \S.*$")
    for result in (cli("validate", str(bad)), cli.run(bad, sim.url, *FAST)):
        assert result.returncode == 2, result.stderr
        problems = [line for line in result.stderr.splitlines() if position.match(line)]
        assert len(problems) >= 3, result.stderr
        assert any(":4:" in line and "colour" in line for line in problems), problems
        assert any("SIDEWAYS" in line for line in problems), problems
    stats = sim.stats()
    assert stats["requests"] == {}
    assert stats["creates_applied"] == 0


def test_wrong_secret_exits_3_creates_nothing_and_never_logs_a_secret(
    cli: Cli, sim: Sim, workload: Workload
) -> None:
    """A rejected signature stops the run (exit 3), everything stays pending, no secret is shown."""
    wrong = "it-wrong-secret-Hs8dK3"
    args = ["run", str(workload.path), "--journal", str(cli.journal), "--endpoint", sim.url]
    result = cli(*args, *FAST, secret=wrong)
    assert result.returncode == 3, result.stderr
    assert "SignatureDoesNotMatch" in result.stderr
    assert_secret_absent(result.stdout, result.stderr, secret=SECRET)
    stats = sim.stats()
    assert stats["creates_applied"] == 0
    assert stats["auth_failures"] >= 1
    rows = cli.status()
    assert len(rows) == workload.size
    assert states(rows) == {"pending": workload.size}


@pytest.mark.parametrize("sim", [("--daily-quota", "20")], indirect=True)
def test_daily_quota_stops_the_run_and_a_fresh_quota_finishes_it(
    cli: Cli, sim: Sim, sim_factory: SimFactory, workload: Workload
) -> None:
    """Throttling.Api.Risk after 20 calls (12 listings, creates): exit 3, what was created is
    recorded, the rest pending; a new day completes."""
    result = cli.run(workload.path, sim.url, *FAST)
    assert result.returncode == 3, result.stderr
    assert "Throttling.Api.Risk" in result.stderr
    made = sim.stats()["creates_applied"]
    assert 1 <= made < 20
    assert states(cli.status()) == {"created": made, "pending": workload.size - made}

    fresh = sim_factory()
    rerun = cli.run(workload.path, fresh.url, *FAST)
    assert rerun.returncode == 0, rerun.stderr
    assert fresh.stats()["creates_applied"] == workload.size - made
    assert_all_created(cli.status(), workload, one_sim=False)


@pytest.mark.parametrize("sim", [("--missing-project", str(MISSING_ID))], indirect=True)
def test_missing_project_fails_its_tasks_and_only_failed_retries_just_them(
    cli: Cli, sim: Sim, workload: Workload
) -> None:
    """A missing workspace: its tasks fail (exit 1), the run says why as soon as it meets the
    error (a warning) and again in its summary, the report groups them, --only-failed retries
    only them."""
    result = cli.run(workload.path, sim.url, *FAST)
    assert result.returncode == 1, result.stderr
    warnings = [line for line in result.stderr.splitlines() if '"request failed"' in line]
    assert len(warnings) == 1
    assert PROJECT_MISSING in warnings[0]
    assert f"request errors: {PROJECT_MISSING} x" in result.stdout
    rows = cli.status()
    failed = [row for row in rows if row["project_id"] == MISSING_ID]
    others = [row for row in rows if row["project_id"] != MISSING_ID]
    assert len(failed) == workload.per_workspace
    assert all(row["state"] == "failed" for row in failed)
    assert all(row["error_code"] == PROJECT_MISSING and row["error_message"] for row in failed)
    assert all(row["state"] == "created" for row in others)
    applied = sim.stats()["creates_applied"]
    assert applied == workload.size - workload.per_workspace

    report = cli.report()
    assert report["totals"]["failed"] == workload.per_workspace
    groups = {group["error_code"]: group for group in report["failures"]}
    assert set(groups) == {PROJECT_MISSING}
    assert groups[PROJECT_MISSING]["count"] == workload.per_workspace

    sent = sim.creates_requested()
    retry = cli.run(workload.path, sim.url, *FAST, "--only-failed")
    assert retry.returncode == 1, retry.stderr
    # each failed task is tried again (looked up by name, or resent), and nothing else is sent
    assert sim.creates_requested() <= sent + workload.per_workspace
    assert sim.stats()["creates_applied"] == applied
    after = cli.status()
    assert [row for row in after if row["project_id"] != MISSING_ID] == others
    failed_after = [row for row in after if row["project_id"] == MISSING_ID]
    attempts = {row["name"]: row["attempts"] for row in failed}
    for row in failed_after:
        assert row["state"] == "failed", row
        assert row["error_code"] == PROJECT_MISSING, row
        assert row["attempts"] > attempts[row["name"]], row


def test_second_run_on_a_busy_journal_is_refused(cli: Cli, sim: Sim, workload: Workload) -> None:
    """While one run holds the journal, another on the same journal exits 2 naming the journal."""
    slow = cli.start_run(workload.path, sim.url, "--rate", "2", name="slow")
    try:
        wait_for(
            lambda: (journal_counts(cli.journal) or {}).get("created", 0) >= 1,
            timeout=15,
            what="the slow run to hold the journal",
        )
        assert slow.proc.poll() is None
        second = cli.run(workload.path, sim.url, *FAST)
        assert second.returncode == 2, second.stderr
        assert str(cli.journal) in second.stderr
        assert f"runner pid {slow.proc.pid}" in second.stderr
        assert "--rate 2" in second.stderr  # the other run's command line names it
        assert slow.proc.poll() is None, "the refused run disturbed the first one"
    finally:
        cli.kill_all()
    assert_secret_absent(*slow.output())


def test_plain_http_to_a_non_loopback_endpoint_is_refused(cli: Cli, workload: Workload) -> None:
    """--endpoint http://10.1.2.3:80 (plain http, not loopback) exits 2 before sending anything."""
    result = cli.run(workload.path, "http://10.1.2.3:80", *FAST, timeout=15)
    assert result.returncode == 2, result.stderr
    assert "10.1.2.3" in result.stderr
    counts = journal_counts(cli.journal)
    if counts is not None:  # the journal need not exist; if it does, nothing was attempted
        assert counts["created"] == counts["in_flight"] == counts["failed"] == 0
