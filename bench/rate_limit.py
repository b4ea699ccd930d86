"""N requests at R/s take about N/R, with no throttled answer when R is the server's limit.

Runs `runner run` in-process against the in-process simulator, whose per-key limit is set to
exactly the rate the runner is given (signature checks on, no other fault). Each task is alone in
its workspace, which a first run lists whole before its first create there (exactly once after a
lost journal), so N tasks are 2N requests, paced together (reads and writes share one bucket
without --read-rate, as the Basic edition counts them). Reports the wall time against the ideal
(requests - 1)/R plus one round trip, the throttled answers, and, from the arrival times
recorded at the server, the achieved write rate (first to last create) and the most writes any
calendar second held. Exits non-zero when any answer was throttled, the run took more than 10 %
(plus 0.5 s) over the ideal, the achieved rate was under 0.97 R, or a calendar second held more
than R + 1 writes.

    .venv/bin/python bench/rate_limit.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
from workload import per_second, record_arrivals, span_rate, write_manifest

from runner import logs
from runner.commands.run import RunRequest, run
from runner.dataworks.actions import WRITE_ACTIONS
from runner.dataworks.credentials import Credentials
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.server import serve

CASES = ((200, 20), (300, 50))  # (tasks, rate): the Enterprise write and read limits
KEY = Key("bench-access-key", "bench-secret")
SLACK_RATIO = 1.10
SLACK_SECONDS = 0.5
MIN_ACHIEVED = 0.97  # x R, writes first to last at the server
MAX_OVER_PER_SECOND = 1  # writes a calendar second may hold above R


@dataclass(frozen=True, slots=True)
class Outcome:
    elapsed: float
    ideal: float
    requests: int  # at the server: the creates and the listings before them
    throttled: int
    applied: int
    achieved: float  # writes/s at the server, first to last
    busiest: int  # most writes in one calendar second at the server


async def one_case(folder: Path, tasks: int, rate: int) -> Outcome:
    manifest = folder / f"m{tasks}.yaml"
    write_manifest(manifest, tasks, per_workspace=1)
    config = SimConfig(keys={KEY.access_key_id: KEY}, faults=Faults(qps_limit=rate), seed=1)
    app = build_app(config)
    arrivals = record_arrivals(app, config.clock)
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
    writes = [t for t, action in arrivals.times if action in WRITE_ACTIONS]
    requests = len(arrivals.times)
    return Outcome(
        elapsed=elapsed,
        ideal=(requests - 1) / rate + round_trip,
        requests=requests,
        throttled=int(stats["throttled"]),
        applied=int(stats["creates_applied"]),
        achieved=span_rate(writes),
        busiest=max(per_second(writes).values(), default=0),
    )


async def main() -> int:
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for tasks, rate in CASES:
            o = await one_case(Path(tmp), tasks, rate)
            ok = (
                o.throttled == 0
                and o.elapsed <= o.ideal * SLACK_RATIO + SLACK_SECONDS
                and o.achieved >= MIN_ACHIEVED * rate
                and o.busiest <= rate + MAX_OVER_PER_SECOND
            )
            failed = failed or not ok
            print(
                f"{tasks} tasks ({o.requests} requests) at {rate}/s (server limit {rate}/s):"
                f" {o.elapsed:.2f} s,"
                f" ideal {o.ideal:.2f} s, ratio {o.elapsed / o.ideal:.3f}; throttled"
                f" {o.throttled}; creates applied {o.applied}; achieved {o.achieved:.2f}/s"
                f" ({o.achieved / rate:.3f} R); busiest second {o.busiest} writes"
                f"  {'ok' if ok else 'FAILED'}"
            )
    print(
        f"limit: no throttled answer, time <= ideal x {SLACK_RATIO} + {SLACK_SECONDS} s,"
        f" achieved >= {MIN_ACHIEVED} R, busiest second <= R + {MAX_OVER_PER_SECOND}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    logs.configure(stream=open(os.devnull, "w"), json=True)  # noqa: SIM115
    sys.exit(anyio.run(main))
