"""runner validate --online: credentials resolved and every workspace read once against the
simulator on loopback; every problem reported at once, exit 2; nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.commands.common import ExitCode
from runner.commands.preflight import PreflightRequest, preflight
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.server import serve

KEY = Key("pf-id", "pf-SECRET-5")
ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY.access_key_id,
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY.access_key_secret,
}


def manifest(tmp_path: Path) -> str:
    text = """version: 1
defaults: {region: cn-shanghai, name: t}
workspaces:
  - project_id: 101
  - project_id: 102
  - {project_id: 201, region: cn-hangzhou}
"""
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("env", "missing", "problems"),
    [
        (ENV, (), []),
        (ENV, (102,), ["cn-shanghai 102: Invalid.Tenant.ProjectNotExists"]),
        (
            {**ENV, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong"},
            (),
            ["cn-hangzhou: SignatureDoesNotMatch", "cn-shanghai: SignatureDoesNotMatch"],
        ),
    ],
)
async def test_preflight_reads_every_workspace(
    tmp_path: Path, env: dict[str, str], missing: tuple[int, ...], problems: list[str]
) -> None:
    """Each workspace is read once or its problem listed; a refused key: one problem per region."""
    config = SimConfig(
        keys={KEY.access_key_id: KEY}, faults=Faults(missing_projects=frozenset(missing))
    )
    app = build_app(config)
    async with serve(config, app=app) as url:
        request = PreflightRequest((manifest(tmp_path),), endpoint=url, rate=100.0)
        result = await preflight(request, environ=env, home=tmp_path)
    assert len(result.problems) == len(problems)
    for wanted, got in zip(problems, sorted(result.problems), strict=True):
        assert got.startswith(wanted)
    assert result.exit_code is (ExitCode.USAGE if problems else ExitCode.OK)
    assert (
        result.checked[0] == f"credentials: AK from the environment (account {KEY.access_key_id})"
    )
    stats = app[STATS]
    assert stats.creates_applied == 0
    assert set(stats.requests) == {"ListMigrations"}
    assert "wrong" not in json.dumps(result.problems)


@pytest.mark.anyio
async def test_preflight_reports_credentials_that_give_no_key(tmp_path: Path) -> None:
    """A role the STS refuses is reported with its mode and source, and nothing is read."""
    folder = tmp_path / ".aliyun"
    folder.mkdir()
    profile = {
        "name": "p",
        "mode": "RamRoleArn",
        "access_key_id": KEY.access_key_id,
        "access_key_secret": "not-the-secret",
        "ram_role_arn": "acs:ram::1:role/r",
    }
    (folder / "config.json").write_text(json.dumps({"current": "p", "profiles": [profile]}))
    config = SimConfig(keys={KEY.access_key_id: KEY})
    app = build_app(config)
    env = {"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    async with serve(config, app=app) as url:
        request = PreflightRequest((manifest(tmp_path),), endpoint=url)
        result = await preflight(request, environ=env, home=tmp_path)
    (problem,) = result.problems
    assert problem.startswith("credentials: RamRoleArn from ")
    assert "SignatureDoesNotMatch" in problem
    assert "not-the-secret" not in problem
    assert app[STATS].requests["ListMigrations"] == 0
