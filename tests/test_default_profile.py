"""The run's default profile by name: taken from --profile or ALIBABA_CLOUD_PROFILE alike,
recorded in the journal either way, and never resolved when no workspace needs it."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from runner.clock import FakeClock
from runner.commands.common import ExitCode
from runner.commands.run import RunRequest, RunResult, run
from runner.dataworks.sources import default_profile
from runner.journal import Journal
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState, user_of

TASKS = 4
KEYS = {"ak": ("AK-A", "secret-a"), "akb": ("AK-B", "secret-b"), "pa": ("AK-P", "secret-p")}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose aliyun-cli file has three AK profiles and no current one, and an
    environment that holds no key and no machine source."""
    folder = tmp_path / "home" / ".aliyun"
    folder.mkdir(parents=True)
    profiles = [
        {"name": name, "mode": "AK", "access_key_id": key, "access_key_secret": secret}
        for name, (key, secret) in KEYS.items()
    ]
    (folder / "config.json").write_text(json.dumps({"profiles": profiles}))
    for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "ALIBABA_CLOUD_PROFILE",
        "ALIBABA_CLOUD_CREDENTIALS_URI",
        "ALIBABA_CLOUD_CREDENTIALS_FILE",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(folder.parent))
    return folder.parent


def manifest(tmp_path: Path, defaults: str = "region: cn-shanghai") -> Path:
    lines = ["version: 1", f"defaults: {{{defaults}}}", "workspaces:"]
    lines += [f"  - {{project_id: {100 + i}, name: t}}" for i in range(TASKS)]
    path = tmp_path / "m.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def go(sim: Service, path: Path, journal: Path, **flags: object) -> RunResult:
    request = RunRequest(
        manifests=(str(path),),
        journal=journal,
        progress=False,
        rate=1000.0,
        **flags,  # type: ignore[arg-type]
    )
    return await run(request, transport=InProcessTransport(sim, now=time.time), clock=FakeClock())


def service() -> Service:
    return Service(DataWorksState(), SimStats(), Faults(), random.Random(0))


def makers(sim: Service) -> set[str]:
    return {record.create_user for record in sim.state.migrations.values()}


def profiles(journal: Path) -> set[str | None]:
    with Journal.open_readonly(journal) as j:
        return {row.profile for row in j.rows()}


def test_the_name_comes_from_the_flag_else_the_environment_unless_it_holds_a_key() -> None:
    """--profile wins; ALIBABA_CLOUD_PROFILE names the default unless the environment holds a
    key of its own, which the chain takes first."""
    env = {"ALIBABA_CLOUD_PROFILE": "akb"}
    assert default_profile("ak", environ=env) == ("ak", False)
    assert default_profile(None, environ=env) == ("akb", True)
    keyed = {**env, "ALIBABA_CLOUD_ACCESS_KEY_ID": "i", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    assert default_profile(None, environ=keyed) == (None, False)
    assert default_profile(None, environ={}) == (None, False)


@pytest.mark.anyio
async def test_no_default_credentials_are_needed_when_every_workspace_names_its_profile(
    tmp_path: Path,
) -> None:
    """With defaults.profile set, a run on a machine with no default credentials (no key in
    the environment, no current profile) creates every task with that profile's key."""
    sim = service()
    path = manifest(tmp_path, "region: cn-shanghai, profile: pa")
    result = await go(sim, path, tmp_path / "j.db")
    assert result.exit_code is ExitCode.OK, result
    assert result.stats.created == TASKS
    assert makers(sim) == {user_of("AK-P")}


@pytest.mark.anyio
async def test_a_profile_from_the_environment_is_recorded_and_held_as_the_flag_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks made with ALIBABA_CLOUD_PROFILE=akb are recorded under akb: a rerun with
    --profile akb follows them (starts them), and one with ALIBABA_CLOUD_PROFILE=ak (another
    account) sends nothing for them and reports them drifted."""
    sim = service()
    path, journal = manifest(tmp_path), tmp_path / "j.db"
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "akb")
    first = await go(sim, path, journal)
    assert first.stats.created == TASKS
    assert profiles(journal) == {"akb"}
    assert makers(sim) == {user_of("AK-B")}
    monkeypatch.delenv("ALIBABA_CLOUD_PROFILE")
    again = await go(sim, path, journal, profile="akb", start=True)
    assert again.exit_code is ExitCode.OK, again
    assert again.planned["drifted"] == 0
    assert again.stats.started == TASKS
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "ak")
    sent = sim.stats.requests["CreateExportMigration"]
    other = await go(sim, path, journal)
    assert other.planned["drifted"] == TASKS
    assert sim.stats.requests["CreateExportMigration"] == sent
    assert makers(sim) == {user_of("AK-B")}


@pytest.mark.anyio
async def test_tasks_recorded_without_a_name_stay_followed_under_the_environment_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal from before the environment's profile was recorded (its rows name none) is
    still followed by a run whose default comes from ALIBABA_CLOUD_PROFILE: not drifted."""
    sim = service()
    path, journal = manifest(tmp_path), tmp_path / "j.db"
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK-A")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret-a")
    first = await go(sim, path, journal)
    assert profiles(journal) == {None}
    assert first.stats.created == TASKS
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID")
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "ak")
    again = await go(sim, path, journal, start=True)
    assert again.exit_code is ExitCode.OK, again
    assert again.planned["drifted"] == 0
    assert again.stats.started == TASKS  # followed along the chain, with the default's key


@pytest.mark.anyio
async def test_plan_judges_drift_against_the_profile_a_run_would_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runner plan` takes --profile and ALIBABA_CLOUD_PROFILE as a run does: tasks made under
    akb plan as done with either naming akb, and as drifted under another profile."""
    from click.testing import CliRunner

    from runner.cli import cli

    sim = service()
    path, journal = manifest(tmp_path), tmp_path / "j.db"
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "akb")
    await go(sim, path, journal)

    def drifted(*flags: str) -> int:
        args = ["plan", str(path), "--journal", str(journal), "--format", "json", *flags]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)["totals"]["drifted"])

    assert drifted() == 0
    assert drifted("--profile", "ak") == TASKS
    monkeypatch.delenv("ALIBABA_CLOUD_PROFILE")
    assert drifted("--profile", "akb") == 0
    assert drifted() == TASKS  # the default chain, no name: not what made them
