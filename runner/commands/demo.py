"""runner demo: a whole rehearsal on the in-process simulator, with faults, then a rerun."""

from __future__ import annotations

import dataclasses
import functools
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
DEMO_MIGRATION = "manifests/import.yaml"
MIGRATION_JOURNAL = "migration.db"  # beside the demo's journal
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
# The migration meets the same, plus uploads cut short.
MIGRATION_FAULTS = dataclasses.replace(DEMO_FAULTS, upload_reset_rate=0.2)


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
    imports: bool = False,
) -> tuple[RunResult, RunResult, dict[str, object], dict[str, object]]:
    """Run the manifest twice against a fresh simulator (create, start, wait, download into
    `packages`, beside the journal by default; with `imports`, upload and import each package
    into its target too); return both results and the sim's stats.

    `sim_clock` is the simulator's epoch clock: exports and imports end on it, so a test on a
    FakeClock passes one that follows the fake clock, and nothing waits for real."""
    credentials = Credentials(DEMO_KEY.access_key_id, DEMO_KEY.access_key_secret)
    # names are not unique on this simulator, so a task created twice would show, not be refused
    config = SimConfig(
        keys={DEMO_KEY.access_key_id: DEMO_KEY},
        faults=faults,
        seed=7,
        unique_names=False,
        export_duration=export_duration,
        import_duration=export_duration,
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
            imports=imports,
        )
        first = await run(request, credentials=credentials, clock=clock)
        after_first = app[STATS].snapshot()
        second = await run(request, credentials=credentials, clock=clock)
        after_second = app[STATS].snapshot()
    return first, second, after_first, after_second


def _two_runs(title: str) -> tuple[Table, Callable[[str, object, object], None]]:
    """A table of the first run beside the second, and how to add a row to it."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("first run", justify="right")
    table.add_column("second run", justify="right")

    def row(name: str, a: object, b: object) -> None:
        table.add_row(name, str(a), str(b))

    return table, row


def _summary(
    first: RunResult, second: RunResult, sim1: dict[str, object], sim2: dict[str, object]
) -> Table:
    table, row = _two_runs("runner demo: the example manifest against the simulator")

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


def _migration_summary(
    first: RunResult, second: RunResult, sim1: dict[str, object], sim2: dict[str, object]
) -> Table:
    table, row = _two_runs("runner demo: a migration (export, download, upload, import)")

    one, two = first.stats, second.stats
    row("exit code", int(first.exit_code), int(second.exit_code))
    row("exports created", one.created + one.adopted, two.created + two.adopted)
    row("packages downloaded", one.downloaded, two.downloaded)
    row("packages uploaded", one.uploaded, two.uploaded)
    row("imports created", one.imports_created, two.imports_created)
    row("imports finished", one.imported, two.imported)
    row("imports failed", one.import_failed, two.import_failed)
    row("requests sent", one.requests, two.requests)
    row("seconds", f"{first.elapsed:.1f}", f"{second.elapsed:.1f}")
    row("faults injected by the simulator", sim1.get("faults", {}), "")
    row("upload grants issued", sim1["grants_issued"], sim2["grants_issued"])
    row("uploads stored", sim1["uploads_stored"], sim2["uploads_stored"])
    row("imports applied by the simulator", sim1["imports_applied"], sim2["imports_applied"])
    row("imports made twice", sim1["duplicate_imports"], sim2["duplicate_imports"])
    return table


def _migrate(migration: str, journal: Path) -> bool:
    """The migration rehearsal, shown; whether it went as planned."""
    first, second, sim1, sim2 = anyio.run(
        functools.partial(rehearse, migration, journal, faults=MIGRATION_FAULTS, imports=True)
    )
    console = stdout()
    console.print(_migration_summary(first, second, sim1, sim2))
    targets = sorted({(i["project_id"], i["name"]) for i in _imports(sim2)})
    console.print(f"imported into the targets: {len(targets)} tasks, each once")
    went_well = (
        first.exit_code is ExitCode.OK
        and second.exit_code is ExitCode.OK
        and second.stats.requests == 0
        and sim2["duplicate_imports"] == 0
        and len(_imports(sim2)) == len(targets) == first.stats.imports_created
    )
    if went_well:
        console.print(
            f"every package uploaded and imported once; the rerun sent nothing."
            f" see: runner status --journal {journal}"
        )
    return went_well


def _imports(stats: dict[str, object]) -> list[dict[str, object]]:
    found = stats.get("imports", [])
    return found if isinstance(found, list) else []


def execute(
    manifest: str, journal: Path = DEMO_JOURNAL, migration: str | None = DEMO_MIGRATION
) -> ExitCode:
    """The export rehearsal of `manifest`, then (unless `migration` is None) the migration
    rehearsal of `migration` on a simulator of its own."""
    if journal.parent.exists():
        shutil.rmtree(journal.parent)
    console = stdout()
    try:
        first, second, sim1, sim2 = anyio.run(rehearse, manifest, journal)
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
        exported = not resent and first.exit_code is second.exit_code is ExitCode.OK
        if exported:
            console.print(
                "every task created once, exported and downloaded; the rerun sent nothing."
            )
        migrated = migration is None or _migrate(migration, journal.parent / MIGRATION_JOURNAL)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if not (exported and migrated):
        console.print("[red]the rehearsal did not go as planned[/red]")
        return ExitCode.TASKS_FAILED
    return ExitCode.OK
