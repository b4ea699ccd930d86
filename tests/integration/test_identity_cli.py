"""Temporary credentials end to end: the real CLI against `runner sim`, whose STS and
credentials URI hand out keys that expire (or are revoked), refreshed by the run as it goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    ACCESS_KEY_ID,
    REPO,
    SECRET,
    Sim,
    SimFactory,
    assert_secret_absent,
    write_manifest,
)

pytestmark = pytest.mark.integration

ROLE_ARN = "acs:ram::1234567890:role/runner-export"


def identity_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a run without a key in it: only what `extra` gives, HOME at `home`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALIBABA_CLOUD_") and not k.lower().endswith("_proxy")
    }
    env.update(HOME=str(home), PYTHONPATH=str(REPO), ALIBABA_CLOUD_ECS_METADATA_DISABLED="true")
    env.update(extra)
    return env


def run_cli(
    home: Path, manifest: Path, sim: Sim, *flags: str, env: dict[str, str], timeout: float = 55.0
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "runner", "run", str(manifest), "--endpoint", sim.url]
    argv += ["--journal", str(home / "j.db"), "--visibility-window", "2", *flags]
    result = subprocess.run(
        argv, cwd=home, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert_secret_absent(result.stdout, result.stderr)
    return result


def minted_signers(stats: dict[str, Any]) -> dict[str, int]:
    return {k: n for k, n in stats["signed_by"].items() if k.startswith("STS.")}


def ram_role_profile(home: Path, secret: str = SECRET) -> None:
    folder = home / ".aliyun"
    folder.mkdir()
    profile = {
        "name": "export",
        "mode": "RamRoleArn",
        "access_key_id": ACCESS_KEY_ID,
        "access_key_secret": secret,
        "ram_role_arn": ROLE_ARN,
        "ram_session_name": "runner-it",
        "expired_seconds": 900,
    }
    (folder / "config.json").write_text(json.dumps({"current": "export", "profiles": [profile]}))


def test_credentials_uri_keys_living_8s(sim_factory: SimFactory, tmp_path: Path) -> None:
    """8 s URI keys: 300 tasks at 10/s, each created once, >= 3 keys, <= 1 refused as expired."""
    sim = sim_factory("--sts-ttl", "8", "--allow-duplicate-names")
    work = write_manifest(tmp_path / "m.yaml", workspaces=3, per_workspace=100)
    env = identity_env(tmp_path, ALIBABA_CLOUD_CREDENTIALS_URI=f"{sim.url}/_sim/credentials")
    result = run_cli(tmp_path, work.path, sim, "--rate", "10", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = sim.stats()
    assert stats["creates_applied"] == work.size
    assert stats["duplicates_created"] == 0
    signers = minted_signers(stats)
    assert len(signers) >= 3, signers
    assert stats["signed_by"].keys() == signers.keys()  # the --key itself never signed
    assert stats["sts"].get("expired_refused", 0) <= 1
    # one fetch per key used, but for a refresh that can land as the run ends, unused
    assert len(signers) <= stats["sts"]["credentials_uri"] <= len(signers) + 1
    print(
        "identity-uri:",
        json.dumps(
            {"keys": len(signers), "expired_refused": stats["sts"].get("expired_refused", 0)}
        ),
    )


def test_keys_revoked_early_at_random(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Keys revoked at random before their expiry: every task is still created exactly once."""
    sim = sim_factory("--sts-ttl", "3", "--revoke-rate", "0.5", "--allow-duplicate-names")
    work = write_manifest(tmp_path / "m.yaml", workspaces=4, per_workspace=50)
    env = identity_env(tmp_path, ALIBABA_CLOUD_CREDENTIALS_URI=f"{sim.url}/_sim/credentials")
    result = run_cli(tmp_path, work.path, sim, "--rate", "40", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = sim.stats()
    assert stats["creates_applied"] == work.size
    assert stats["duplicates_created"] == 0
    assert stats["sts"]["keys_revoked"] >= 1
    assert stats["sts"]["expired_refused"] >= 1  # the revocations were met, and survived
    print("identity-revoked:", json.dumps(stats["sts"]), len(minted_signers(stats)))


def test_ram_role_profile_signs_everything_with_the_role(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """RamRoleArn, 900 s sessions: one AssumeRole, every DataWorks call signed by the role key."""
    sim = sim_factory()
    ram_role_profile(tmp_path)
    work = write_manifest(tmp_path / "m.yaml", workspaces=4, per_workspace=25)
    result = run_cli(tmp_path, work.path, sim, "--rate", "200", env=identity_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    stats = sim.stats()
    assert stats["creates_applied"] == work.size
    assert stats["requests"]["AssumeRole"] <= 2
    assert ACCESS_KEY_ID not in stats["signed_by"]
    dataworks = sum(n for action, n in stats["requests"].items() if action != "AssumeRole")
    assert sum(minted_signers(stats).values()) == dataworks
    print("identity-role:", json.dumps({"assume_role": stats["requests"]["AssumeRole"]}))


def test_oidc_through_the_endpoint(sim_factory: SimFactory, tmp_path: Path) -> None:
    """OIDC from the environment: AssumeRoleWithOIDC goes to --endpoint, its key signs."""
    sim = sim_factory()
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.oidc-token.sig\n")
    env = identity_env(
        tmp_path,
        ALIBABA_CLOUD_ROLE_ARN=ROLE_ARN,
        ALIBABA_CLOUD_OIDC_PROVIDER_ARN="acs:ram::1234567890:oidc-provider/ack-rrsa",
        ALIBABA_CLOUD_OIDC_TOKEN_FILE=str(token),
    )
    work = write_manifest(tmp_path / "m.yaml", workspaces=2, per_workspace=10)
    result = run_cli(tmp_path, work.path, sim, "--rate", "200", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = sim.stats()
    assert stats["sts"]["assume_role_with_oidc"] == 1
    assert stats["creates_applied"] == work.size
    assert "oidc-token" not in result.stderr


def test_refused_assume_role_exits_3_before_sending(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A role that cannot be assumed exits 3 naming mode and source; nothing reaches DataWorks."""
    sim = sim_factory()
    ram_role_profile(tmp_path, secret="not-the-" + SECRET)
    work = write_manifest(tmp_path / "m.yaml", workspaces=1, per_workspace=2)
    result = run_cli(tmp_path, work.path, sim, env=identity_env(tmp_path))
    assert result.returncode == 3
    assert "RamRoleArn from" in result.stderr
    assert "profile 'export'" in result.stderr
    assert "SignatureDoesNotMatch" in result.stderr
    assert "not-the-" not in result.stderr
    assert sim.stats()["signed_by"] == {}
