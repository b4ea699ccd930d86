"""The real CLI against `runner sim --hostile-rate 0.15`: repeated runs on one journal converge
to every task created exactly once; no run exits 3 or prints a traceback; peak RSS stays low."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Cli,
    SimFactory,
    assert_secret_absent,
    cli_env,
    write_manifest,
)

pytestmark = pytest.mark.integration

MAX_RUNS = 8
MAX_RSS_MB = 300.0
RUN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Measured:
    exit_code: int
    peak_rss_mb: float
    stdout: str
    stderr: str


def measured_run(cli: Cli, args: list[str], name: str) -> Measured:
    """One `runner run` as a process, killed after RUN_TIMEOUT; its peak RSS as the kernel
    counted it (wait4), so everything counts: interpreter, libraries, SQLite, buffers."""
    out, err = cli.cwd / f"{name}.out", cli.cwd / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            cli.argv(*args), cwd=cli.cwd, env=cli_env(), stdout=stdout, stderr=stderr
        )
    timer = threading.Timer(RUN_TIMEOUT, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, usage.ru_maxrss / 1024, out.read_text(), err.read_text())


def test_repeated_runs_against_hostile_answers_converge_to_each_task_once(
    cli: Cli, sim_factory: SimFactory, tmp_path: Path
) -> None:
    """15% of the simulator's answers are hostile (malformed, oversized, bombs; writes applied
    first in about half of them) and it accepts a taken name again, counting the copy. Reruns on
    the same journal end with every task created, none twice, each run exiting 0 or 1."""
    sim = sim_factory("--hostile-rate", "0.15", "--allow-duplicate-names", "--seed", "13")
    workload = write_manifest(tmp_path / "tasks.yaml", workspaces=20, per_workspace=6)
    args = ["run", str(workload.path), "--journal", str(cli.journal), "--endpoint", sim.url]
    args += ["--rate", "200", "--timeout", "5", "--concurrency", "8", "--visibility-window", "2"]
    runs: list[Measured] = []
    for number in range(MAX_RUNS):
        run = measured_run(cli, args, f"run{number}")
        runs.append(run)
        assert run.exit_code in (0, 1), run.stderr[-2000:]
        assert "Traceback" not in run.stderr + run.stdout
        assert_secret_absent(run.stdout, run.stderr)
        assert run.peak_rss_mb < MAX_RSS_MB
        if run.exit_code == 0:
            break
    assert runs[-1].exit_code == 0, f"not converged after {len(runs)} runs"
    stats = sim.stats()
    rows = cli.status()
    assert len(rows) == workload.size
    assert all(row["state"] == "created" for row in rows)
    assert len({row["migration_id"] for row in rows}) == workload.size
    assert stats["duplicates_created"] == 0
    assert stats["creates_applied"] == workload.size
    hostile = {k: v for k, v in stats["faults"].items() if k.startswith("hostile_")}
    assert sum(hostile.values()) > 0
    assert stats["hostile_applied"] > 0
    print(  # the numbers behind the claim, shown with -s
        f"hostile convergence: {len(runs)} runs (exit codes {[r.exit_code for r in runs]}),"
        f" {stats['duplicates_created']} duplicates, {sum(hostile.values())} hostile answers"
        f" ({stats['hostile_applied']} after an applied write), peak RSS"
        f" {max(r.peak_rss_mb for r in runs):.0f} MB"
    )
