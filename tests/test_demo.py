"""The rehearsal behind `runner demo`, on a small manifest and a fake clock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.clock import FakeClock
from runner.commands.common import ExitCode
from runner.commands.demo import rehearse
from runner.sim.faults import Faults

MANIFEST = """\
version: 1
defaults:
  region: cn-shanghai
  name: "demo-{project_id}"
workspaces:
"""


@pytest.mark.anyio
async def test_rehearsal_creates_each_task_once_and_the_rerun_sends_nothing(
    tmp_path: Path,
) -> None:
    """Through 5xx, applied-then-500 and reset faults, every task is made once, started once,
    exported and downloaded; the rerun sends nothing. The simulator's exports run on the fake
    clock, so nothing waits for real."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST + "".join(f"  - project_id: {100 + i}\n" for i in range(40)))
    faults = Faults(error_rate=0.1, reset_rate=0.1, applied_error_rate=0.1)
    clock = FakeClock()
    offset = time.time() - clock.now  # the simulator's epoch clock follows the fake clock
    began = time.monotonic()
    first, second, sim1, sim2 = await rehearse(
        str(manifest),
        tmp_path / "j.db",
        faults=faults,
        rate=10_000,
        clock=clock,
        packages=tmp_path / "packages",
        sim_clock=lambda: offset + clock.now,
    )
    assert time.monotonic() - began < 10  # the 2 s exports were waited for on the fake clock
    assert first.exit_code is ExitCode.OK
    assert first.states == {"exported": 40}
    assert sim1["creates_applied"] == 40
    assert sim1["duplicates_created"] == 0
    assert first.stats.adopted > 0  # lost answers were resolved by lookup, not by resending
    assert (first.stats.started, first.stats.exported, first.stats.downloaded) == (40, 40, 40)
    assert sim1["starts_applied"] == 40
    assert sim1["downloads"] == 40
    assert len(list((tmp_path / "packages").rglob("*.zip"))) == 40
    assert second.exit_code is ExitCode.OK
    assert second.stats.requests == 0
    assert sim2["creates_applied"] == 40
    assert sim2["downloads"] == 40


@pytest.mark.anyio
async def test_migration_rehearsal_imports_each_package_once_and_the_rerun_sends_nothing(
    tmp_path: Path,
) -> None:
    """The demo's migration (manifests/import.yaml with --import), through write faults and
    uploads cut short: every task with a target is imported once, from its own export, the
    export-only task ends downloaded, exit 0; the rerun sends nothing."""
    faults = Faults(reset_rate=0.1, applied_error_rate=0.1, upload_reset_rate=0.3)
    clock = FakeClock()
    offset = time.time() - clock.now
    first, second, sim1, sim2 = await rehearse(
        "manifests/import.yaml",
        tmp_path / "migration.db",
        faults=faults,
        rate=10_000,
        clock=clock,
        packages=tmp_path / "packages",
        sim_clock=lambda: offset + clock.now,
        imports=True,
    )
    assert first.exit_code is ExitCode.OK
    assert first.states == {"imported": 5, "exported": 1}
    assert (first.stats.uploaded, first.stats.imports_created, first.stats.imported) == (5, 5, 5)
    imports = sim1["imports"]
    assert isinstance(imports, list)
    assert len({(i["project_id"], i["name"]) for i in imports}) == len(imports) == 5
    assert sim1["duplicate_imports"] == 0
    assert sim1["faults"]  # the faults did happen
    assert second.exit_code is ExitCode.OK
    assert second.stats.requests == 0
    assert sim2["imports_applied"] == 5
