"""After the create: start the tasks, wait for their exports, fetch the packages.

Tasks come from the journal: `created` ones are started (StartMigration, WRITE bucket), `started`
ones are polled (GetMigrationSummary, READ bucket) every poll interval until their export ends or
the wait times out, and `exported` ones without a package file are downloaded. Every API request
goes through the run's `Sender` (limiter, fatal stops, history); downloads go to the storage
behind the DownloadUrl, not to the API, so they take no rate-limit slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from runner.dataworks.download import Downloader
from runner.journal import (
    MarkExported,
    MarkFailed,
    MarkStarted,
)
from runner.logs import get_logger
from runner.models import (
    NOT_STARTED_STATUSES,
    ApiError,
    ErrorKind,
    Migration,
    MigrationPage,
    Started,
    Summary,
    SummaryStatus,
    TaskKey,
    TaskState,
)
from runner.packages import LifecycleTask, Packages, SummaryClient, read_summary
from runner.ratelimit import Access
from runner.sending import (
    SETTLE_SECONDS,
    Lister,
    PhaseProgress,
    RunStats,
    Sender,
    Silent,
    Stopped,
    Unresolved,
    run_pool,
    scan_exports,
)

log = get_logger("runner.lifecycle")

# ListMigrations statuses that end an export (GetMigrationSummary's are EXPORT_SUCCESS etc.)
LIST_SUCCESS = "SUCCESS"
LIST_FAILURE = "FAILURE"
# Export statuses that end a wait without a package, with the code the task fails with.
FAILED_EXPORTS = {
    SummaryStatus.EXPORT_ERROR.value: "ExportFailed",
    SummaryStatus.REVOKED.value: "Revoked",
    SummaryStatus.PARTIAL_SUCCESS.value: "ExportPartial",
}


class LifecycleClient(SummaryClient, Lister, Protocol):
    """The part of the DataWorks client the lifecycle uses."""

    async def start_migration(self, region: str, project_id: int, migration_id: int) -> Started: ...

    async def get_migration_summary(
        self, region: str, project_id: int, migration_id: int
    ) -> Summary: ...


ProgressFactory = Callable[[str, int], PhaseProgress]  # (phase, total) -> progress


def _no_progress(phase: str, total: int) -> PhaseProgress:
    return Silent()


@dataclass(frozen=True, slots=True)
class LifecycleOptions:
    start: bool = False
    wait: bool = False
    download_dir: Path | None = None
    wait_timeout: float = 3600.0  # seconds, the whole wait
    poll_interval: float = 10.0  # seconds between two status reads of a task
    download_timeout: float = 60.0  # seconds to connect, and between two reads of a package
    concurrency: int = 16


class Lifecycle:
    """Starts, waits for and downloads a run's tasks, as the options ask."""

    def __init__(
        self,
        client: LifecycleClient,
        sender: Sender,
        options: LifecycleOptions,
        *,
        downloader: Downloader | None = None,
        wall: Callable[[], float] = time.time,
        progress: ProgressFactory = _no_progress,
    ) -> None:
        if options.download_dir is not None and downloader is None:
            raise ValueError("a download directory needs a downloader")
        self._client = client
        self._sender = sender
        self._writer = sender.writer
        self._clock = sender.clock
        self._options = options
        self._packages = (
            None
            if options.download_dir is None or downloader is None
            else Packages(
                client,
                sender,
                downloader,
                options.download_dir,
                timeout=options.download_timeout,
                wall=wall,
            )
        )
        self._progress = progress
        self.stats: RunStats = sender.stats

    async def run(self, tasks: Sequence[LifecycleTask]) -> RunStats:
        opts = self._options
        before = self.stats.requests
        try:
            waiting = [t for t in tasks if t.state is TaskState.STARTED]
            just_started: list[LifecycleTask] = []
            if opts.start:
                created = [t for t in tasks if t.state is TaskState.CREATED]
                just_started = await self._start_all(created)
            if self._packages is not None:
                await self._download_all([t for t in tasks if t.state is TaskState.EXPORTED])
            if opts.wait and (waiting or just_started):
                await self._wait(waiting + just_started, first_sleep=bool(just_started))
        finally:
            self.stats.lifecycle_requests += self.stats.requests - before
        return self.stats

    # -- start -------------------------------------------------------------------------------

    async def _start_all(self, tasks: list[LifecycleTask]) -> list[LifecycleTask]:
        started: list[LifecycleTask] = []
        progress = self._progress("starting", len(tasks))

        async def handle(task: LifecycleTask) -> None:
            outcome = await self._start_guarded(task)
            if outcome == "started":
                started.append(task)
            progress.task_finished(task.key, outcome)

        with progress:
            await run_pool(tasks, self._options.concurrency, handle)
        return started

    async def _start_guarded(self, task: LifecycleTask) -> str:
        try:
            return await self._start(task)
        except Unresolved:
            self.stats.unresolved += 1
            return "unresolved"
        except Stopped:
            self.stats.stopped += 1
            return "stopped"

    async def _start(self, task: LifecycleTask) -> str:
        """Send StartMigration until answered for good. A task the service will not start
        because it already ran counts as started: the wait reads how it ended. A task that was
        refused or never answered stays `created`, so that a later --start tries it again."""
        key, policy = task.key, self._sender.retry
        last: ApiError | None = None
        for attempt in range(policy.max_attempts):
            result, op = await self._sender.attempt(
                key,
                Access.WRITE,
                "start",
                lambda: self._client.start_migration(key.region, key.project_id, task.migration_id),
            )
            if isinstance(result, Started) and not result.started:
                op = replace(op, error_code=result.error_code or "StartRefused", outcome="refused")
            await self._writer.write(op)
            if isinstance(result, Started):
                if result.started or await self._is_running(task):
                    return await self._mark_started(key, result.request_id)
                code = result.error_code or "StartRefused"
                return self._not_started(key, code, result.error_message or "answered false")
            last = result
            if result.kind is ErrorKind.FATAL:
                self._sender.stop(key.region, result)
                self.stats.stopped += 1
                return "stopped"
            if result.kind is ErrorKind.PERMANENT:
                # an earlier start of ours may have gone through: the status says
                if await self._is_running(task):
                    return await self._mark_started(key, None)
                return self._not_started(key, result.code, result.message)
            if result.kind is ErrorKind.UNKNOWN_OUTCOME:
                await self._clock.sleep(SETTLE_SECONDS)
                if await self._is_running(task):
                    return await self._mark_started(key, None)
            if policy.gives_up_after(attempt):
                break
            await self._sender.backoff(attempt, result)
        assert last is not None
        return self._not_started(key, last.code, f"gave up after {policy.max_attempts} attempts")

    def _not_started(self, key: TaskKey, code: str, message: str) -> str:
        self.stats.not_started += 1
        log.warning(
            "not started", task=str(key), code=code, message=message, hint="it stays created"
        )
        return "not started"

    async def _is_running(self, task: LifecycleTask) -> bool:
        """Whether the service shows the task started (running or already finished)."""
        summary = await self._summary(task)
        return summary.status not in NOT_STARTED_STATUSES

    async def _mark_started(self, key: TaskKey, request_id: str | None) -> str:
        await self._writer.write(MarkStarted(key, request_id))
        self.stats.started += 1
        return "started"

    async def _fail(self, key: TaskKey, code: str, message: str, request_id: str | None) -> str:
        await self._writer.write(MarkFailed(key, code, message, request_id))
        self.stats.export_failed += 1
        log.warning("export failed", task=str(key), code=code, message=message)
        return "failed"

    async def _summary(self, task: LifecycleTask, *, record_success: bool = True) -> Summary:
        return await read_summary(self._sender, self._client, task, record_success=record_success)

    # -- wait --------------------------------------------------------------------------------

    async def _wait(self, tasks: list[LifecycleTask], *, first_sleep: bool) -> None:
        """Poll every unfinished task once per round, a poll interval apart, until none is left
        or the wait timeout has passed; what is left stays `started`."""
        opts = self._options
        began = self._clock.monotonic()
        deadline = began + opts.wait_timeout
        pending = tasks
        if first_sleep:  # a task started a moment ago has not finished: spare the reads
            await self._clock.sleep(min(opts.poll_interval, opts.wait_timeout))
        while pending:
            round_began = self._clock.monotonic()
            pending = await self._poll_round(pending, deadline)
            now = self._clock.monotonic()
            log.info(
                "progress",
                phase="waiting",
                exporting=len(pending),
                exported=self.stats.exported,
                downloaded=self.stats.downloaded,
                failed=self.stats.export_failed,
                elapsed_s=round(now - began, 1),
            )
            if not pending or now >= deadline:
                break
            pause = max(0.0, opts.poll_interval - (now - round_began))
            await self._clock.sleep(min(pause, deadline - now))
        if pending:
            self.stats.still_running += len(pending)
            log.warning(
                "wait timed out",
                still_running=len(pending),
                wait_timeout_s=opts.wait_timeout,
                hint="the tasks stay started; rerun with --wait to go on waiting",
            )

    async def _poll_round(self, tasks: list[LifecycleTask], deadline: float) -> list[LifecycleTask]:
        """Poll each task once, none after the deadline; return those still running.

        Tasks are polled a workspace at a time: one ListMigrations page shows the status of up
        to a hundred of them, where GetMigrationSummary shows one.
        """
        finished: set[TaskKey] = set()
        workspaces: dict[tuple[str, int], list[LifecycleTask]] = {}
        for task in tasks:
            workspaces.setdefault((task.key.region, task.key.project_id), []).append(task)

        async def poll(group: list[LifecycleTask]) -> None:
            if self._clock.monotonic() >= deadline:
                return  # a long round must not outlast --wait-timeout
            finished.update(await self._poll_workspace(group))

        await run_pool(list(workspaces.values()), self._options.concurrency, poll)
        return [t for t in tasks if t.key not in finished]

    async def _poll_workspace(self, group: list[LifecycleTask]) -> set[TaskKey]:
        """The keys of the group's tasks that need no more polls."""
        listed: dict[int, Migration] = {}
        if len(group) > 1:
            try:
                listed = await self._list_workspace(group)
            except Stopped:
                self.stats.still_running += len(group)
                return {t.key for t in group}
            except Unresolved:
                if self._sender.is_stopped(group[0].key.region):
                    self.stats.still_running += len(group)
                    return {t.key for t in group}
        done: set[TaskKey] = set()
        for task in group:
            migration = listed.get(task.migration_id)
            if migration is None:  # not listed: ask for this one
                if await self._poll_guarded(task):
                    done.add(task.key)
            elif await self._settle_listed(task, migration):
                done.add(task.key)
        return done

    async def _list_workspace(self, group: list[LifecycleTask]) -> dict[int, Migration]:
        """The group's tasks as ListMigrations shows them, paging only while that costs fewer
        reads than asking for the tasks still missing one by one."""
        key = group[0].key
        wanted = {t.migration_id for t in group}
        found: dict[int, Migration] = {}

        def until(page: MigrationPage, seen: int) -> bool:
            found.update((m.migration_id, m) for m in page.migrations if m.migration_id in wanted)
            missing = len(wanted) - len(found)
            if not missing or not page.migrations:
                return True
            pages_left = -(-(page.total_count - seen) // len(page.migrations))
            return pages_left >= missing

        await scan_exports(self._sender, self._client, key, until, record_success=False)
        return found

    async def _settle_listed(self, task: LifecycleTask, migration: Migration) -> bool:
        """Act on a listed status (SUCCESS, FAILURE, or still going); True when settled."""
        key = task.key
        if migration.status == LIST_SUCCESS:
            await self._writer.write(MarkExported(key, migration.download_url, None))
            self.stats.exported += 1
            if self._packages is not None:
                await self._packages.download(task, migration.download_url)
            return True
        if migration.status == LIST_FAILURE:
            # the list says only FAILURE: the summary tells an error from a revocation
            return await self._poll_guarded(task)
        return False

    async def _poll_guarded(self, task: LifecycleTask) -> bool:
        """One status read and what follows from it; True when the task needs no more polls."""
        try:
            return await self._poll(task)
        except Stopped:
            self.stats.still_running += 1  # its region was stopped: it stays started
            return True
        except Unresolved:
            if self._sender.is_stopped(task.key.region):
                self.stats.still_running += 1
                return True
            return False  # the status could not be read this round: try again next round

    async def _poll(self, task: LifecycleTask) -> bool:
        # a poll that finds the export still running adds nothing worth keeping to the history
        summary = await self._summary(task, record_success=False)
        key = task.key
        if summary.status == SummaryStatus.EXPORT_SUCCESS.value:
            await self._writer.write(MarkExported(key, summary.download_url, summary.request_id))
            self.stats.exported += 1
            if self._packages is not None:
                await self._packages.download(task, summary.download_url)
            return True
        if (code := FAILED_EXPORTS.get(summary.status)) is not None:
            message = f"the export ended {summary.status}"
            await self._fail(key, code, message, summary.request_id)
            return True
        return False

    # -- download ----------------------------------------------------------------------------

    async def _download_all(self, tasks: list[LifecycleTask]) -> None:
        """Packages of tasks exported by an earlier run and not saved yet."""
        assert self._packages is not None
        packages = self._packages
        progress = self._progress("downloading", len(tasks))

        async def handle(task: LifecycleTask) -> None:
            progress.task_finished(task.key, await packages.download(task, task.download_url))

        with progress:
            await run_pool(tasks, self._options.concurrency, handle)
