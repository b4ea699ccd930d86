"""Manifests that span accounts: a profile per workspace, each account signed with its own key
and paced by its own buckets, recorded in the journal, never mixed on a rerun."""

from __future__ import annotations

import random
import textwrap
import time
from pathlib import Path

import pytest

from runner.clock import FakeClock
from runner.commands.common import ExitCode
from runner.commands.run import RunRequest, run
from runner.dataworks.credentials import Credentials
from runner.journal import Journal
from runner.manifest import ManifestError, load_manifests
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState, user_of

DEFAULT = Credentials("AK-DEFAULT", "default-secret")
ACCOUNTS = {"a": Credentials("AK-A", "secret-a"), "b": Credentials("AK-B", "secret-b")}
PER_ACCOUNT = 20


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def two_accounts(tmp_path: Path, b: str = "b") -> Path:
    lines = ["version: 1", "defaults: {region: cn-shanghai, profile: a}", "workspaces:"]
    for i in range(PER_ACCOUNT):
        lines.append(f"  - {{project_id: {100 + i}, name: t}}")
        lines.append(f"  - {{project_id: {200 + i}, name: t, profile: {b}}}")
    path = tmp_path / "m.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_profile_is_set_by_defaults_and_overridden_by_a_workspace(tmp_path: Path) -> None:
    """defaults.profile applies to every workspace; a workspace's own profile wins."""
    specs = load_manifests([two_accounts(tmp_path)]).specs
    profiles = {s.key.project_id: s.profile for s in specs}
    assert profiles[100] == "a"
    assert profiles[200] == "b"


def test_profile_on_a_task_or_malformed_is_a_positioned_problem(tmp_path: Path) -> None:
    """A task cannot name a profile (its workspace does), and a name with blanks is refused."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: {region: cn-shanghai, profile: "bad name"}
        workspaces:
          - project_id: 101
            tasks:
              - {name: a, profile: x}
        """,
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    messages = [(p.line, p.message) for p in caught.value.problems]
    assert any(line == 2 and "not a profile name" in m for line, m in messages)
    assert any(line == 6 and "belongs to the workspace" in m for line, m in messages)


def service() -> Service:
    return Service(DataWorksState(), SimStats(), Faults(), random.Random(0))


async def run_accounts(tmp_path: Path, sim: Service, manifest: Path, **flags: object) -> float:
    clock = FakeClock()
    began = clock.now
    request = RunRequest(
        manifests=(str(manifest),),
        journal=tmp_path / "j.db",
        progress=False,
        **flags,  # type: ignore[arg-type]
    )
    result = await run(
        request,
        credentials=DEFAULT,
        profiles=ACCOUNTS,
        transport=InProcessTransport(sim, now=time.time),
        clock=clock,
    )
    assert result.exit_code is ExitCode.OK, result
    return clock.now - began


@pytest.mark.anyio
async def test_each_account_is_signed_with_its_own_key_and_paced_apart(tmp_path: Path) -> None:
    """Two accounts at --rate 10 each run side by side (about half the serial time), and every
    task is created by its own account's key; the journal records each task's profile."""
    sim = service()
    took = await run_accounts(tmp_path, sim, two_accounts(tmp_path), rate=10.0, read_rate=1e6)
    serial = (2 * PER_ACCOUNT - 1) / 10.0
    assert took <= 0.65 * serial
    makers = {r.project_id: r.create_user for r in sim.state.migrations.values()}
    assert {makers[100 + i] for i in range(PER_ACCOUNT)} == {user_of("AK-A")}
    assert {makers[200 + i] for i in range(PER_ACCOUNT)} == {user_of("AK-B")}
    with Journal.open_readonly(tmp_path / "j.db") as journal:
        recorded = {row.key.project_id: row.profile for row in journal.rows()}
    assert recorded[100] == "a"
    assert recorded[200] == "b"


@pytest.mark.anyio
async def test_a_profile_changed_after_the_create_is_reported_not_mixed(tmp_path: Path) -> None:
    """A rerun whose manifest moves workspaces to another profile sends nothing for the tasks
    created with the first one and plans them as drifted."""
    sim = service()
    await run_accounts(tmp_path, sim, two_accounts(tmp_path), rate=1000.0)
    sent = sim.stats.requests["CreateExportMigration"]
    clock = FakeClock()
    request = RunRequest(
        manifests=(str(two_accounts(tmp_path, b="a")),), journal=tmp_path / "j.db", progress=False
    )
    result = await run(
        request,
        credentials=DEFAULT,
        profiles=ACCOUNTS,
        transport=InProcessTransport(sim, now=time.time),
        clock=clock,
    )
    assert sim.stats.requests["CreateExportMigration"] == sent
    assert result.planned["drifted"] == PER_ACCOUNT
