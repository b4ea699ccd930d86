"""A daily quota smaller than the work: each day's rerun makes progress, because what a day's
listings showed is kept, so the next day's quota goes to creates rather than the same listings."""

from __future__ import annotations

from pathlib import Path

from runner.journal import Journal
from tests.integration.conftest import Cli, SimFactory, write_manifest

QUOTA = 30
WORKSPACES = 40  # one task each: 40 listings and 40 creates, 80 requests at 30 a day


def test_a_spent_daily_quota_is_taken_up_again_the_next_day_without_listing_again(
    cli: Cli, sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Day one spends its quota listing 30 workspaces and creates nothing (exit 3); each later
    day (a fresh quota) lists only what was never listed and creates the rest: done on day
    three, every task once, no workspace listed twice."""
    workload = write_manifest(tmp_path / "m.yaml", workspaces=WORKSPACES, per_workspace=1)
    codes: list[int] = []
    created = 0
    for _day in range(4):
        sim = sim_factory("--daily-quota", str(QUOTA))  # a new day: the quota is whole again
        result = cli.run(workload.path, sim.url, "--rate", "200")
        codes.append(result.returncode)
        stats = sim.stats()
        assert stats["duplicates_created"] == 0
        created += int(stats["creates_applied"])
        if result.returncode == 0:
            break
    assert codes == [3, 3, 0], codes
    assert created == WORKSPACES
    with Journal.open_readonly(cli.journal) as journal:
        listings = [a for a in journal.attempts() if a.action == "list" and a.outcome == "ok"]
    assert len(listings) == WORKSPACES  # each workspace listed once, over the three days
