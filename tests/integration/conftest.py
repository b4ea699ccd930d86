"""Integration fixtures: a `runner sim` subprocess, the CLI as a subprocess, manifests.

Everything talks to 127.0.0.1 only; every wait is bounded and every subprocess is killed at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.journal import Journal, JournalError

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY_ID = "it-access-key"
SECRET = "it-secret-Qz7vX2pL9w"  # must never appear in any output of the runner
SIM_READY_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0

# urllib honours *_proxy variables; the tests must talk to 127.0.0.1 directly.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 3.0) -> None:
    """Terminate, then kill if it does not go; always reap."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def assert_secret_absent(*texts: str, secret: str = SECRET) -> None:
    """The access key secret must never reach stdout, stderr or logs."""
    for text in texts:
        assert secret not in text, "the access key secret leaked into the output"


@dataclass
class Sim:
    """A `runner sim` subprocess and how to reach it."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with _DIRECT.open(f"{self.url}/_sim/stats", timeout=2.0) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data

    def creates_requested(self) -> int:
        return int(self.stats()["requests"].get("CreateExportMigration", 0))


def _wait_ready(sim: Sim) -> None:
    deadline = time.monotonic() + SIM_READY_TIMEOUT
    while time.monotonic() < deadline:
        if sim.proc.poll() is not None:
            raise RuntimeError(f"runner sim exited early: {sim.log.read_text()}")
        try:
            sim.stats()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"runner sim did not answer within {SIM_READY_TIMEOUT}s")


@dataclass
class SimFactory:
    """Starts `runner sim` subprocesses with the given fault flags; stops them all at teardown."""

    workdir: Path
    started: list[Sim] = field(default_factory=list)

    def __call__(self, *flags: str) -> Sim:
        port = free_port()
        log = self.workdir / f"sim-{port}.log"
        argv = [sys.executable, "-m", "runner", "sim", "--port", str(port)]
        argv += ["--key", f"{ACCESS_KEY_ID}:{SECRET}", *flags]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        sim = Sim(port, proc, log)
        self.started.append(sim)
        _wait_ready(sim)
        return sim

    def stop_all(self) -> None:
        for sim in self.started:
            stop_process(sim.proc)


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[SimFactory]:
    factory = SimFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def sim(request: pytest.FixtureRequest, sim_factory: SimFactory) -> Sim:
    """One simulator; its fault flags come from indirect parametrization (default: none)."""
    flags: Sequence[str] = getattr(request, "param", ())
    return sim_factory(*flags)


# --- the CLI ----------------------------------------------------------------------------------


def cli_env(secret: str = SECRET) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALIBABA_CLOUD_") and not k.lower().endswith("_proxy")
    }
    env["ALIBABA_CLOUD_ACCESS_KEY_ID"] = ACCESS_KEY_ID
    env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = secret
    env["PYTHONPATH"] = str(REPO)
    return env


@dataclass
class Cli:
    """Runs `python -m runner ...` in the test's folder and checks that no secret leaks."""

    cwd: Path
    journal: Path
    secret: str = SECRET
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runner", *args]

    def __call__(
        self, *args: str, secret: str | None = None, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        used = secret if secret is not None else self.secret
        result = subprocess.run(
            self.argv(*args),
            cwd=self.cwd,
            env=cli_env(used),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert_secret_absent(result.stdout, result.stderr, secret=used)
        return result

    def run(
        self, manifest: Path, sim_url: str, *extra: str, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        args = ["run", str(manifest), "--journal", str(self.journal), "--endpoint", sim_url]
        return self(*args, *_window(extra), *extra, timeout=timeout)

    def start_run(self, manifest: Path, sim_url: str, *extra: str, name: str) -> Background:
        """`runner run` in the background; stdout and stderr go to files (no pipe to fill)."""
        args = ["run", str(manifest), "--journal", str(self.journal), "--endpoint", sim_url]
        args += _window(extra)
        out, err = self.cwd / f"{name}.out", self.cwd / f"{name}.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                self.argv(*args, *extra), cwd=self.cwd, env=cli_env(self.secret), stdout=o, stderr=e
            )
        self.background.append(proc)
        return Background(proc, out, err)

    def start_run_until_created(
        self, manifest: Path, sim_url: str, *extra: str, name: str, created: int = 10
    ) -> Background:
        """`start_run`, returned once the journal holds `created` created tasks, the run still
        going (it must not have ended before: the test is about what stops it half way)."""
        background = self.start_run(manifest, sim_url, *extra, name=name)

        def enough() -> bool:
            assert background.proc.poll() is None, f"the run ended before {created} were created"
            counts = journal_counts(self.journal)
            return counts is not None and counts["created"] >= created

        wait_for(enough, timeout=15, what=f"{created} tasks created")
        return background

    def lose_journal(self) -> None:
        """The journal is gone, as on another machine or in a fresh container."""
        for path in self.journal.parent.glob(self.journal.name + "*"):
            path.unlink()

    def status(self) -> list[dict[str, Any]]:
        result = self("status", "--journal", str(self.journal), "--format", "json")
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def report(self) -> dict[str, Any]:
        result = self("report", "--journal", str(self.journal), "--format", "json")
        assert result.returncode == 0, result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def kill_all(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@dataclass
class Background:
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def output(self) -> tuple[str, str]:
        return self.stdout_path.read_text(), self.stderr_path.read_text()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner_cli = Cli(tmp_path, tmp_path / "j.db")
    try:
        yield runner_cli
    finally:
        runner_cli.kill_all()


# --- manifests and the journal ----------------------------------------------------------------

REGIONS = ("cn-shanghai", "cn-hangzhou", "cn-beijing")


@dataclass(frozen=True)
class Workload:
    """A generated manifest: workspaces over three regions, `per_workspace` tasks each."""

    path: Path
    projects: dict[int, str]  # project id -> region
    per_workspace: int

    @property
    def size(self) -> int:
        return len(self.projects) * self.per_workspace


def write_manifest(
    path: Path, *, workspaces: int, per_workspace: int, first: int = 50001
) -> Workload:
    lines = [
        "version: 1",
        "defaults:",
        "  region: cn-shanghai",
        "  export_mode: FULL",
        "  export_object_status: SAVED",
        "  description: integration test",
        '  name: "backup-{project_id}"',
        "workspaces:",
    ]
    projects: dict[int, str] = {}
    for i in range(workspaces):
        project_id, region = first + i, REGIONS[i % len(REGIONS)]
        projects[project_id] = region
        lines += [f"  - project_id: {project_id}", f"    label: ws-{i}", f"    region: {region}"]
        lines.append("    tasks:")
        for t in range(per_workspace):
            lines.append(f"      - name: task-{t}")
            if t % 2 == 1:
                lines += [
                    "        export_mode: INCREMENTAL",
                    "        incremental_since: 1704067200000",
                ]
    path.write_text("\n".join(lines) + "\n")
    return Workload(path, projects, per_workspace)


def journal_counts(path: Path) -> dict[str, int] | None:
    """Task counts by state, read-only while a run may be writing; None when not readable yet."""
    try:
        with Journal.open_readonly(path) as journal:
            return {state.value: n for state, n in journal.counts().items()}
    except JournalError:
        return None


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `predicate()` every 50 ms until it is true, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _window(extra: tuple[str, ...]) -> list[str]:
    """A short visibility window unless the test sets one: `runner sim` shows a create at once
    unless told to lag, so lookups after a lost answer need not wait a minute."""
    return [] if "--visibility-window" in extra else ["--visibility-window", "2"]
