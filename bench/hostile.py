"""Benchmark: repeated runs against 15% hostile answers converge to each task created once.

`python -m runner sim --hostile-rate 0.15 --allow-duplicate-names` (another process, real keys,
signatures checked) answers 15% of the API requests with malformed, oversized or bomb answers,
applying writes first in about half of them, and accepts a taken name again, counting the copy.
`runner run` (with --start, --wait and --download) is run on one journal until it exits 0.

Fails (exit 1) when a run exits 3 or prints a traceback, when the runs do not converge within
MAX_RUNS, when any task was created twice, or when a run's peak RSS reaches MAX_RSS_MB.

    .venv/bin/python bench/hostile.py
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workload import write_manifest

TASKS = 1_000
HOSTILE_RATE = 0.15
MAX_RUNS = 10
# 89 MB measured; an error kept with its traceback held 8 MiB answers in cycles until the
# collector ran, which put the peak at 248 MB: this limit catches that again
MAX_RSS_MB = 150.0
KEY_ID, KEY_SECRET = "bench-access-key-id", "bench-access-key-secret"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class Run:
    exit_code: int
    rss_mb: float
    seconds: float
    traceback: bool


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "runner", "sim", "--port", "0"]
    command += ["--key", f"{KEY_ID}:{KEY_SECRET}", "--hostile-rate", str(HOSTILE_RATE)]
    command += ["--allow-duplicate-names", "--export-duration", "1", "--seed", "6"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20.0)
    url = process.stdout.readline().strip() if ready else ""
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"the simulator did not start (said {url!r})")
    return process, url


def stats(url: str) -> dict[str, Any]:
    with _DIRECT.open(f"{url}/_sim/stats", timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def run_once(url: str, folder: Path, manifest: Path) -> Run:
    command = [
        sys.executable, "-m", "runner", "run", str(manifest),
        "--journal", str(folder / "j.db"), "--endpoint", url, "--rate", "1000",
        "--concurrency", "16", "--timeout", "5", "--download", str(folder / "packages"),
        "--poll-interval", "1", "--wait-timeout", "120",
        "--visibility-window", "5",  # this simulator shows a create at once
    ]  # fmt: skip
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
    }
    err = folder / "stderr.log"
    began = time.perf_counter()
    with err.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    return Run(code, usage.ru_maxrss / 1024, seconds, "Traceback" in err.read_text())


def main() -> int:
    process, url = start_simulator()
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            manifest = folder / "m.yaml"
            write_manifest(manifest, TASKS, prefix="hostile")
            for _ in range(MAX_RUNS):
                runs.append(run_once(url, folder, manifest))
                if runs[-1].exit_code in (0, 3) or runs[-1].traceback:
                    break
            seen = stats(url)
    finally:
        process.terminate()
        process.wait(timeout=5)
    hostile = sum(v for k, v in seen["faults"].items() if k.startswith("hostile_"))
    print(f"{TASKS:,} tasks, {HOSTILE_RATE:.0%} hostile answers, created, started, downloaded")
    for number, run in enumerate(runs, 1):
        print(
            f"run {number}: exit {run.exit_code}, peak RSS {run.rss_mb:.0f} MB, {run.seconds:.1f} s"
        )
    print(
        f"{hostile} hostile answers ({seen['hostile_applied']} after an applied write);"
        f" creates applied {seen['creates_applied']}, duplicates {seen['duplicates_created']}"
    )
    failed = []
    if any(run.exit_code == 3 or run.traceback for run in runs):
        failed.append("a run exited 3 or printed a traceback")
    if runs[-1].exit_code != 0:
        failed.append(f"not converged after {len(runs)} runs")
    if seen["duplicates_created"] or seen["creates_applied"] != TASKS:
        failed.append("a task was created twice")
    if max(run.rss_mb for run in runs) >= MAX_RSS_MB:
        failed.append(f"peak RSS at or above {MAX_RSS_MB:.0f} MB")
    for reason in failed:
        print(f"FAIL: {reason}", file=sys.stderr)
    if not failed:
        print("ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
