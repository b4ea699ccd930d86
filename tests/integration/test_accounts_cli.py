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


def profiles_env(home: Path) -> dict[str, str]:
    """The CLI's environment with one credentials.ini profile per account, and nothing else."""
    ini = home / "credentials.ini"
    ini.write_text(
        "".join(
            f"[{profile}]\ntype = access_key\naccess_key_id = {key_id}\n"
            f"access_key_secret = {secret}\n\n"
            for profile, (key_id, secret) in KEYS.items()
        )
    )
    return {
        **cli_env(),
        "HOME": str(home),
        "ALIBABA_CLOUD_CREDENTIALS_FILE": str(ini),
        "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
    }


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
    env = profiles_env(tmp_path)
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


def test_imports_into_another_account_are_made_with_its_own_key(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Exports in account A imported into account B (import_into's profile): every export is
    created with A's key, every import with B's, once each, and the run exits 0."""
    keys = [arg for key_id, secret in KEYS.values() for arg in ("--key", f"{key_id}:{secret}")]
    sim = sim_factory(*keys, "--export-duration", "0.3", "--import-duration", "0.3")
    env = profiles_env(tmp_path)
    path = tmp_path / "migrate.yaml"
    lines = ["version: 1", "defaults: {region: cn-shanghai}", "workspaces:"]
    for w in range(3):
        lines += [
            f"  - project_id: {3000 + w}",
            "    profile: acct-a",
            f"    import_into: {{project_id: {4000 + w}, region: cn-beijing, profile: acct-b}}",
            "    tasks: [{name: t0}, {name: t1}]",
        ]
    path.write_text("\n".join(lines) + "\n")
    args = [sys.executable, "-m", "runner", "run", str(path), "--import", "--rate", "200"]
    args += ["--journal", str(tmp_path / "j.db"), "--endpoint", sim.url]
    args += ["--poll-interval", "0.2", "--visibility-window", "2"]
    result = subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=55, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for _, secret in KEYS.values():
        assert_secret_absent(result.stdout, result.stderr, secret=secret)
    stats = sim.stats()
    key_a, key_b = KEYS["acct-a"][0], KEYS["acct-b"][0]
    imports = stats["imports"]
    assert len(imports) == 6
    assert {i["created_by"] for i in imports} == {key_b}
    assert {i["status"] for i in imports} == {"IMPORT_SUCCESS"}
    assert stats["creates_by_key"] == {key_a: 6}  # the exports; imports are listed above
