"""Benchmark: the peak memory of a whole `runner run` process, for 10,000 and 100,000 tasks.

`python -m runner run` creates every task of a generated manifest against the simulator
(`python -m runner sim` in another process, real keys, signatures checked), at a rate so high
the limiter never waits. The runner's peak RSS is read from the kernel (`wait4`), so everything
counts: the interpreter, the libraries, the manifest, the plan, SQLite and the workers.

Fails (exit 1) when the 100,000-task run peaks at MAX_MB or more, when its peak grows by more
than MAX_BYTES_PER_TASK per extra task over the 10,000-task run, or when a run does not exit 0.

    .venv/bin/python bench/run_rss.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from run_memory import KEY_ID, KEY_SECRET, start_simulator, stop_simulator
from workload import write_manifest

SIZES = (10_000, 100_000)
CONCURRENCY = 32
MAX_MB = 150.0
MAX_BYTES_PER_TASK = 600.0  # the manifest's specs and the plan's actions: a few hundred bytes


@dataclass(frozen=True, slots=True)
class Peak:
    tasks: int
    rss_mb: float
    seconds: float
    exit_code: int


def run_once(url: str, folder: Path, tasks: int) -> Peak:
    manifest = folder / f"m{tasks}.yaml"
    write_manifest(manifest, tasks, prefix=f"rss{tasks}")
    command = [
        sys.executable, "-m", "runner", "run", str(manifest),
        "--journal", str(folder / f"j{tasks}.db"), "--endpoint", url,
        "--rate", "1000000", "--concurrency", str(CONCURRENCY),
    ]  # fmt: skip
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
    }
    began = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    return Peak(tasks, usage.ru_maxrss / 1024, seconds, process.returncode)


def main() -> int:
    process, url = start_simulator()
    try:
        with tempfile.TemporaryDirectory() as folder:
            small, large = (run_once(url, Path(folder), n) for n in SIZES)
    finally:
        stop_simulator(process)
    print(f"`runner run` as a process, {CONCURRENCY} workers, simulator in another process")
    for p in (small, large):
        rate = p.tasks / p.seconds
        print(
            f"{p.tasks:>8,} tasks: peak RSS {p.rss_mb:6.1f} MB, {p.seconds:6.1f} s ({rate:.0f}/s)"
        )
    per_task = (large.rss_mb - small.rss_mb) * 1024 * 1024 / (large.tasks - small.tasks)
    print(f"growth per extra task: {per_task:.0f} B (limit {MAX_BYTES_PER_TASK:.0f} B)")
    print(f"limit: {MAX_MB:.0f} MB for {large.tasks:,} tasks")
    failed = False
    for p in (small, large):
        if p.exit_code != 0:
            print(f"FAIL: {p.tasks} tasks: exit {p.exit_code}", file=sys.stderr)
            failed = True
    if large.rss_mb >= MAX_MB:
        print(f"FAIL: {large.rss_mb:.1f} MB peak", file=sys.stderr)
        failed = True
    if per_task > MAX_BYTES_PER_TASK:
        print(f"FAIL: {per_task:.0f} B per task", file=sys.stderr)
        failed = True
    if failed:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
