"""Two accounts in one manifest through the real CLI and `runner sim`: each paced by its own
limit, side by side, every create signed by its own account's key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, SimFactory, assert_secret_absent, cli_env

pytestmark = pytest.mark.integration

KEYS = {"acct-a": ("it-key-a", "it-secret-a-9Xq"), "acct-b": ("it-key-b", "it-secret-b-4Lm")}
WORKSPACES, PER_WORKSPACE = 15, 10  # per account: 150 tasks, 300 in all
RATE = 10


def manifest(path: Path) -> Path:
    lines = ["version: 1", "defaults: {region: cn-shanghai}", "workspaces:"]
    for n, profile in enumerate(KEYS):
        for w in range(WORKSPACES):
            project_id = 1000 * (n + 1) + w
            lines.append(f"  - project_id: {project_id}")
            lines.append(f"    profile: {profile}")
            lines.append(
                "    tasks: [" + ", ".join(f"{{name: t{t}}}" for t in range(PER_WORKSPACE)) + "]"
            )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_accounts_run_side_by_side_each_at_its_own_limit(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """300 tasks over two accounts, each limited to 10 writes/s at the server, --rate 10: the
    creates of both span at most 0.65 x the serial time, none is throttled, and each account's
    tasks are created with its own key."""
    keys = [arg for key_id, secret in KEYS.values() for arg in ("--key", f"{key_id}:{secret}")]
    sim = sim_factory(*keys, "--qps", str(RATE))
    ini = tmp_path / "credentials.ini"
    ini.write_text(
        "".join(
            f"[{profile}]\ntype = access_key\naccess_key_id = {key_id}\n"
            f"access_key_secret = {secret}\n\n"
            for profile, (key_id, secret) in KEYS.items()
        )
    )
    env = {
        **cli_env(),
        "HOME": str(tmp_path),
        "ALIBABA_CLOUD_CREDENTIALS_FILE": str(ini),
        "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
    }
    args = [sys.executable, "-m", "runner", "run", str(manifest(tmp_path / "m.yaml"))]
    args += ["--journal", str(tmp_path / "j.db"), "--endpoint", sim.url, "--rate", str(RATE)]
    result = subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=55, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for _, secret in KEYS.values():
        assert_secret_absent(result.stdout, result.stderr, secret=secret)
    stats = sim.stats()
    per_account = WORKSPACES * PER_WORKSPACE
    assert stats["creates_by_key"] == {key_id: per_account for key_id, _ in KEYS.values()}
    assert stats["throttled"] == 0
    spans = stats["create_span_by_key"].values()
    window = max(last for _, last in spans) - min(first for first, _ in spans)
    serial = 2 * per_account / RATE
    assert window <= 0.65 * serial, (window, serial)
