"""Benchmark: exactly once against a service that applies creates late and loses answers.

`runner sim --allow-duplicate-names --apply-lag 20 --reset-rate 0.15`: every accepted create
shows in reads (and takes its name) 20 s after it arrived, 15% of the answers to writes are lost
after the create was applied, and a name taken twice is accepted and counted. `runner run` with
its default visibility window (60 s) is run on one journal until it exits 0.

Fails (exit 1) unless that ends with 0 duplicates, every task created once, and the journal's
migration ids equal to the simulator's (one distinct id per task).

    .venv/bin/python bench/apply_lag.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from run_memory import KEY_ID, KEY_SECRET, start_simulator, stop_simulator
from workload import write_manifest

TASKS = 200
MAX_RUNS = 5
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def stats(url: str) -> dict[str, Any]:
    with _DIRECT.open(f"{url}/_sim/stats", timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def runner(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
    }
    command = [sys.executable, "-m", "runner", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def main() -> int:
    flags = ("--allow-duplicate-names", "--apply-lag", "20", "--reset-rate", "0.15")
    process, url = start_simulator(*flags)
    try:
        with tempfile.TemporaryDirectory() as folder:
            manifest, journal = Path(folder) / "m.yaml", Path(folder) / "j.db"
            write_manifest(manifest, TASKS, per_workspace=20)
            runs: list[tuple[int, float]] = []
            for _ in range(MAX_RUNS):
                began = time.perf_counter()
                done = runner("run", str(manifest), "--journal", str(journal), "--endpoint", url,
                              "--rate", "50", "--timeout", "2")  # fmt: skip
                runs.append((done.returncode, time.perf_counter() - began))
                if done.returncode not in (0, 1):
                    print(done.stderr[-2000:], file=sys.stderr)
                    return 1
                if done.returncode == 0:
                    break
            rows = json.loads(
                runner("status", "--journal", str(journal), "--format", "json").stdout
            )
            seen = stats(url)
    finally:
        stop_simulator(process)
    ids = {row["migration_id"] for row in rows}
    lost = seen["faults"].get("reset", 0)
    print(f"{TASKS} tasks; apply lag 20 s, 15% of write answers lost, duplicate names accepted")
    for n, (code, seconds) in enumerate(runs, 1):
        print(f"run {n}: exit {code} in {seconds:.1f} s")
    print(
        f"answers lost: {lost}; creates applied: {seen['creates_applied']};"
        f" duplicates: {seen['duplicates_created']}; distinct ids in the journal: {len(ids)}"
    )
    ok = (
        runs[-1][0] == 0
        and seen["duplicates_created"] == 0
        and seen["creates_applied"] == TASKS
        and len(ids) == TASKS
        and all(row["state"] == "created" for row in rows)
    )
    print("ok" if ok else "FAIL: not every task created exactly once")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
