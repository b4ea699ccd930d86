"""runner run: the main job. Manifest × journal → plan → worker pool → journal; exit code."""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from runner.clock import Clock, SystemClock
from runner.commands.common import (
    DEFAULT_CONCURRENCY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    ExitCode,
    ManifestInvalid,
    UsageError,
    load_or_report,
)
from runner.commands.progress import make_progress
from runner.dataworks.client import DataWorksClient, SignatureVersion
from runner.dataworks.credentials import Credentials, CredentialsError, resolve
from runner.dataworks.download import Downloader
from runner.dataworks.endpoints import EndpointError, Endpoints
from runner.dataworks.transport import AiohttpDownloader, AiohttpTransport, Transport
from runner.journal import Journal, JournalError, Register
from runner.journal_writer import JournalWriter
from runner.lifecycle import Lifecycle, LifecycleOptions
from runner.logs import REDACTOR, get_logger
from runner.models import Action, ActionKind, Manifest, TaskKey, TaskState
from runner.packages import LifecycleTask
from runner.plan import make_plan
from runner.ratelimit import RateLimiter
from runner.scheduler import RunOptions, Scheduler
from runner.sending import RunStats

log = get_logger("runner.run")


@dataclass(frozen=True, slots=True)
class RunRequest:
    manifests: tuple[str, ...]
    journal: Path
    endpoint: str | None = None
    rate: float | None = None
    read_rate: float | None = None
    concurrency: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    signature_version: SignatureVersion = "v3"
    only_failed: bool = False
    adopt_existing: bool = False
    progress: bool = True
    profile: str | None = None
    start: bool = False  # start the created tasks (StartMigration)
    wait: bool = False  # wait for their exports to end (implies start)
    download: Path | None = None  # save the packages under this folder (implies wait)
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL

    @property
    def target(self) -> TaskState:
        """The state every task should reach for the run to succeed."""
        if self.download is not None or self.wait:
            return TaskState.EXPORTED
        return TaskState.STARTED if self.start else TaskState.CREATED

    def lifecycle_options(self, concurrency: int) -> LifecycleOptions:
        wait = self.wait or self.download is not None
        return LifecycleOptions(
            start=self.start or wait,
            wait=wait,
            # resolved, so the package paths in the journal mean the same from any folder
            download_dir=None if self.download is None else self.download.resolve(),
            wait_timeout=self.wait_timeout,
            poll_interval=self.poll_interval,
            download_timeout=max(self.timeout, 30.0),
            concurrency=concurrency,
        )


@dataclass(frozen=True, slots=True)
class RunResult:
    exit_code: ExitCode
    stats: RunStats = field(default_factory=RunStats)
    states: dict[str, int] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0


def _prepare(
    request: RunRequest, credentials: Credentials | None
) -> tuple[Manifest, Endpoints, Credentials]:
    manifest = load_or_report(request.manifests)
    if manifest is None:
        raise ManifestInvalid("invalid manifest")
    try:
        endpoints = Endpoints(request.endpoint)
        creds = credentials or resolve(request.profile)
    except (EndpointError, CredentialsError) as error:
        raise UsageError(str(error)) from error
    if request.rate is not None and request.rate <= 0:
        raise UsageError("--rate must be > 0")
    if request.read_rate is not None and request.read_rate <= 0:
        raise UsageError("--read-rate must be > 0")
    if request.concurrency is not None and request.concurrency < 1:
        raise UsageError("--concurrency must be >= 1")
    if request.timeout <= 0:
        raise UsageError("--timeout must be > 0")
    if request.wait_timeout < 0:
        raise UsageError("--wait-timeout must be >= 0")
    if request.poll_interval <= 0:
        raise UsageError("--poll-interval must be > 0")
    if request.download is not None and request.download.exists() and not request.download.is_dir():
        raise UsageError(f"--download {request.download}: not a folder")
    return manifest, endpoints, creds


async def run(
    request: RunRequest,
    *,
    credentials: Credentials | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    downloader: Downloader | None = None,
) -> RunResult:
    """One run, start to end. Raises UsageError before anything is sent."""
    manifest, endpoints, creds = _prepare(request, credentials)
    REDACTOR.add(creds.access_key_secret, creds.security_token)
    rate = request.rate or manifest.settings.rate or DEFAULT_RATE
    concurrency = request.concurrency or manifest.settings.concurrency or DEFAULT_CONCURRENCY
    try:
        journal = Journal.open(request.journal)
    except JournalError as error:
        raise UsageError(str(error)) from error
    started = time.monotonic()
    try:
        journal.apply([Register(spec) for spec in manifest.specs])
        rows = journal.row_map()
        plan = make_plan(manifest.specs, rows, only_failed=request.only_failed)
        sent = frozenset(key for key, row in rows.items() if row.create_sent)
        del rows  # O(tasks): not kept through the run
        totals = {k.value: v for k, v in plan.totals().items()}
        log.info("plan", tasks=len(manifest.specs), rate=rate, concurrency=concurrency, **totals)
        if plan.totals()[ActionKind.DRIFTED]:
            for action in plan.actions:
                if action.kind is ActionKind.DRIFTED:
                    log.warning("drifted", task=str(action.spec.key), reason=action.reason)
        stats = await _execute(
            request,
            plan.to_send(),
            sent,
            journal,
            creds,
            endpoints,
            rate,
            concurrency,
            transport,
            clock or SystemClock(),
            downloader,
            [spec.key for spec in manifest.specs],
        )
        states = Counter(
            row.state.value for row in (journal.get(spec.key) for spec in manifest.specs) if row
        )
    finally:
        journal.close()
    elapsed = time.monotonic() - started
    exit_code = _exit_code(states, stats, request)
    log.info(
        "run finished",
        exit_code=int(exit_code),
        elapsed_s=round(elapsed, 3),
        requests=stats.requests,
        creates_sent=stats.creates_sent,
        throttled=stats.throttled,
        tasks_started=stats.started,
        tasks_exported=stats.exported,
        packages_downloaded=stats.downloaded,
        **dict(states),
    )
    if stats.fatal is not None:
        log.error("run stopped", code=stats.fatal.code, message=stats.fatal.message)
    return RunResult(exit_code, stats, dict(states), totals, elapsed)


# How far along a state is: a task has reached the target when its rank is at least the target's.
_RANK = {
    TaskState.CREATED.value: 1,
    TaskState.STARTED.value: 2,
    TaskState.EXPORTED.value: 3,
}


def _exit_code(states: Counter[str], stats: RunStats, request: RunRequest) -> ExitCode:
    """0 when every task reached the state asked for (created, started, exported and, with
    --download, saved); 1 when some did not; 3 when a fatal answer stopped the run."""
    if stats.fatal is not None:
        return ExitCode.FATAL
    target = _RANK[request.target.value]
    skipped = {TaskState.PENDING.value} if request.only_failed else set()
    not_done = sum(n for s, n in states.items() if _RANK.get(s, 0) < target and s not in skipped)
    if request.download is not None:
        not_done += stats.download_failed
    return ExitCode.OK if not_done == 0 else ExitCode.TASKS_FAILED


async def _execute(
    request: RunRequest,
    actions: tuple[Action, ...],
    sent: frozenset[TaskKey],
    journal: Journal,
    creds: Credentials,
    endpoints: Endpoints,
    rate: float,
    concurrency: int,
    transport: Transport | None,
    clock: Clock,
    downloader: Downloader | None = None,
    keys: Sequence[TaskKey] = (),
) -> RunStats:
    progress = make_progress(len(actions), enabled=request.progress)
    limiter = RateLimiter(clock, write_rate=rate, read_rate=request.read_rate)
    options = RunOptions(concurrency=concurrency, adopt_existing=request.adopt_existing)
    terminated = anyio.Event()

    async with (
        AiohttpTransport(limit=concurrency) as real,
        AiohttpDownloader(limit=concurrency) as fetcher,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_cancel_on_terminate, tg.cancel_scope, terminated)
        client = DataWorksClient(
            transport or real,
            creds,
            endpoints,
            signature_version=request.signature_version,
            timeout=request.timeout,
        )
        async with JournalWriter(journal) as writer:
            scheduler = Scheduler(client, writer, limiter, clock, options, progress)
            with progress:
                stats = await scheduler.run(actions, sent.__contains__)
            lifecycle = request.lifecycle_options(concurrency)
            if lifecycle.start:
                await _lifecycle(
                    request, lifecycle, journal, keys, client, scheduler, downloader or fetcher
                )
        tg.cancel_scope.cancel()
    if terminated.is_set():
        raise KeyboardInterrupt
    return stats


async def _lifecycle(
    request: RunRequest,
    options: LifecycleOptions,
    journal: Journal,
    keys: Sequence[TaskKey],
    client: DataWorksClient,
    scheduler: Scheduler,
    downloader: Downloader,
) -> None:
    """Start, wait for and download the manifest's tasks that the journal shows created or
    further: those of this run and of earlier ones."""
    rows = journal.row_map()  # every create of this run is committed by now
    tasks = [t for key in keys if (row := rows.get(key)) and (t := LifecycleTask.from_row(row))]
    del rows
    log.info("lifecycle", tasks=len(tasks), **_lifecycle_flags(options))
    await Lifecycle(
        client,
        scheduler.sender,
        options,
        downloader=downloader,
        progress=lambda phase, total: make_progress(total, enabled=request.progress, label=phase),
    ).run(tasks)


def _lifecycle_flags(options: LifecycleOptions) -> dict[str, object]:
    flags: dict[str, object] = {"start": options.start, "wait": options.wait}
    if options.wait:
        flags.update(wait_timeout_s=options.wait_timeout, poll_interval_s=options.poll_interval)
    if options.download_dir is not None:
        flags["download_dir"] = str(options.download_dir)
    return flags


async def _cancel_on_terminate(scope: anyio.CancelScope, terminated: anyio.Event) -> None:
    """SIGTERM ends the run like Ctrl-C: workers are cancelled, journal writes in progress are
    finished, tasks in flight stay recorded as such."""
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            terminated.set()
            scope.cancel()
            return


def execute(request: RunRequest) -> ExitCode:
    """The CLI entry: run and turn problems into exit codes."""
    try:
        result = anyio.run(run, request)
    except ManifestInvalid:
        return ExitCode.USAGE
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    print(summary_line(result, request.journal))
    return result.exit_code


def summary_line(result: RunResult, journal: Path) -> str:
    """The few lines an operator reads at the end of a run (stdout)."""
    states = ", ".join(f"{state} {n}" for state, n in sorted(result.states.items()))
    stats = result.stats
    lines = [
        f"tasks: {states or 'none'}",
        f"this run: {stats.created} created, {stats.adopted} adopted, {stats.failed} failed;"
        f" {stats.requests} requests ({stats.creates_sent} creates), {stats.throttled} throttled,"
        f" {result.elapsed:.1f}s",
    ]
    if stats.started or stats.exported or stats.downloaded or stats.lifecycle_requests:
        lines.append(
            f"lifecycle: {stats.started} started, {stats.exported} exported,"
            f" {stats.downloaded} downloaded, {stats.export_failed} failed,"
            f" {stats.not_started} not started,"
            f" {stats.still_running} still running, {stats.download_failed} not downloaded;"
            f" {stats.lifecycle_requests} requests"
        )
    if drifted := result.planned.get(ActionKind.DRIFTED.value, 0):
        lines.append(
            f"drifted: {drifted} done tasks differ from the manifest now (runner plan lists"
            " them); an export task cannot be changed: give it a new name to export it again"
        )
    if stats.fatal is not None:
        lines.append(f"stopped: {stats.fatal.code}: {stats.fatal.message}")
    if result.exit_code is not ExitCode.OK:
        lines.append(f"details: runner report --journal {journal}; rerun to retry what is left")
    return "\n".join(lines)
