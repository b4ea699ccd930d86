"""runner run: the main job. Manifest × journal → plan → phases → journal; exit code."""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping

import anyio

from runner.clock import Clock, SystemClock
from runner.commands.common import (
    DEFAULT_CONCURRENCY,
    DEFAULT_RATE,
    ExitCode,
    ManifestInvalid,
    UsageError,
    load_or_report,
)
from runner.commands.progress import make_progress
from runner.commands.run_request import RunRequest
from runner.commands.run_summary import RunResult, exit_code, summary_line
from runner.context import RunContext
from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials, CredentialsError, NotFound
from runner.dataworks.download import Downloader
from runner.dataworks.endpoints import EndpointError, Endpoints
from runner.dataworks.identity import KeyRing, describe
from runner.dataworks.keys import KeyProvider, NoKeys
from runner.dataworks.oss import AiohttpUploader
from runner.dataworks.sources import default_profile
from runner.dataworks.transport import AiohttpDownloader, AiohttpTransport, Transport
from runner.dataworks.upload import Uploader
from runner.engine import RunStats, run_phases
from runner.journal import Journal, JournalError, TaskRow
from runner.journal_writer import JournalWriter
from runner.logs import REDACTOR, get_logger
from runner.models import Action, ActionKind, Manifest, TaskState
from runner.phases.tasks import LifecycleTask
from runner.plan import SENDING, interleaved, pair_in_order, plan_in_order
from runner.pool import PhaseProgress, steady_gc
from runner.ratelimit import RateLimiter
from runner.signals import STOPPING, interrupt_on

__all__ = ["RunRequest", "RunResult", "execute", "run", "summary_line"]

log = get_logger("runner.run")


class CredentialsUnavailable(Exception):
    """Credentials were found but gave no key (STS refused, the source failed): exit 3."""


def _prepare(
    request: RunRequest, credentials: object, profiles: Mapping[str, object]
) -> tuple[Manifest, Endpoints, list[str], bool]:
    """The manifest, the endpoints, the profiles the manifest names, and whether some workspace
    is reached with the default credentials (none names its profile); where each profile's
    credentials come from is logged, without the network (`credentials` and `profiles` stand in
    for resolving them, in tests)."""
    request.check()
    manifest = load_or_report(request.manifests)
    if manifest is None:
        raise ManifestInvalid("invalid manifest")
    try:
        endpoints = Endpoints(request.endpoint)
        used = {spec.profile for spec in manifest.specs} | {
            spec.import_into.profile for spec in manifest.specs if spec.import_into is not None
        }
        names = sorted(name for name in used if name)
        needs_default = None in used
        if credentials is None and needs_default:
            log.info("credentials", source=describe(request.profile))  # no network yet
        for name in names:
            if name not in profiles:
                try:
                    log.info("credentials", profile=name, source=describe(name))
                except CredentialsError as error:
                    raise CredentialsError(f"profile {name!r} of the manifest: {error}") from None
    except (EndpointError, CredentialsError) as error:
        raise UsageError(str(error)) from error
    return manifest, endpoints, names, needs_default


async def _keys(ring: KeyRing, profile: str | None) -> KeyProvider:
    """A profile's key provider, holding its first key: fetched before anything is sent."""
    try:
        return await ring.keys(profile)
    except NotFound as error:
        raise UsageError(str(error)) from error
    except CredentialsError as error:
        raise CredentialsUnavailable(f"credentials: {error}") from error


async def run(
    request: RunRequest,
    *,
    credentials: Credentials | KeyProvider | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    downloader: Downloader | None = None,
    uploader: Uploader | None = None,
    profiles: Mapping[str, Credentials | KeyProvider] | None = None,
) -> RunResult:
    """One run, start to end. Raises UsageError before anything is sent."""
    manifest, endpoints, names, needs_default = _prepare(request, credentials, profiles or {})
    # the default profile by name, as the journal records it: --profile, or the
    # ALIBABA_CLOUD_PROFILE the chain takes it from (`unnamed`: a row from before, with no name
    # for it, is its too)
    default_name, unnamed = (
        default_profile(request.profile, environ=os.environ)
        if credentials is None
        else (request.profile, False)
    )
    for given in (credentials, *(profiles or {}).values()):
        if isinstance(given, Credentials):
            REDACTOR.add(given.access_key_secret, given.security_token)
    rate = request.rate or manifest.settings.rate or DEFAULT_RATE
    concurrency = request.concurrency or manifest.settings.concurrency or DEFAULT_CONCURRENCY
    try:
        journal = Journal.open(request.journal)
    except JournalError as error:
        raise UsageError(str(error)) from error
    started = time.monotonic()
    try:
        fresh = not any(journal.counts().values())  # a first run: every row registered new
        journal.register(manifest.specs, default_profile=default_name)
        sending, totals = _plan(
            manifest,
            journal,
            only_failed=request.only_failed,
            default_profile=default_name,
            unnamed_default=unnamed,
            fresh=fresh,
        )
        sent_workspaces = journal.sent_workspaces()
        log.info("plan", tasks=len(manifest.specs), rate=rate, concurrency=concurrency, **totals)

        # the profiles this run has a client for
        reachable = {default_name, *names} | ({None} if unnamed else set())

        def lifecycle_tasks() -> list[LifecycleTask]:
            rows = journal.row_map()  # every create of this run is committed by now
            keys = (spec.key for spec in manifest.specs)
            tasks = [t for k in keys if (r := rows.get(k)) and (t := LifecycleTask.from_row(r))]
            for task in tasks:
                if task.profile not in reachable:  # made with a profile the manifest dropped
                    log.warning("not followed", task=str(task.key), profile=task.profile)
            return [t for t in tasks if t.profile in reachable]

        def import_rows() -> list[TaskRow]:
            rows = journal.row_map()  # every export of this run is committed by now
            keys = (spec.key for spec in manifest.specs)
            found = [r for k in keys if (r := rows.get(k)) is not None and r.imports is not None]
            reached = [r for r in found if r.imports is not None and r.imports.profile in reachable]
            if len(reached) < len(found):
                log.warning("imports not followed", tasks=len(found) - len(reached))
            return reached

        async with (
            AiohttpTransport(limit=concurrency) as real,
            AiohttpDownloader(
                limit=concurrency,
                max_size=request.max_package_size,
                # packages from this machine only when the API is on it too (the simulator)
                allow_loopback=endpoints.loopback,
            ) as fetcher,
            AiohttpUploader(
                limit=concurrency,
                # with --endpoint, uploads connect there too, with OSS's Host header
                connect_to=endpoints.override,
                allow_loopback=endpoints.loopback,
            ) as poster,
            JournalWriter(journal) as writer,
            # STS and the credentials sources go through the same transport (and --endpoint)
            KeyRing(transport or real, endpoint=request.endpoint, timeout=request.timeout) as ring,
        ):

            def client_of(keys: Credentials | KeyProvider) -> DataWorksClient:
                return DataWorksClient(
                    transport or real,
                    keys,
                    endpoints,
                    signature_version=request.signature_version,
                    timeout=request.timeout,
                )

            if credentials is not None:
                default = client_of(credentials)
            elif needs_default:
                default = client_of(await _keys(ring, default_name))
            else:  # every workspace names its profile: the default chain is never asked
                default = client_of(NoKeys("every workspace of the manifest names its profile"))
            named = {
                name: client_of((profiles or {}).get(name) or await _keys(ring, name))
                for name in names
            }
            clock = clock or SystemClock()
            ctx = RunContext(
                default,
                writer,
                # buckets are per account: two profiles run side by side, each at its own rate
                RateLimiter(clock, write_rate=rate, read_rate=request.read_rate),
                clock,
                rng=random.Random(request.seed),
                clients={**({default_name: default} if default_name else {}), **named},
            )

            def progress(phase: str, total: int) -> PhaseProgress:
                return make_progress(total, enabled=request.progress, label=phase)

            stats = await _until_terminated(
                lambda: run_phases(
                    ctx,
                    request.phase_options(concurrency),
                    interleaved(sending),
                    lifecycle_tasks=lifecycle_tasks,
                    import_rows=import_rows,
                    downloader=downloader or fetcher,
                    uploader=uploader or poster,
                    progress=progress,
                    total=len(sending),
                    sent_workspaces=sent_workspaces,
                )
            )
        states, ended = _states(manifest, journal)
    finally:
        journal.close()
    elapsed = time.monotonic() - started
    code = exit_code(
        states, stats, request.stage, only_failed=request.only_failed, without_import=ended
    )
    log.info(
        "run finished",
        exit_code=int(code),
        elapsed_s=round(elapsed, 3),
        requests=stats.requests,
        creates_sent=stats.creates_sent,
        throttled=stats.throttled,
        tasks_started=stats.started,
        tasks_exported=stats.exported,
        packages_downloaded=stats.downloaded,
        packages_uploaded=stats.uploaded,
        tasks_imported=stats.imported,
        request_errors=dict(stats.errors),
        **dict(states),
    )
    if stats.fatal is not None:
        log.error("run stopped", code=stats.fatal.code, message=stats.fatal.message)
    return RunResult(code, stats, dict(states), totals, elapsed)


def _plan(
    manifest: Manifest,
    journal: Journal,
    *,
    only_failed: bool,
    default_profile: str | None,
    unnamed_default: bool = False,
    fresh: bool = False,
) -> tuple[list[Action], dict[str, int]]:
    """The actions that send, and the totals of every kind; drifted tasks are logged. Rows are
    merged with the specs in key order, so no map of the journal is ever held. A `fresh`
    journal (empty before this run registered the manifest) is not read back: its rows are all
    pending and never sent, planned as the same actions as no row."""
    sending: list[Action] = []
    totals = dict.fromkeys((kind.value for kind in ActionKind), 0)
    rows: Iterable[TaskRow] = () if fresh else journal.iter_rows()
    planned = plan_in_order(
        manifest.specs,
        rows,
        only_failed=only_failed,
        default_profile=default_profile,
        unnamed_default=unnamed_default,
    )
    for action in planned:
        totals[action.kind.value] += 1
        if action.kind in SENDING:
            sending.append(action)
        elif action.kind is ActionKind.DRIFTED:
            log.warning("drifted", task=str(action.spec.key), reason=action.reason)
    return sending, totals


def _states(manifest: Manifest, journal: Journal) -> tuple[dict[str, int], int]:
    """The manifest's tasks per state (the states some task is in), and how many of them are
    exported with no import target (with --import, at their end). When the journal holds only
    the manifest's tasks (it registered them all, so equal counts mean the same tasks), one
    GROUP BY counts them; otherwise the rows are merged with the specs in key order."""
    counts = journal.counts()
    # the manifest's keys are unique (the loader refuses a task twice): no set of them is made
    if sum(counts.values()) == len(manifest.specs):
        states = {state.value: n for state, n in counts.items() if n}
        return states, journal.exported_without_import()
    found: Counter[str] = Counter()
    ended = 0
    for spec, row in pair_in_order(manifest.specs, journal.iter_rows()):
        if row is not None:
            found[row.state.value] += 1
            ended += spec.import_into is None and row.state is TaskState.EXPORTED
    return dict(found), ended


async def _until_terminated(work: Callable[[], Awaitable[RunStats]]) -> RunStats:
    """Run `work`; SIGTERM (or SIGHUP: the terminal closed) ends it like Ctrl-C: workers are
    cancelled, journal writes in progress are finished, tasks in flight stay recorded as such."""
    terminated = anyio.Event()
    stats = RunStats()

    async def watch(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(*STOPPING) as signals:
            async for _ in signals:
                terminated.set()
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        with steady_gc():
            stats = await work()
        tg.cancel_scope.cancel()
    if terminated.is_set():
        raise KeyboardInterrupt
    return stats


def execute(request: RunRequest) -> ExitCode:
    """The CLI entry: run and turn problems into exit codes."""
    try:
        try:
            result = anyio.run(run, request)
        finally:
            interrupt_on()  # the loop left the signals it watched at their default action
    except ManifestInvalid:
        return ExitCode.USAGE
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except CredentialsUnavailable as error:  # nothing was sent to DataWorks
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.FATAL
    print(summary_line(result, request.journal))
    return result.exit_code
