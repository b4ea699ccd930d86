"""A --rate 3x the account's real limit: the limiter learns the limit instead of being refused.

Runs `runner run` in-process, 400 tasks at `--rate 24`, against the in-process simulator with its
per-key limit at 8 requests/s (signature checks on, no other fault). The simulator's limit is a
token bucket per access key: 8 tokens, refilled at 8/s, a refused request costs none; it counts
every request, reads too. Each task is alone in its workspace, which a first run lists whole
before its first create there (exactly once after a lost journal): 400 reads and 400 creates,
paced by one bucket as the Basic edition counts them.

Reports the throttled answers as a share of all requests the server saw, the requests the server
took per second over the whole run (wall time of `run()`), the creates per second over the run
and between the first and last create request at the server, and the create requests of the
busiest calendar second. Exits non-zero when more than 10 % of the requests were throttled, when
the server took fewer than 0.8 x 8 = 6.4 requests/s over the run, or when not every task was
created.

    .venv/bin/python bench/adaptive_rate.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
from workload import per_second, record_arrivals, span_rate, write_manifest

from runner import logs
from runner.commands.run import RunRequest, run
from runner.dataworks.credentials import Credentials
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.server import serve

TASKS = 400
LIMIT = 8  # requests/s per key at the server
RATE = 24.0  # --rate: three times the real limit
CONCURRENCY = 16
KEY = Key("bench-access-key", "bench-secret")
MAX_THROTTLED = 0.10  # of all requests
MIN_ACHIEVED = 0.8  # x LIMIT, requests taken/s over the run's wall time
CREATE = "CreateExportMigration"


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = folder / "m.yaml"
        write_manifest(manifest, TASKS, per_workspace=1)
        config = SimConfig(keys={KEY.access_key_id: KEY}, faults=Faults(qps_limit=LIMIT), seed=1)
        app = build_app(config)
        arrivals = record_arrivals(app, config.clock)
        credentials = Credentials(KEY.access_key_id, KEY.access_key_secret)
        async with serve(config, app=app) as url:
            request = RunRequest(
                manifests=(str(manifest),),
                journal=folder / "j.db",
                endpoint=url,
                rate=RATE,
                concurrency=CONCURRENCY,
                progress=False,
            )
            started = time.perf_counter()
            result = await run(request, credentials=credentials)
            elapsed = time.perf_counter() - started
    stats = app[STATS].snapshot()
    requests = sum(stats["requests"].values())
    throttled = int(stats["throttled"])
    created = result.states.get("created", 0)
    share = throttled / requests if requests else 0.0
    achieved = (requests - throttled) / elapsed  # the limit counts requests, reads too
    creates = arrivals.of(CREATE)
    span = max(creates) - min(creates) if len(creates) > 1 else 0.0
    busiest = max(per_second(creates).values(), default=0)
    ok = (
        result.states == {"created": TASKS}
        and share <= MAX_THROTTLED
        and achieved >= MIN_ACHIEVED * LIMIT
    )
    print(
        f"{TASKS} tasks at --rate {RATE:g} against a server limit of {LIMIT}/s:"
        f" {elapsed:.2f} s (ideal {(requests - throttled) / LIMIT:.2f} s at the limit)"
    )
    print(
        f"  requests {requests}, throttled {throttled} ({share:.1%});"
        f" runner counted {result.stats.requests} requests, {result.stats.throttled} throttled"
    )
    print(
        f"  requests taken: {achieved:.2f}/s over the run ({achieved / LIMIT:.3f} x limit),"
        f" {requests - len(creates)} of them listings (one per new workspace, and retries)"
    )
    print(
        f"  created {created}: {created / elapsed:.2f}/s over the run,"
        f" {(created - 1) / span if span else 0.0:.2f}/s between the first and the last create"
        f" request at the server ({span_rate(creates):.2f} requests/s);"
        f" busiest second {busiest} create requests"
    )
    print(
        f"limit: throttled <= {MAX_THROTTLED:.0%} of requests,"
        f" >= {MIN_ACHIEVED * LIMIT:.1f} requests taken/s ({MIN_ACHIEVED} x limit)"
        f"  {'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    logs.configure(stream=open(os.devnull, "w"), json=True)  # noqa: SIM115
    sys.exit(anyio.run(main))
