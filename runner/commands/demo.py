"""runner demo: a whole rehearsal on the in-process simulator, with faults, then a rerun."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from rich.table import Table

from runner.clock import Clock
from runner.commands.common import ExitCode, UsageError, stdout
from runner.commands.run import RunRequest, RunResult, run
from runner.commands.sim import DEMO_KEY
from runner.dataworks.credentials import Credentials
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.faults import Faults
from runner.sim.server import serve

DEMO_JOURNAL = Path(".runner") / "demo" / "journal.db"
# Requests/s, enforced by the simulator too: twice the Enterprise write limit, so that the
# rehearsal (create, start, poll: about 3 requests per task) stays short.
DEMO_RATE = 40.0
DEMO_EXPORT_DURATION = 2.0  # seconds an export takes on the demo's simulator
DEMO_POLL_INTERVAL = 0.5

# Faults a real run meets now and then, made frequent enough to be seen in one rehearsal.
DEMO_FAULTS = Faults(
    qps_limit=int(DEMO_RATE),
    error_rate=0.03,
    timeout_rate=0.02,
    reset_rate=0.02,
    applied_error_rate=0.02,
    latency=0.02,
    latency_jitter=0.03,
    hang_seconds=5.0,
)


async def rehearse(
    manifest: str,
    journal: Path,
    *,
    faults: Faults = DEMO_FAULTS,
    timeout: float = 1.5,
    rate: float = DEMO_RATE,
    clock: Clock | None = None,
    packages: Path | None = None,
    export_duration: float = DEMO_EXPORT_DURATION,
    poll_interval: float = DEMO_POLL_INTERVAL,
    sim_clock: Callable[[], float] = time.time,
) -> tuple[RunResult, RunResult, dict[str, object], dict[str, object]]:
    """Run the manifest twice against a fresh simulator (create, start, wait, download into
    `packages`, beside the journal by default); return both results and the sim's stats.

    `sim_clock` is the simulator's epoch clock: exports end on it, so a test on a FakeClock
    passes one that follows the fake clock, and nothing waits for real."""
    credentials = Credentials(DEMO_KEY.access_key_id, DEMO_KEY.access_key_secret)
    # names are not unique on this simulator, so a task created twice would show, not be refused
    config = SimConfig(
        keys={DEMO_KEY.access_key_id: DEMO_KEY},
        faults=faults,
        seed=7,
        unique_names=False,
        export_duration=export_duration,
        clock=sim_clock,
    )
    app = build_app(config)
    async with serve(config, app=app) as url:
        request = RunRequest(
            manifests=(manifest,),
            journal=journal,
            endpoint=url,
            rate=rate,
            timeout=timeout,
            start=True,
            wait=True,
            download=packages or journal.parent / "packages",
            poll_interval=poll_interval,
            # this simulator shows a create at once: a lost answer's lookup need not wait long
            visibility_window=5.0,
        )
        first = await run(request, credentials=credentials, clock=clock)
        after_first = app[STATS].snapshot()
        second = await run(request, credentials=credentials, clock=clock)
        after_second = app[STATS].snapshot()
    return first, second, after_first, after_second


def _summary(
    first: RunResult, second: RunResult, sim1: dict[str, object], sim2: dict[str, object]
) -> Table:
    table = Table(title="runner demo: the example manifest against the simulator")
    table.add_column("")
    table.add_column("first run", justify="right")
    table.add_column("second run", justify="right")

    def row(name: str, a: object, b: object) -> None:
        table.add_row(name, str(a), str(b))

    row("exit code", int(first.exit_code), int(second.exit_code))
    row("tasks created", first.stats.created, second.stats.created)
    row("adopted after a lost answer", first.stats.adopted, second.stats.adopted)
    row("creates sent", first.stats.creates_sent, second.stats.creates_sent)
    row("requests sent", first.stats.requests, second.stats.requests)
    row("throttled answers", first.stats.throttled, second.stats.throttled)
    row("tasks failed", first.stats.failed, second.stats.failed)
    row("tasks started", first.stats.started, second.stats.started)
    row("exports finished", first.stats.exported, second.stats.exported)
    row("packages downloaded", first.stats.downloaded, second.stats.downloaded)
    row("exports failed", first.stats.export_failed, second.stats.export_failed)
    row("seconds", f"{first.elapsed:.1f}", f"{second.elapsed:.1f}")
    faults = sim1.get("faults", {})
    row("faults injected by the simulator", faults, "")
    row("creates applied by the simulator", sim1["creates_applied"], sim2["creates_applied"])
    row("tasks created twice", sim1["duplicates_created"], sim2["duplicates_created"])
    row("starts applied by the simulator", sim1["starts_applied"], sim2["starts_applied"])
    row("packages served by the simulator", sim1["downloads"], sim2["downloads"])
    return table


def execute(manifest: str, journal: Path = DEMO_JOURNAL) -> ExitCode:
    if journal.parent.exists():
        shutil.rmtree(journal.parent)
    try:
        first, second, sim1, sim2 = anyio.run(rehearse, manifest, journal)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    console = stdout()
    console.print(_summary(first, second, sim1, sim2))
    states = ", ".join(f"{k} {v}" for k, v in sorted(second.states.items()))
    console.print(f"journal: {journal} ({states})")
    packages = journal.parent / "packages"
    saved = sum(1 for _ in packages.rglob("*.zip")) if packages.is_dir() else 0
    console.print(f"packages: {saved} in {packages}")
    console.print(f"see every task: runner status --journal {journal}")
    resent = (
        sim2["creates_applied"] != sim1["creates_applied"]
        or sim2["duplicates_created"] != 0
        or second.stats.requests > 0
        or sim2["downloads"] != sim1["downloads"]
    )
    if first.exit_code is not ExitCode.OK or second.exit_code is not ExitCode.OK or resent:
        console.print("[red]the rehearsal did not go as planned[/red]")
        return ExitCode.TASKS_FAILED
    console.print("every task created once, exported and downloaded; the rerun sent nothing.")
    return ExitCode.OK
