"""What the create phase and the lifecycle share: one request through the limiter, retried reads,
fatal stops per region, and a fixed pool of workers.

`Sender` is the single path by which a request reaches the service: it takes a slot in the
(account, scope, read|write) bucket, refuses to send to a region a fatal answer has stopped,
counts requests and throttled answers, and returns the attempt's history op for the journal.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from runner.clock import Clock
from runner.journal import Op, RecordAttempt
from runner.models import ApiError, ErrorKind, MigrationPage, TaskKey
from runner.ratelimit import Access, RateLimiter
from runner.retry import RetryPolicy

T = TypeVar("T")
Item = TypeVar("Item")

LIST_PAGE_SIZE = 100
LIST_MAX_PAGES = 100  # the service refuses PageNumber above 100
SETTLE_SECONDS = 1.0  # wait after a lost answer before reading back what it did


class Limited(Protocol):
    """What the sender needs of a client: who pays for a request, and where it is counted."""

    @property
    def account(self) -> str: ...

    def limit_scope(self, region: str) -> str: ...


class Lister(Limited, Protocol):
    async def list_migrations(
        self,
        region: str,
        project_id: int,
        *,
        page_number: int = 1,
        page_size: int = 100,
        migration_type: str = "EXPORT",
    ) -> MigrationPage: ...


class Progress(Protocol):
    """Told of each task a phase finishes (the CLI's bar or log lines)."""

    def task_finished(self, key: TaskKey, outcome: str) -> None: ...


class PhaseProgress(Progress, Protocol):
    """A progress display entered for the length of one phase."""

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Silent:
    """Progress that shows nothing."""

    def __enter__(self) -> Silent:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def task_finished(self, key: TaskKey, outcome: str) -> None:
        return None


class Writer(Protocol):
    async def write(self, *ops: Op) -> None: ...


@dataclass(slots=True)
class RunStats:
    """Counters of one run, for the summary and the tests."""

    created: int = 0
    adopted: int = 0
    failed: int = 0
    unresolved: int = 0
    stopped: int = 0
    creates_sent: int = 0
    requests: int = 0
    throttled: int = 0
    fatal: ApiError | None = None
    # the lifecycle (--start, --wait, --download)
    started: int = 0
    exported: int = 0
    downloaded: int = 0
    export_failed: int = 0  # export ended in error or was revoked
    not_started: int = 0  # StartMigration refused or unanswered: the task stays created
    still_running: int = 0  # started, not finished when the wait ended
    download_failed: int = 0  # exported, but no package file at the end
    lifecycle_requests: int = 0  # of `requests`, those sent by the lifecycle


class Unresolved(Exception):
    """A task's outcome could not be settled in this run; its row stays as it is."""


class Stopped(Exception):
    """The task's region was stopped by a fatal answer; its row stays as it is."""


class Sender:
    """Sends single requests through the rate limiter and keeps the run's fatal stops."""

    def __init__(
        self,
        client: Limited,
        writer: Writer,
        limiter: RateLimiter,
        clock: Clock,
        retry: RetryPolicy,
        rng: random.Random,
        stats: RunStats,
    ) -> None:
        self.client = client
        self.writer = writer
        self.limiter = limiter
        self.clock = clock
        self.retry = retry
        self.rng = rng
        self.stats = stats
        self.stopped_regions: dict[str, ApiError] = {}

    def is_stopped(self, region: str) -> bool:
        return region in self.stopped_regions

    def stop(self, region: str, error: ApiError) -> None:
        """A fatal answer: nothing more is sent to this account/region in this run."""
        self.stopped_regions.setdefault(region, error)
        if self.stats.fatal is None:
            self.stats.fatal = error

    async def attempt(
        self,
        key: TaskKey,
        access: Access,
        action: str,
        call: Callable[[], Awaitable[T]],
        intent: Op | None = None,
    ) -> tuple[T | ApiError, RecordAttempt]:
        """Send one request through the bucket; return its result or error, and its history op.

        `intent` is committed once the send slot is ours and before the request leaves, so an
        interrupted wait for the limiter leaves nothing marked in flight.
        """
        scope = self.client.limit_scope(key.region)
        bucket = self.limiter.bucket(self.client.account, scope, access)
        await bucket.acquire()
        if key.region in self.stopped_regions:
            raise Stopped(key)
        if intent is not None:
            await self.writer.write(intent)
        started = self.clock.monotonic()
        self.stats.requests += 1
        try:
            result = await call()
        except ApiError as error:
            latency = (self.clock.monotonic() - started) * 1000
            if error.is_throttling:
                self.stats.throttled += 1
                bucket.on_throttled(error.retry_after)
            return error, RecordAttempt(
                key,
                action,
                error.http_status,
                error.code,
                error.request_id,
                latency,
                error.kind.value,
            )
        latency = (self.clock.monotonic() - started) * 1000
        bucket.on_success()
        request_id = getattr(result, "request_id", None)
        return result, RecordAttempt(key, action, 200, None, request_id, latency, "ok")

    async def backoff(self, attempt: int, error: ApiError | None = None) -> None:
        """Sleep the retry policy's delay after failed attempt number `attempt`."""
        retry_after = error.retry_after if error is not None else None
        await self.clock.sleep(self.retry.delay(attempt, self.rng, retry_after))

    async def read(
        self,
        key: TaskKey,
        action: str,
        call: Callable[[], Awaitable[T]],
        *,
        record_success: bool = True,
    ) -> T:
        """A read, retried through the READ bucket until answered; Unresolved when it cannot be
        (region stopped, a fatal or permanent answer, or out of attempts). Without
        `record_success` only failed reads enter the history (status polls would flood it)."""
        for attempt in range(self.retry.max_attempts):
            if key.region in self.stopped_regions:
                raise Unresolved(key)
            result, op = await self.attempt(key, Access.READ, action, call)
            if isinstance(result, ApiError) or record_success:
                await self.writer.write(op)
            if not isinstance(result, ApiError):
                return result
            if result.kind is ErrorKind.FATAL:
                self.stop(key.region, result)
                raise Unresolved(key)
            if result.kind is not ErrorKind.RETRYABLE or self.retry.gives_up_after(attempt):
                raise Unresolved(key)
            await self.backoff(attempt, result)
        raise Unresolved(key)


async def scan_exports(
    sender: Sender,
    client: Lister,
    key: TaskKey,
    until: Callable[[MigrationPage, int], bool],
    *,
    record_success: bool = True,
) -> None:
    """Read the export migrations of `key`'s workspace page by page, until `until(page, seen)`
    says enough or every one was seen. Stops on what was seen, not on the echoed page size,
    which a server may cap."""
    seen = 0
    for page_number in range(1, LIST_MAX_PAGES + 1):

        async def call(n: int = page_number) -> MigrationPage:
            return await client.list_migrations(
                key.region, key.project_id, page_number=n, page_size=LIST_PAGE_SIZE
            )

        page = await sender.read(key, "list", call, record_success=record_success)
        seen += len(page.migrations)
        if until(page, seen) or not page.migrations or seen >= page.total_count:
            return


async def run_pool(
    items: Sequence[Item], concurrency: int, handle: Callable[[Item], Awaitable[None]]
) -> None:
    """Hand every item to one of `concurrency` workers (fewer when there are fewer items), fed
    through a bounded stream inside one task group; returns when all are handled."""
    workers = max(1, min(concurrency, len(items) or 1))
    send, receive = anyio.create_memory_object_stream[Item](max_buffer_size=workers)

    async def worker(stream: MemoryObjectReceiveStream[Item]) -> None:
        async with stream:
            async for item in stream:
                await handle(item)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker, receive.clone())
        receive.close()
        async with send:
            for item in items:
                await send.send(item)
