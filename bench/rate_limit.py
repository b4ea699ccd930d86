"""N tasks at R/s take about N/R, with no throttled answer when R is the server's limit.

Runs `runner run` in-process against the in-process simulator, whose per-key limit is set to
exactly the rate the runner is given (signature checks on, no other fault). Reports the wall
time against the ideal (N - 1)/R plus one round trip, and the throttled answers. Exits non-zero
when any answer was throttled or the run took more than 10 % (plus 0.5 s) over the ideal.

    .venv/bin/python bench/rate_limit.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
from workload import write_manifest

from runner import logs
from runner.commands.run import RunRequest, run
from runner.dataworks.credentials import Credentials
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.server import serve

CASES = ((200, 20), (300, 50))  # (tasks, rate): the Enterprise write and read limits
KEY = Key("bench-access-key", "bench-secret")
SLACK_RATIO = 1.10
SLACK_SECONDS = 0.5


async def one_case(folder: Path, tasks: int, rate: int) -> tuple[float, float, int, int]:
    manifest = folder / f"m{tasks}.yaml"
    write_manifest(manifest, tasks, per_workspace=1)
    config = SimConfig(keys={KEY.access_key_id: KEY}, faults=Faults(qps_limit=rate), seed=1)
    app = build_app(config)
    credentials = Credentials(KEY.access_key_id, KEY.access_key_secret)
    async with serve(config, app=app) as url:
        request = RunRequest(
            manifests=(str(manifest),),
            journal=folder / f"j{tasks}.db",
            endpoint=url,
            rate=float(rate),
            concurrency=16,
            progress=False,
        )
        started = time.perf_counter()
        result = await run(request, credentials=credentials)
        elapsed = time.perf_counter() - started
    stats = app[STATS].snapshot()
    if result.states != {"created": tasks}:
        raise SystemExit(f"not every task was created: {result.states}")
    round_trip = 0.01  # loopback; the first request's answer ends the run at most this late
    ideal = (tasks - 1) / rate + round_trip
    return elapsed, ideal, int(stats["throttled"]), int(stats["creates_applied"])


async def main() -> int:
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for tasks, rate in CASES:
            elapsed, ideal, throttled, applied = await one_case(Path(tmp), tasks, rate)
            ratio = elapsed / ideal
            ok = throttled == 0 and elapsed <= ideal * SLACK_RATIO + SLACK_SECONDS
            failed = failed or not ok
            print(
                f"{tasks} tasks at {rate}/s (server limit {rate}/s): {elapsed:.2f} s,"
                f" ideal {ideal:.2f} s, ratio {ratio:.3f}; throttled {throttled};"
                f" creates applied {applied}  {'ok' if ok else 'FAILED'}"
            )
    print(f"limit: no throttled answer, time <= ideal x {SLACK_RATIO} + {SLACK_SECONDS} s")
    return 1 if failed else 0


if __name__ == "__main__":
    logs.configure(stream=open(os.devnull, "w"), json=True)  # noqa: SIM115
    sys.exit(anyio.run(main))
