"""Benchmark: a run's memory grows with its concurrency, not with its number of tasks.

`run()` creates 1,000 and then 10,000 tasks, at the same concurrency and a rate so high the
limiter never waits, against the simulator served by `python -m runner sim` in a subprocess
(real keys, signatures checked), so that its state, which keeps every task, is not counted here.
tracemalloc follows this process's Python allocations through each `run()`, which is split at
the boundary between planning and sending (a wrapper around `runner.commands.run.run_phases`):

- held before sending: the manifest, the journal's row map and the plan, O(N) by design;
- the send phase: the peak above that while the worker pool runs (checked);
- the end: the final row map `run()` reads back to count states, O(N) by design.

Fails (exit 1) when the send phase of the 10x larger run peaks at more than MAX_RATIO times
the smaller one's, or when a run does not create every task. SQLite's own memory (its page
cache, bounded by its cache_size) is not seen by tracemalloc.

    .venv/bin/python bench/run_memory.py
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workload import write_manifest

from runner import logs
from runner.commands import run as run_module
from runner.commands.common import ExitCode
from runner.commands.run import RunRequest, run
from runner.dataworks.credentials import Credentials
from runner.engine import RunStats

SIZES = (1_000, 10_000)
WARM_UP = 200
CONCURRENCY = 16
RATE = 1e6  # requests/s: the limiter never makes anyone wait
TASKS_PER_WORKSPACE = 50
REGION = "cn-shanghai"
KEY_ID, KEY_SECRET = "bench-access-key-id", "bench-access-key-secret"
# The send phase holds, per worker, a request, a response and journal ops; nothing per task.
# 2x leaves room for allocator noise (the smaller run's peak is only tens of KB) while a
# leak of even ~100 bytes per task would show clearly in the 10,000-task run.
MAX_RATIO = 2.0
SIM_START_TIMEOUT = 20.0


def start_simulator(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """`runner sim` on a free loopback port, with fault flags; returns the process and its URL."""
    command = [sys.executable, "-m", "runner", "sim", "--port", "0"]
    command += ["--key", f"{KEY_ID}:{KEY_SECRET}", *flags]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    # run_forever announces the URL once it listens; wait for it a bounded time
    ready, _, _ = select.select([process.stdout], [], [], SIM_START_TIMEOUT)
    url = process.stdout.readline().strip() if ready else ""
    if not url.startswith("http://127.0.0.1:"):
        stop_simulator(process)
        raise RuntimeError(f"the simulator did not start (said {url!r})")
    return process, url


def stop_simulator(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True, slots=True)
class Measure:
    tasks: int
    held_before: int  # bytes the manifest, rows and plan hold when sending starts
    send_peak: int  # peak above that while the worker pool runs
    end_peak: int  # peak above it after the pool, while the final row map is read
    seconds: float
    stats: RunStats
    exit_code: ExitCode


async def measure(url: str, folder: Path, tasks: int, prefix: str) -> Measure:
    """One traced `run()`, split at the start and end of its send phase."""
    manifest = folder / f"{prefix}.yaml"
    write_manifest(manifest, tasks, prefix=prefix, per_workspace=TASKS_PER_WORKSPACE, region=REGION)
    request = RunRequest(
        manifests=(str(manifest),),
        journal=folder / f"{prefix}.db",
        endpoint=url,
        rate=RATE,
        concurrency=CONCURRENCY,
        progress=False,
    )
    marks: dict[str, int] = {}
    original = run_module.run_phases  # type: ignore[attr-defined]

    async def traced_execute(*args: Any, **kwargs: Any) -> RunStats:
        gc.collect()
        marks["send_start"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            return await original(*args, **kwargs)
        finally:
            marks["send_peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()

    gc.collect()
    tracemalloc.start()
    run_module.run_phases = traced_execute  # type: ignore[attr-defined]
    try:
        start = tracemalloc.get_traced_memory()[0]
        began = time.perf_counter()
        result = await run(request, credentials=Credentials(KEY_ID, KEY_SECRET))
        seconds = time.perf_counter() - began
        end_peak = tracemalloc.get_traced_memory()[1]
    finally:
        run_module.run_phases = original  # type: ignore[attr-defined]
        tracemalloc.stop()
    base = marks["send_start"]
    return Measure(
        tasks=tasks,
        held_before=base - start,
        send_peak=marks["send_peak"] - base,
        end_peak=max(0, end_peak - base),
        seconds=seconds,
        stats=result.stats,
        exit_code=result.exit_code,
    )


def kib(n: int) -> str:
    return f"{n / 1024:9.1f} KiB"


async def main_async(url: str, folder: Path) -> int:
    # a first small run, untraced in the report: imports and one-time setup land here
    await measure(url, folder, WARM_UP, "warm-up")
    small, large = [await measure(url, folder, n, f"n{n}") for n in SIZES]
    print(
        f"run(): {CONCURRENCY} workers, rate {RATE:g}/s, simulator in a subprocess "
        "(`python -m runner sim`, real keys); tracemalloc, this process only"
    )
    print(
        f"{'tasks':>8} {'held before sending':>20} {'send-phase peak':>16} "
        f"{'end (final rows)':>17} {'seconds':>8}"
    )
    for m in (small, large):
        print(
            f"{m.tasks:>8,} {kib(m.held_before):>20} {kib(m.send_peak):>16} "
            f"{kib(m.end_peak):>17} {m.seconds:8.1f}"
        )
    extra = SIZES[1] - SIZES[0]
    ratio = large.send_peak / max(1, small.send_peak)
    print(
        f"per extra task: held before sending "
        f"{(large.held_before - small.held_before) / extra:6.0f} B, "
        f"send phase {(large.send_peak - small.send_peak) / extra:6.1f} B, "
        f"final rows {(large.end_peak - small.end_peak) / extra:6.0f} B"
    )
    print(f"send-phase ratio {SIZES[1] // SIZES[0]}x tasks: {ratio:.2f}x (limit {MAX_RATIO:.1f}x)")
    failed = False
    for m in (small, large):
        if m.exit_code is not ExitCode.OK or m.stats.created != m.tasks:
            print(f"FAIL: {m.tasks} tasks: exit {int(m.exit_code)}, {m.stats}", file=sys.stderr)
            failed = True
    if ratio > MAX_RATIO:
        print("FAIL: the send phase's memory grows with the number of tasks", file=sys.stderr)
        failed = True
    if failed:
        return 1
    print("ok")
    return 0


def main() -> int:
    process, url = start_simulator()
    try:
        with open(os.devnull, "w") as devnull, tempfile.TemporaryDirectory() as folder:
            logs.configure(stream=devnull, json=True)
            return asyncio.run(main_async(url, Path(folder)))
    finally:
        stop_simulator(process)


if __name__ == "__main__":
    sys.exit(main())
