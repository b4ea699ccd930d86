"""The worker pool: actions in, journal outcomes out.

A fixed number of workers pull actions from a bounded stream inside one task group. Every
request passes through the rate-limit bucket of its (account, region, read|write); retries go
back through the same bucket. The journal records intent before a create is sent and the
outcome after, through the single journal writer.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runner.clock import Clock
from runner.journal import MarkCreated, MarkFailed, MarkInFlight, MarkPending
from runner.models import (
    ADOPTED_FINGERPRINT,
    DUPLICATE_NAME_CODE,
    Action,
    ActionKind,
    ApiError,
    Created,
    ErrorKind,
    ExportSpec,
    Migration,
    MigrationPage,
    TaskKey,
)
from runner.ratelimit import Access, RateLimiter
from runner.retry import RetryPolicy
from runner.sending import (
    SETTLE_SECONDS,
    Lister,
    Progress,
    RunStats,
    Sender,
    Silent,
    Stopped,
    Unresolved,
    Writer,
    run_pool,
    scan_exports,
)


class Client(Lister, Protocol):
    """The part of the DataWorks client the scheduler uses."""

    async def create_export_migration(self, spec: ExportSpec) -> Created: ...


@dataclass(frozen=True, slots=True)
class RunOptions:
    concurrency: int = 16
    adopt_existing: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    seed: int | None = None


class Scheduler:
    def __init__(
        self,
        client: Client,
        writer: Writer,
        limiter: RateLimiter,
        clock: Clock,
        options: RunOptions,
        progress: Progress | None = None,
    ) -> None:
        self._client = client
        self._writer = writer
        self._clock = clock
        self._options = options
        self._progress = progress or Silent()
        self._rng = random.Random(options.seed)
        self.stats = RunStats()
        self.sender = Sender(client, writer, limiter, clock, options.retry, self._rng, self.stats)
        self._stopped_regions = self.sender.stopped_regions
        self._known: dict[tuple[str, int], dict[str, Migration]] = {}  # lookups seen this run

    async def run(
        self, actions: Sequence[Action], sent_before: Callable[[TaskKey], bool]
    ) -> RunStats:
        """Carry out every sending action; `sent_before` tells whether the journal shows a create
        was already sent for a task (so "name already exists" is ours)."""
        self._sent_before = sent_before
        await run_pool(actions, self._options.concurrency, self._worker)
        return self.stats

    async def _worker(self, action: Action) -> None:
        outcome = await self._handle(action)
        self._progress.task_finished(action.spec.key, outcome)

    async def _handle(self, action: Action) -> str:
        key = action.spec.key
        if key.region in self._stopped_regions:
            self.stats.stopped += 1
            return "stopped"
        try:
            if action.kind is ActionKind.RECONCILE:
                return await self._reconcile(action.spec)
            if action.kind in (ActionKind.CREATE, ActionKind.RETRY):
                return await self._create(action.spec, self._sent_before(key))
        except Unresolved:
            self.stats.unresolved += 1
            return "unresolved"
        except Stopped:
            self.stats.stopped += 1
            return "stopped"
        return "skipped"

    # -- lookups -----------------------------------------------------------------------------

    async def _find(self, spec: ExportSpec) -> Migration | None:
        """Look the task's name up among the workspace's export migrations, page by page.

        Every page read is remembered for the run: a name once seen stays (tasks are not
        deleted), so other lookups in the same workspace are answered without a request. A name
        not seen is always asked for again, since it may have been created since.
        """
        key = spec.key
        known = self._known.setdefault((key.region, key.project_id), {})
        if key.name not in known:

            def until(page: MigrationPage, seen: int) -> bool:
                known.update((m.name, m) for m in page.migrations)
                return key.name in known

            await scan_exports(self.sender, self._client, key, until)
        return known.get(key.name)

    async def _adopt(
        self, spec: ExportSpec, found: Migration, *, fingerprint: str | None = None
    ) -> str:
        await self._writer.write(MarkCreated(spec.key, found.migration_id, None, fingerprint))
        self.stats.adopted += 1
        return "adopted"

    async def _reconcile(self, spec: ExportSpec) -> str:
        found = await self._find(spec)
        if found is not None:
            return await self._adopt(spec, found)
        return await self._create(spec, sent_before=True)

    # -- create ------------------------------------------------------------------------------

    async def _fail(self, key: TaskKey, error: ApiError, message: str | None = None) -> str:
        await self._writer.write(
            MarkFailed(key, error.code, message or error.message, error.request_id)
        )
        self.stats.failed += 1
        return "failed"

    async def _create(self, spec: ExportSpec, sent_before: bool) -> str:
        """Send the create until it is answered for good.

        `maybe_ours` is true once a create for this task may have been applied (an earlier run
        sent one, or an answer here was lost): from then on the name is looked up before the
        task is failed or sent again, so a task is never created twice nor lost.
        """
        key = spec.key
        policy = self._options.retry
        maybe_ours = sent_before
        last: ApiError | None = None
        for attempt in range(policy.max_attempts):
            result, op = await self.sender.attempt(
                key,
                Access.WRITE,
                "create",
                self._send_create(spec),
                intent=MarkInFlight(key, spec.fingerprint()),
            )
            if isinstance(result, Created):
                await self._writer.write(
                    op, MarkCreated(key, result.migration_id, result.request_id)
                )
                self.stats.created += 1
                return "created"
            await self._writer.write(op)
            last = result
            if result.code == DUPLICATE_NAME_CODE:
                return await self._on_duplicate(spec, result, maybe_ours)
            if result.kind is ErrorKind.FATAL:
                self.sender.stop(key.region, result)
                self.stats.stopped += 1
                if not maybe_ours:
                    # refused before anything was done: the intent just written is void
                    await self._writer.write(MarkPending(key, unsent=True))
                # else it stays in_flight: an earlier answer was lost, the next run looks first
                return "stopped"
            if result.kind is ErrorKind.PERMANENT:
                if maybe_ours and (found := await self._find(spec)) is not None:
                    return await self._adopt(spec, found)
                return await self._fail(key, result)
            if result.kind is ErrorKind.UNKNOWN_OUTCOME:
                maybe_ours = True
                # give a request that is still being processed time to land before looking
                await self._clock.sleep(max(SETTLE_SECONDS, policy.delay(attempt, self._rng)))
                found = await self._find(spec)
                if found is not None:
                    return await self._adopt(spec, found)
            if policy.gives_up_after(attempt):
                break
            await self._clock.sleep(policy.delay(attempt, self._rng, result.retry_after))
        assert last is not None
        return await self._fail(key, last, f"gave up after {policy.max_attempts} attempts: {last}")

    def _send_create(self, spec: ExportSpec) -> Callable[[], Awaitable[Created]]:
        async def send() -> Created:
            self.stats.creates_sent += 1
            return await self._client.create_export_migration(spec)

        return send

    async def _on_duplicate(self, spec: ExportSpec, error: ApiError, ours: bool) -> str:
        if ours or self._options.adopt_existing:
            found = await self._find(spec)
            if found is not None:
                foreign = None if ours else ADOPTED_FINGERPRINT
                return await self._adopt(spec, found, fingerprint=foreign)
            return await self._fail(
                spec.key,
                error,
                "the service says the name exists but ListMigrations does not show it: "
                + error.message,
            )
        return await self._fail(
            spec.key,
            error,
            "an export task with this name already exists in the workspace and this journal "
            "never sent it; rerun with --adopt-existing to adopt it",
        )
