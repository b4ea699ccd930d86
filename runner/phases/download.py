"""The download phase: export packages from their DownloadUrls into DIR/<region>/<project_id>/,
whole or not at all, an expired or refused URL replaced by a fresh one from GetMigrationSummary.

Downloads go to the storage behind the URL, not to the API: they take no rate-limit slot, but
they go through the same attempt loop as every request; the fresh-URL reads take read slots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.attempt import Outcome, Policy, Unresolved, attempt
from runner.context import RunContext
from runner.dataworks.download import (
    Downloader,
    DownloadError,
    is_expired,
    package_path,
    url_place,
)
from runner.journal import MarkDownloaded, MarkError, MarkExported
from runner.logs import get_logger
from runner.lookup import read_summary
from runner.models import ApiError, ErrorKind, SummaryStatus
from runner.phases.tasks import LifecycleTask
from runner.pool import ProgressFactory, TaskOutcome, run_pool, silent

log = get_logger("runner.download")

DOWNLOAD_POLICY = Policy("download", None)
NO_URL = "NoDownloadUrl"


@dataclass(slots=True)
class DownloadStats:
    downloaded: int = 0
    failed: int = 0  # exported, but no package file at the end


def _as_api_error(error: DownloadError) -> ApiError:
    """A failed download as the attempt loop sees it: a refused URL is retried with a fresh one."""
    retryable = error.retryable or error.refused
    kind = ErrorKind.RETRYABLE if retryable else ErrorKind.PERMANENT
    return ApiError(kind, error.code, str(error), http_status=error.status)


class DownloadPhase:
    """Saves export packages; a failure leaves the task exported, counted as not downloaded."""

    def __init__(
        self,
        ctx: RunContext,
        downloader: Downloader,
        root: Path,
        *,
        timeout: float,
        concurrency: int = 16,
        wall: Callable[[], float] = time.time,
        progress: ProgressFactory = silent,
    ) -> None:
        self._ctx = ctx
        self._downloader = downloader
        self._root = root
        self._timeout = timeout  # to connect, and between two reads of a package
        self._concurrency = concurrency
        self._wall = wall  # epoch seconds, to tell when a DownloadUrl has expired
        self._progress = progress
        self.stats = DownloadStats()

    async def run(self, tasks: Sequence[LifecycleTask]) -> None:
        """Packages of tasks exported by an earlier run and not saved yet."""
        progress = self._progress("downloading", len(tasks))

        async def handle(task: LifecycleTask) -> None:
            progress.task_finished(task.key, await self.download(task, task.download_url))

        with progress:
            await run_pool(tasks, self._concurrency, handle)

    async def download(self, task: LifecycleTask, url: str | None) -> TaskOutcome:
        """Fetch the package unless its file is there; a failure leaves the task exported."""
        key = task.key
        dest = package_path(self._root, key.region, key.project_id, key.name, task.migration_id)
        if dest.is_file():  # saved by an earlier run: a file under this name is always whole
            if task.package_path != str(dest):
                await self._ctx.writer.write(MarkDownloaded(key, str(dest)))
            return TaskOutcome.PRESENT
        current = url

        async def fetch() -> int:
            nonlocal current
            if current is None or is_expired(current, self._wall()):
                current = await self._fresh_url(task)
            try:
                return await self._downloader.fetch(current, dest, self._timeout)
            except DownloadError as error:
                if error.refused:  # expired or not accepted: the next try asks for a fresh URL
                    current = None
                raise _as_api_error(error) from error

        try:
            result = await attempt(
                self._ctx,
                key,
                DOWNLOAD_POLICY,
                fetch,
                done=lambda size: (MarkDownloaded(key, str(dest)),),
            )
        except OSError as error:  # the download folder itself: full, read-only, in the way
            reason = f"cannot write the package: {error.strerror or type(error).__name__}"
            code = "WriteError"
        else:
            if result.outcome is Outcome.DONE:
                self.stats.downloaded += 1
                log.debug("downloaded", task=str(key), path=str(dest), bytes=result.value)
                return TaskOutcome.DOWNLOADED
            reason = str(result.error) if result.error is not None else result.outcome.value
            code = result.error.code if result.error is not None else "DownloadError"
        self.stats.failed += 1
        self._ctx.writer.post(MarkError(key, code, f"not downloaded: {reason}"))
        source = url_place(current) if current else "no DownloadUrl"
        log.warning("download failed", task=str(key), reason=reason, source=source)
        return TaskOutcome.NOT_DOWNLOADED

    async def _fresh_url(self, task: LifecycleTask) -> str:
        """A new DownloadUrl from GetMigrationSummary (they expire), recorded in the journal."""
        try:
            client = self._ctx.client_for(task.profile)
            summary = await read_summary(self._ctx, task.key, task.migration_id, client=client)
        except Unresolved:
            raise ApiError(ErrorKind.PERMANENT, NO_URL, "no fresh DownloadUrl") from None
        if summary.status != SummaryStatus.EXPORT_SUCCESS.value or not summary.download_url:
            raise ApiError(ErrorKind.PERMANENT, NO_URL, "no DownloadUrl")
        await self._ctx.writer.write(
            MarkExported(task.key, summary.download_url, summary.request_id)
        )
        return summary.download_url
