"""runner validate --online: every profile's credentials and every workspace are checked with
reads only, every problem reported at once."""

from __future__ import annotations

import random
import textwrap
import time
from pathlib import Path

import pytest

from runner.clock import FakeClock
from runner.commands.preflight import Probe, preflight
from runner.dataworks.credentials import Credentials
from runner.manifest import load_manifests
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState

MANIFEST = """\
version: 1
defaults: {region: cn-shanghai, name: t}
workspaces:
  - {project_id: 101}
  - {project_id: 102, profile: a}
  - {project_id: 103, profile: lost}
  - {project_id: 404}
"""


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials come only from what a test gives: no environment, an empty home."""
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.anyio
async def test_preflight_reports_every_profile_and_workspace_at_once(tmp_path: Path) -> None:
    """A missing workspace and a profile without credentials both fail; the rest pass; nothing
    is written to the service."""
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(MANIFEST))
    manifest = load_manifests([path])
    state = DataWorksState(missing_projects=frozenset({404}))
    sim = Service(state, SimStats(), Faults(), random.Random(0))
    given = {None: Credentials("AK-D", "sd", source="test"), "a": Credentials("AK-A", "sa")}
    findings = await preflight(
        manifest,
        Probe(),
        credentials=given,
        transport=InProcessTransport(sim, now=time.time),
        clock=FakeClock(),
    )
    failed = {f.where: f.message for f in findings if not f.ok}
    passed = {f.where for f in findings if f.ok}
    assert set(failed) == {"profile lost", "cn-shanghai/404"}
    assert "Invalid.Tenant.ProjectNotExists" in failed["cn-shanghai/404"]
    assert {"cn-shanghai/101", "cn-shanghai/102 (profile a)", "profile a"} <= passed
    assert set(sim.stats.requests) == {"ListMigrations"}
    assert "sd" not in repr(findings)


def test_validate_online_exits_2_naming_what_would_fail(tmp_path: Path) -> None:
    """Through the CLI: a profile that cannot be resolved is a FAIL line and exit 2."""
    from click.testing import CliRunner

    from runner.cli import cli

    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\ndefaults: {region: cn-shanghai, name: t, profile: nope}\n"
        "workspaces:\n  - {project_id: 101}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path), "--online"])
    assert result.exit_code == 2
    assert "FAIL profile nope" in result.stderr
    assert "1 failed" in result.stdout


IMPORT_MANIFEST = """\
version: 1
defaults: {region: cn-shanghai, name: t}
workspaces:
  - {project_id: 101, import_into: {project_id: 201, region: cn-beijing, profile: b}}
  - {project_id: 102, import_into: {project_id: 404, profile: c}}
"""


@pytest.mark.anyio
async def test_preflight_checks_import_targets_with_their_profiles(tmp_path: Path) -> None:
    """Import targets are read too, for their import tasks, with their own profile's
    credentials: a target that does not answer and a target profile without credentials fail."""
    path = tmp_path / "m.yaml"
    path.write_text(IMPORT_MANIFEST)
    manifest = load_manifests([path])
    state = DataWorksState(missing_projects=frozenset({404}))
    sim = Service(state, SimStats(), Faults(), random.Random(0))
    given = {None: Credentials("AK-D", "sd"), "b": Credentials("AK-B", "sb")}
    findings = await preflight(
        manifest,
        Probe(),
        credentials=given,
        transport=InProcessTransport(sim, now=time.time),
        clock=FakeClock(),
    )
    failed = {f.where for f in findings if not f.ok}
    passed = {f.where: f.message for f in findings if f.ok}
    assert failed == {"profile c"}  # its target is not read: it has no credentials
    assert passed["cn-beijing/201 (profile b) (import target)"] == "answers (0 import tasks)"
    assert {"cn-shanghai/101", "cn-shanghai/102", "profile b"} <= set(passed)
    assert set(sim.stats.requests) == {"ListMigrations"}
