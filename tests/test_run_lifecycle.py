"""`runner run` with --start/--wait/--download against the in-process simulator, on a fake clock:
exit codes, reruns and the summary."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.clock import FakeClock
from runner.commands.common import ExitCode
from runner.commands.run import RunRequest, RunResult, run, summary_line
from runner.commands.sim import DEMO_KEY
from runner.dataworks.credentials import Credentials
from runner.journal import Journal
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.faults import Faults
from runner.sim.server import serve

CREDS = Credentials(DEMO_KEY.access_key_id, DEMO_KEY.access_key_secret)
MANIFEST = """\
version: 1
defaults:
  region: cn-shanghai
  name: "exp-{project_id}"
workspaces:
  - project_id: 101
  - project_id: 102
  - project_id: 103
"""


class Rig:
    """A simulator whose clock follows a fake clock, and runs against it."""

    def __init__(self, tmp_path: Path, url: str, clock: FakeClock, app: object) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.clock = clock
        self.app = app
        self.manifest = tmp_path / "m.yaml"
        self.manifest.write_text(MANIFEST)
        self.journal = tmp_path / "j.db"

    async def run(self, **flags: object) -> RunResult:
        values: dict[str, object] = {"rate": 1000, "progress": False, "poll_interval": 1.0}
        values.update(flags)
        request = RunRequest(
            manifests=(str(self.manifest),),
            journal=self.journal,
            endpoint=self.url,
            **values,  # type: ignore[arg-type]
        )
        return await run(request, credentials=CREDS, clock=self.clock)

    def states(self) -> set[str]:
        with Journal.open_readonly(self.journal) as j:
            return {row.state.value for row in j.rows()}


async def rig_for(tmp_path: Path, **config: object) -> AsyncIterator[Rig]:
    clock = FakeClock()
    offset = time.time() - clock.now
    sim = SimConfig(
        keys={DEMO_KEY.access_key_id: DEMO_KEY},
        clock=lambda: offset + clock.now,
        **config,  # type: ignore[arg-type]
    )
    app = build_app(sim)
    async with serve(sim, app=app) as url:
        yield Rig(tmp_path, url, clock, app)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in rig_for(tmp_path, export_duration=5.0):
        yield r


@pytest.mark.anyio
async def test_download_run_exports_and_saves_every_task(rig: Rig) -> None:
    """--download goes all the way: exit 0, every task exported, every package on disk."""
    result = await rig.run(download=rig.tmp_path / "pk")
    assert result.exit_code is ExitCode.OK
    assert rig.states() == {"exported"}
    assert len(list((rig.tmp_path / "pk").rglob("*.zip"))) == 3
    line = summary_line(result, rig.journal)
    assert "3 started, 3 exported, 3 downloaded" in line
    assert "Signature" not in line


@pytest.mark.anyio
async def test_start_on_a_rerun_starts_tasks_created_earlier(rig: Rig) -> None:
    """A first run creates only; a rerun with --start starts those tasks and creates nothing."""
    first = await rig.run()
    assert first.exit_code is ExitCode.OK
    assert rig.states() == {"created"}
    second = await rig.run(start=True)
    assert second.exit_code is ExitCode.OK
    assert second.stats.creates_sent == 0
    assert second.stats.started == 3
    assert rig.states() == {"started"}
    stats = rig.app[STATS]  # type: ignore[index]
    assert stats.starts_applied == 3


@pytest.mark.anyio
async def test_wait_timeout_exits_1_and_a_rerun_finishes(rig: Rig) -> None:
    """Exports outlasting --wait-timeout leave tasks started and exit 1; a rerun waits them out."""
    first = await rig.run(wait=True, start=True, wait_timeout=2.0)
    assert first.exit_code is ExitCode.TASKS_FAILED
    assert first.stats.still_running == 3
    assert rig.states() == {"started"}
    second = await rig.run(wait=True, start=True)
    assert second.exit_code is ExitCode.OK
    assert second.stats.started == 0  # nothing started twice
    assert rig.states() == {"exported"}


@pytest.mark.anyio
async def test_failed_exports_exit_1(tmp_path: Path) -> None:
    """Exports that end in error fail their tasks (ExportFailed) and the run exits 1."""
    async for rig in rig_for(tmp_path, export_duration=1.0, faults=Faults(export_failure_rate=1.0)):
        result = await rig.run(wait=True, start=True)
        assert result.exit_code is ExitCode.TASKS_FAILED
        assert result.stats.export_failed == 3
        with Journal.open_readonly(rig.journal) as j:
            assert {row.error_code for row in j.rows()} == {"ExportFailed"}


@pytest.mark.anyio
async def test_bad_lifecycle_flags_are_usage_errors(rig: Rig) -> None:
    """A non-positive poll interval or a negative wait timeout is refused before sending."""
    from runner.commands.common import UsageError

    with pytest.raises(UsageError, match="poll-interval"):
        await rig.run(wait=True, poll_interval=0.0)
    with pytest.raises(UsageError, match="wait-timeout"):
        await rig.run(wait=True, wait_timeout=-1.0)
