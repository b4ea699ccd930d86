"""A run's phases in order, on one run context: create, then start, wait and download as far as
the run's stage asks. Each phase returns its own stats; the run's stats are their sum."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.context import RunContext
from runner.dataworks.actions import CREATE_EXPORT
from runner.dataworks.download import Downloader
from runner.dataworks.upload import Uploader
from runner.journal import TaskRow
from runner.logs import get_logger
from runner.models import Action, ApiError, TaskState
from runner.phases import Stage
from runner.phases.create import DEFAULT_VISIBILITY_WINDOW, CreatePhase, CreateStats
from runner.phases.download import DownloadPhase, DownloadStats
from runner.phases.imports import ImportPhase, ImportStats, ImportTask
from runner.phases.start import StartPhase, StartStats
from runner.phases.tasks import IMPORT_LEG, LifecycleTask
from runner.phases.wait import WaitPhase, WaitStats, exported_only
from runner.pool import ProgressFactory, silent

log = get_logger("runner.engine")


@dataclass(frozen=True, slots=True)
class PhaseOptions:
    """How far and how the phases go; resolved once from the flags and the manifest."""

    stage: Stage = Stage.CREATE
    concurrency: int = 16
    adopt_existing: bool = False
    download_dir: Path | None = None  # with Stage.DOWNLOAD
    wait_timeout: float = 3600.0  # seconds, the whole wait
    poll_interval: float = 10.0  # seconds between two status reads of a task
    download_timeout: float = 60.0  # seconds to connect, and between two reads of a package
    visibility_window: float = DEFAULT_VISIBILITY_WINDOW  # seconds a lost create may take to show
    upload_concurrency: int = 4  # packages posted at once (each streams a whole file)


@dataclass(frozen=True, slots=True)
class RunStats:
    """What a run did: each phase's stats, and the requests all of them sent."""

    create: CreateStats = field(default_factory=CreateStats)
    start: StartStats = field(default_factory=StartStats)
    wait: WaitStats = field(default_factory=WaitStats)
    download: DownloadStats = field(default_factory=DownloadStats)
    imports: ImportStats = field(default_factory=ImportStats)
    import_start: StartStats = field(default_factory=StartStats)
    import_wait: WaitStats = field(default_factory=WaitStats)
    requests: int = 0
    throttled: int = 0
    creates_sent: int = 0
    lifecycle_requests: int = 0  # of `requests`, those sent after the create phase
    fatal: ApiError | None = None
    # failed requests (refused, or not answered) by error code, and each code's first message
    errors: Mapping[str, int] = field(default_factory=dict)
    first_errors: Mapping[str, str] = field(default_factory=dict)

    # the names the summary, the demo and scripts know
    @property
    def created(self) -> int:
        return self.create.created

    @property
    def adopted(self) -> int:
        return self.create.adopted

    @property
    def failed(self) -> int:
        return self.create.failed

    @property
    def unresolved(self) -> int:
        return self.create.unresolved + self.start.unresolved

    @property
    def stopped(self) -> int:
        return self.create.stopped + self.start.stopped

    @property
    def started(self) -> int:
        return self.start.started

    @property
    def not_started(self) -> int:
        return self.start.not_started

    @property
    def exported(self) -> int:
        return self.wait.exported

    @property
    def export_failed(self) -> int:
        return self.wait.failed

    @property
    def still_running(self) -> int:
        return self.wait.still_running

    @property
    def downloaded(self) -> int:
        return self.download.downloaded

    @property
    def download_failed(self) -> int:
        return self.download.failed

    @property
    def uploaded(self) -> int:
        return self.imports.uploaded

    @property
    def imports_created(self) -> int:
        return self.imports.created

    @property
    def imports_adopted(self) -> int:
        return self.imports.adopted

    @property
    def imported(self) -> int:
        return self.import_wait.exported  # the wait's "ended well", on the import leg

    @property
    def import_failed(self) -> int:
        return self.imports.failed + self.import_wait.failed


async def run_phases(
    ctx: RunContext,
    options: PhaseOptions,
    actions: Iterable[Action],
    *,
    lifecycle_tasks: Callable[[], list[LifecycleTask]] = list,
    import_rows: Callable[[], list[TaskRow]] = list,
    downloader: Downloader | None = None,
    uploader: Uploader | None = None,
    progress: ProgressFactory = silent,
    total: int = 0,
    wall: Callable[[], float] = time.time,
    sent_workspaces: Collection[tuple[str, int]] = (),
) -> RunStats:
    """Create what the plan sends, then carry every created task as far as `options.stage`.

    `lifecycle_tasks` reads the journal's created-or-further tasks once the creates are
    committed; `import_rows` the rows of the tasks with an import leg, once the exports are
    done (Stage.IMPORT); `total` is how many actions there are (for the progress display);
    `sent_workspaces` are the (region, project id) this journal has sent creates to: any other
    is listed whole before its first create.
    """
    with progress("creating", total) as bar:
        create = CreatePhase(
            ctx,
            concurrency=options.concurrency,
            adopt_existing=options.adopt_existing,
            progress=bar,
            visibility_window=options.visibility_window,
            wall=wall,
            sent_workspaces=sent_workspaces,
        )
        await create.run(actions)
    create_requests = ctx.counts.requests
    start = StartPhase(ctx, concurrency=options.concurrency, progress=progress)
    wait_stats, download_stats = WaitStats(), DownloadStats()
    if options.stage >= Stage.START:
        await ctx.writer.flush()  # the creates' outcomes are posted: read them back committed
        tasks = lifecycle_tasks()
        log.info("lifecycle", tasks=len(tasks), stage=options.stage.name.lower())
        download: DownloadPhase | None = None
        if options.stage >= Stage.DOWNLOAD:
            if downloader is None or options.download_dir is None:
                raise ValueError("the download stage needs a downloader and a folder")
            download = DownloadPhase(
                ctx,
                downloader,
                options.download_dir,
                timeout=options.download_timeout,
                concurrency=options.concurrency,
                wall=wall,
                progress=progress,
            )
            download_stats = download.stats
        waiting = [t for t in tasks if t.state is TaskState.STARTED]
        just_started = await start.run([t for t in tasks if t.state is TaskState.CREATED])
        if download is not None:
            await download.run([t for t in tasks if t.state is TaskState.EXPORTED])
        if options.stage >= Stage.WAIT and (waiting or just_started):
            wait = WaitPhase(
                ctx,
                wait_timeout=options.wait_timeout,
                poll_interval=options.poll_interval,
                concurrency=options.concurrency,
                on_exported=download.download if download is not None else exported_only,
            )
            await wait.run(waiting + just_started, first_sleep=bool(just_started))
            wait_stats = wait.stats
    legs = _ImportLeg(ctx, options, progress, wall)
    if options.stage >= Stage.IMPORT:
        if uploader is None:
            raise ValueError("the import stage needs an uploader")
        await ctx.writer.flush()  # the exports' and downloads' outcomes, committed
        await legs.run(import_rows(), uploader)
    counts = ctx.counts
    return RunStats(
        create=create.stats,
        start=start.stats,
        wait=wait_stats,
        download=download_stats,
        imports=legs.imports,
        import_start=legs.start,
        import_wait=legs.wait,
        requests=counts.requests,
        throttled=counts.throttled,
        creates_sent=counts.by_action[CREATE_EXPORT.name],
        lifecycle_requests=counts.requests - create_requests,
        fatal=ctx.stops.first,
        errors=dict(counts.errors),
        first_errors=dict(counts.first_errors),
    )


class _ImportLeg:
    """Stage.IMPORT: upload and create the imports still to make, start those created, wait
    for those started (this run's and earlier runs')."""

    def __init__(
        self,
        ctx: RunContext,
        options: PhaseOptions,
        progress: ProgressFactory,
        wall: Callable[[], float],
    ) -> None:
        self._ctx = ctx
        self._options = options
        self._progress = progress
        self._wall = wall
        self.imports = ImportStats()
        self.start = StartStats()
        self.wait = WaitStats()

    async def run(self, rows: list[TaskRow], uploader: Uploader) -> None:
        options, ctx = self._options, self._ctx
        to_create = [t for row in rows if (t := ImportTask.from_row(row)) is not None]
        made = [m for row in rows if (m := LifecycleTask.import_of(row)) is not None]
        log.info("imports", to_create=len(to_create), created_before=len(made))
        phase = ImportPhase(
            ctx,
            uploader,
            timeout=options.download_timeout,
            visibility_window=options.visibility_window,
            concurrency=options.concurrency,
            upload_concurrency=min(options.upload_concurrency, options.concurrency),
            wall=self._wall,
            progress=self._progress,
            adopt_existing=options.adopt_existing,
            # targets this journal has sent an import to: the others are listed whole first
            sent_workspaces={
                (r.imports.target.region, r.imports.target.project_id)
                for r in rows
                if r.imports is not None and r.imports.sent
            },
        )
        self.imports = phase.stats
        created = await phase.run(to_create)
        start = StartPhase(
            ctx, concurrency=options.concurrency, progress=self._progress, leg=IMPORT_LEG
        )
        self.start = start.stats
        unstarted = [t for t in made if t.state is TaskState.IMPORT_CREATED]
        just_started = await start.run(unstarted + created)
        waiting = [t for t in made if t.state is TaskState.IMPORTING] + just_started
        if waiting:
            wait = WaitPhase(
                ctx,
                wait_timeout=options.wait_timeout,
                poll_interval=options.poll_interval,
                concurrency=options.concurrency,
                leg=IMPORT_LEG,
            )
            self.wait = wait.stats
            await wait.run(waiting, first_sleep=bool(just_started))
