"""Export packages: fetched from their DownloadUrls into DIR/<region>/<project_id>/, whole or not
at all, with an expired URL replaced by a fresh one from GetMigrationSummary.

Also what the lifecycle and the packages share: the task a journal row describes, and the status
read that both use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runner.dataworks.download import (
    Downloader,
    DownloadError,
    is_expired,
    package_path,
    url_place,
)
from runner.journal import MarkDownloaded, MarkExported, RecordAttempt, TaskRow
from runner.logs import get_logger
from runner.models import Summary, SummaryStatus, TaskKey, TaskState
from runner.sending import Limited, RunStats, Sender, Stopped, Unresolved

log = get_logger("runner.packages")


class SummaryClient(Limited, Protocol):
    async def get_migration_summary(
        self, region: str, project_id: int, migration_id: int
    ) -> Summary: ...


@dataclass(frozen=True, slots=True)
class LifecycleTask:
    """What the lifecycle needs of a journal row: a task that was created, at least."""

    key: TaskKey
    migration_id: int
    state: TaskState
    download_url: str | None = None
    package_path: str | None = None

    @classmethod
    def from_row(cls, row: TaskRow) -> LifecycleTask | None:
        """The task if its row has a migration and is created, started or exported."""
        lifecycle = (TaskState.CREATED, TaskState.STARTED, TaskState.EXPORTED)
        if row.migration_id is None or row.state not in lifecycle:
            return None
        return cls(row.key, row.migration_id, row.state, row.download_url, row.package_path)


async def read_summary(
    sender: Sender, client: SummaryClient, task: LifecycleTask, *, record_success: bool = True
) -> Summary:
    """GetMigrationSummary for one task, retried through the read bucket."""
    key = task.key
    return await sender.read(
        key,
        "summary",
        lambda: client.get_migration_summary(key.region, key.project_id, task.migration_id),
        record_success=record_success,
    )


class Packages:
    """Saves export packages; a failure leaves the task exported, counted as not downloaded."""

    def __init__(
        self,
        client: SummaryClient,
        sender: Sender,
        downloader: Downloader,
        root: Path,
        *,
        timeout: float,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._sender = sender
        self._writer = sender.writer
        self._clock = sender.clock
        self._downloader = downloader
        self._root = root
        self._timeout = timeout  # to connect, and between two reads of a package
        self._wall = wall  # epoch seconds, to tell when a DownloadUrl has expired
        self.stats: RunStats = sender.stats

    async def download(self, task: LifecycleTask, url: str | None) -> str:
        """Fetch the package unless its file is there; a failure leaves the task exported."""
        try:
            return await self._fetch(task, url)
        except (Unresolved, Stopped):
            reason = "no fresh DownloadUrl"
        except OSError as error:  # the download folder itself: full, read-only, in the way
            reason = f"cannot write the package: {error.strerror or type(error).__name__}"
        self.stats.download_failed += 1
        log.warning("download failed", task=str(task.key), reason=reason)
        return "not downloaded"

    async def _fetch(self, task: LifecycleTask, url: str | None) -> str:
        key, policy = task.key, self._sender.retry
        root = self._root
        dest = package_path(root, key.region, key.project_id, key.name, task.migration_id)
        if dest.is_file():  # saved by an earlier run: a file under this name is always whole
            if task.package_path != str(dest):
                await self._writer.write(MarkDownloaded(key, str(dest)))
            return "present"
        failure: DownloadError | None = None
        for attempt in range(policy.max_attempts):
            if url is None or is_expired(url, self._wall()):
                url = await self._fresh_url(task)
                if url is None:
                    failure = None
                    break
            began = self._clock.monotonic()
            try:
                size = await self._downloader.fetch(url, dest, self._timeout)
            except DownloadError as error:
                failure = error
                latency = (self._clock.monotonic() - began) * 1000
                outcome = (
                    "refused" if error.refused else "retryable" if error.retryable else "failed"
                )
                await self._writer.write(
                    RecordAttempt(key, "download", error.status, error.code, None, latency, outcome)
                )
                if error.refused:  # expired or not accepted: ask for a fresh URL and go again
                    url = None
                    if attempt > 0:
                        await self._sender.backoff(attempt)
                    continue
                if not error.retryable or policy.gives_up_after(attempt):
                    break
                await self._sender.backoff(attempt)
                continue
            latency = (self._clock.monotonic() - began) * 1000
            await self._writer.write(
                RecordAttempt(key, "download", 200, None, None, latency, "ok"),
                MarkDownloaded(key, str(dest)),
            )
            self.stats.downloaded += 1
            log.debug(
                "downloaded", task=str(key), path=str(dest), bytes=size, source=url_place(url)
            )
            return "downloaded"
        self.stats.download_failed += 1
        log.warning(
            "download failed",
            task=str(key),
            reason=str(failure) if failure is not None else "no DownloadUrl",
        )
        return "not downloaded"

    async def _fresh_url(self, task: LifecycleTask) -> str | None:
        """A new DownloadUrl from GetMigrationSummary (they expire), recorded in the journal."""
        summary = await read_summary(self._sender, self._client, task)
        if summary.status != SummaryStatus.EXPORT_SUCCESS.value or not summary.download_url:
            return None
        await self._writer.write(MarkExported(task.key, summary.download_url, summary.request_id))
        return summary.download_url
