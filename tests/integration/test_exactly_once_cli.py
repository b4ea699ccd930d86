"""Exactly once through the real CLI and `runner sim`: creates that show late, listings served
in small pages, and a journal that was lost."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Cli,
    Sim,
    Workload,
    write_manifest,
)

pytestmark = pytest.mark.integration

FAST = ("--rate", "200")


def rerun_until_done(cli: Cli, workload: Workload, sim: Sim, *extra: str, runs: int = 6) -> int:
    """Run until exit 0; returns how many runs it took."""
    for n in range(1, runs + 1):
        result = cli.run(workload.path, sim.url, *FAST, *extra)
        assert result.returncode in (0, 1), result.stderr
        if result.returncode == 0:
            return n
    raise AssertionError(f"not done after {runs} runs")


def ids(cli: Cli) -> dict[tuple[int, str], int]:
    return {(r["project_id"], r["name"]): r["migration_id"] for r in cli.status()}


@pytest.mark.parametrize(
    "sim", [("--allow-duplicate-names", "--apply-lag", "1", "--reset-rate", "0.15")], indirect=True
)
def test_late_creates_and_lost_answers_end_with_each_task_once(
    cli: Cli, sim: Sim, tmp_path: Path
) -> None:
    """Creates that show 1 s late and 15% of answers lost: reruns until exit 0 leave every task
    created once, and the journal's ids are the service's."""
    workload = write_manifest(tmp_path / "lag.yaml", workspaces=8, per_workspace=5)
    runs = rerun_until_done(cli, workload, sim, "--visibility-window", "3")
    stats = sim.stats()
    assert stats["faults"].get("reset", 0) >= 1, "no answer was lost"
    assert stats["duplicates_created"] == 0
    assert stats["creates_applied"] == workload.size
    journal = ids(cli)
    assert len(set(journal.values())) == workload.size
    assert runs >= 1


@pytest.mark.parametrize("sim", [("--max-page-size", "10")], indirect=True)
def test_a_lost_journal_sends_no_create_and_adopt_existing_restores_it(
    cli: Cli, sim: Sim, tmp_path: Path
) -> None:
    """After a complete run the journal is deleted: the rerun lists each workspace (in pages of
    10), sends no create and marks every task exists (exit 1); --adopt-existing then adopts
    every one with the id the service holds."""
    workload = write_manifest(tmp_path / "w.yaml", workspaces=3, per_workspace=12)
    first = cli.run(workload.path, sim.url, *FAST)
    assert first.returncode == 0, first.stderr
    made = ids(cli)
    creates = sim.creates_requested()

    cli.lose_journal()
    again = cli.run(workload.path, sim.url, *FAST)
    assert again.returncode == 1, again.stderr
    assert "--adopt-existing" in again.stdout + again.stderr
    assert sim.creates_requested() == creates
    rows = cli.status()
    assert Counter(r["state"] for r in rows) == {"exists": workload.size}
    assert {(r["project_id"], r["name"]): r["migration_id"] for r in rows} == made
    assert sim.stats()["requests"]["ListMigrations"] >= 3 * 2  # two pages of 10 per workspace

    adopted = cli.run(workload.path, sim.url, *FAST, "--adopt-existing")
    assert adopted.returncode == 0, adopted.stderr
    assert sim.creates_requested() == creates
    assert ids(cli) == made


@pytest.mark.parametrize(
    "sim", [("--timeout-rate", "0.2", "--allow-duplicate-names")], indirect=True
)
def test_kill_9_then_a_lost_journal_still_ends_with_each_task_once(
    cli: Cli, sim: Sim, tmp_path: Path
) -> None:
    """A run killed half way, its journal deleted: reruns with --adopt-existing end with every
    task exactly once."""
    workload = write_manifest(tmp_path / "big.yaml", workspaces=10, per_workspace=4)
    background = cli.start_run_until_created(workload.path, sim.url, "--rate", "20", name="kill")
    os.kill(background.proc.pid, signal.SIGKILL)
    assert background.proc.wait(timeout=5) == -signal.SIGKILL
    cli.lose_journal()

    rerun_until_done(cli, workload, sim, "--adopt-existing", "--timeout", "0.5")
    stats = sim.stats()
    assert stats["duplicates_created"] == 0
    assert stats["creates_applied"] == workload.size
    assert len(set(ids(cli).values())) == workload.size
