"""`runner run` paces by the rate the operator gave: --rate, settings.rate and --read-rate reach
the buckets (on a fake clock, against the simulator's model in process)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from runner.clock import FakeClock
from runner.commands.common import ExitCode
from runner.commands.run import RunRequest, run
from runner.dataworks.credentials import Credentials
from runner.journal import Journal, MarkInFlight, Register
from runner.models import ExportSpec, TaskKey
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState

CREDS = Credentials("AKID", "secret")
TASKS = 11


def manifest(tmp_path: Path, settings: str = "") -> str:
    lines = ["version: 1", settings, "defaults: {region: cn-shanghai, name: t}", "workspaces:"]
    lines += [f"  - project_id: {1000 + i}" for i in range(TASKS)]
    path = tmp_path / "m.yaml"
    path.write_text("\n".join(line for line in lines if line) + "\n")
    return str(path)


def service() -> Service:
    return Service(DataWorksState(), SimStats(), Faults(), random.Random(0))


async def elapsed(tmp_path: Path, sim: Service, **flags: object) -> float:
    """Fake seconds a run takes; it must succeed."""
    clock = FakeClock()
    began = clock.now
    request = RunRequest(journal=tmp_path / "j.db", progress=False, **flags)  # type: ignore[arg-type]
    transport = InProcessTransport(sim, now=time.time)
    result = await run(request, credentials=CREDS, transport=transport, clock=clock)
    assert result.exit_code is ExitCode.OK
    return clock.now - began


@pytest.mark.anyio
@pytest.mark.parametrize(("rate", "seconds"), [(2.0, 5.0), (10.0, 1.0)])
async def test_rate_flag_spaces_the_creates(tmp_path: Path, rate: float, seconds: float) -> None:
    """--rate R sends N creates (N-1)/R seconds apart in all, through the write bucket even when
    reads (each workspace's listing before its first create) have a far faster one."""
    sim = service()
    path = manifest(tmp_path)
    took = await elapsed(tmp_path, sim, manifests=(path,), rate=rate, read_rate=1e6)
    assert took == pytest.approx(seconds, abs=0.01)
    assert sim.stats.requests["CreateExportMigration"] == TASKS


@pytest.mark.anyio
async def test_settings_rate_paces_when_no_flag_is_given(tmp_path: Path) -> None:
    """settings.rate in the manifest is the rate when --rate is not given."""
    path = manifest(tmp_path, "settings: {rate: 4}")
    took = await elapsed(tmp_path, service(), manifests=(path,), read_rate=1e6)
    assert took == pytest.approx(2.5, abs=0.01)


@pytest.mark.anyio
async def test_rate_flag_overrides_settings_rate(tmp_path: Path) -> None:
    """--rate wins over settings.rate."""
    path = manifest(tmp_path, "settings: {rate: 4}")
    took = await elapsed(tmp_path, service(), manifests=(path,), rate=10.0, read_rate=1e6)
    assert took == pytest.approx(1.0, abs=0.01)


def in_flight(tmp_path: Path, sim: Service) -> None:
    """Every task of the manifest created at the service, the journal left in flight."""
    with Journal.open(tmp_path / "j.db") as journal:
        for i in range(TASKS):
            key = TaskKey("cn-shanghai", 1000 + i, "t")
            params = {"ProjectId": str(key.project_id), "Name": "t", "ExportMode": "FULL"}
            sim.state.create_export_migration(params, time.time(), "AKID")
            spec = ExportSpec(key)
            journal.apply([Register(spec), MarkInFlight(key, spec.fingerprint())])


@pytest.mark.anyio
@pytest.mark.parametrize(("read_rate", "seconds"), [(None, 10.0), (10.0, 1.0)])
async def test_read_rate_gives_reads_their_own_bucket(
    tmp_path: Path, read_rate: float | None, seconds: float
) -> None:
    """The lookups that settle unknown outcomes share --rate unless --read-rate is given."""
    sim = service()
    path = manifest(tmp_path)
    in_flight(tmp_path, sim)
    took = await elapsed(tmp_path, sim, manifests=(path,), rate=1.0, read_rate=read_rate)
    assert sim.stats.requests == {"ListMigrations": TASKS}  # only reads: every task adopted
    assert took == pytest.approx(seconds, abs=0.01)
