"""The wait phase: poll started tasks until their exports end or the wait times out.

Tasks are polled a workspace at a time: one ListMigrations page shows the status of up to a
hundred of them, where GetMigrationSummary shows one (a lone task, or one the list does not show,
is read with GetMigrationSummary). All through the read bucket. An export that ends well is
recorded `exported` and handed to `on_exported` (the download phase, when there is one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runner.attempt import Unresolved
from runner.context import RunContext
from runner.logs import get_logger
from runner.lookup import (
    POLL_LIST_POLICY,
    POLL_SUMMARY_POLICY,
    Place,
    read_summary,
    scan_migrations,
)
from runner.models import Migration, MigrationPage, TaskKey
from runner.phases.tasks import EXPORT_LEG, Leg, LifecycleTask
from runner.pool import TaskOutcome, run_pool

log = get_logger("runner.wait")

# ListMigrations statuses that end an export (GetMigrationSummary's are EXPORT_SUCCESS etc.)
LIST_SUCCESS = "SUCCESS"
LIST_FAILURE = "FAILURE"

OnExported = Callable[[LifecycleTask, str | None], Awaitable[TaskOutcome]]


async def exported_only(task: LifecycleTask, url: str | None) -> TaskOutcome:
    return TaskOutcome.EXPORTED


@dataclass(slots=True)
class WaitStats:
    exported: int = 0
    failed: int = 0  # the export ended in error or was revoked
    still_running: int = 0  # not finished when the wait ended, or its region was stopped


class WaitPhase:
    def __init__(
        self,
        ctx: RunContext,
        *,
        wait_timeout: float,
        poll_interval: float,
        concurrency: int = 16,
        on_exported: OnExported = exported_only,
        leg: Leg = EXPORT_LEG,
    ) -> None:
        self._ctx = ctx
        self._leg = leg
        self._wait_timeout = wait_timeout
        self._poll_interval = poll_interval
        self._concurrency = concurrency
        self._on_exported = on_exported
        self.stats = WaitStats()

    async def run(self, tasks: list[LifecycleTask], *, first_sleep: bool) -> None:
        """Poll every unfinished task once per round, a poll interval apart, until none is left
        or the wait timeout has passed; what is left stays `started`."""
        clock = self._ctx.clock
        began = clock.monotonic()
        deadline = began + self._wait_timeout
        pending = tasks
        if first_sleep:  # a task started a moment ago has not finished: spare the reads
            await clock.sleep(min(self._poll_interval, self._wait_timeout))
        while pending:
            round_began = clock.monotonic()
            pending = await self._poll_round(pending, deadline)
            now = clock.monotonic()
            log.info(
                "progress",
                phase="waiting",
                leg=self._leg.noun,
                running=len(pending),
                exported=self.stats.exported,
                failed=self.stats.failed,
                elapsed_s=round(now - began, 1),
            )
            if not pending or now >= deadline:
                break
            pause = max(0.0, self._poll_interval - (now - round_began))
            await clock.sleep(min(pause, deadline - now))
        if pending:
            self.stats.still_running += len(pending)
            log.warning(
                "wait timed out",
                leg=self._leg.noun,
                still_running=len(pending),
                wait_timeout_s=self._wait_timeout,
                hint=self._leg.waiting,
            )

    async def _poll_round(self, tasks: list[LifecycleTask], deadline: float) -> list[LifecycleTask]:
        """Poll each task once, none after the deadline; return those still running."""
        finished: set[TaskKey] = set()
        workspaces: dict[tuple[str, int], list[LifecycleTask]] = {}
        for task in tasks:
            workspaces.setdefault((task.at.region, task.at.project_id), []).append(task)

        async def poll(group: list[LifecycleTask]) -> None:
            if self._ctx.clock.monotonic() >= deadline:
                return  # a long round must not outlast --wait-timeout
            finished.update(await self._poll_workspace(group))

        await run_pool(list(workspaces.values()), self._concurrency, poll)
        return [t for t in tasks if t.key not in finished]

    def _stopped(self, tasks: list[LifecycleTask]) -> bool:
        """Whether the tasks' region is stopped: they stay started, polled no more."""
        if self._ctx.is_stopped(tasks[0].at, self._ctx.client_for(tasks[0].profile)):
            self.stats.still_running += len(tasks)
            return True
        return False

    async def _poll_workspace(self, group: list[LifecycleTask]) -> set[TaskKey]:
        """The keys of the group's tasks that need no more polls."""
        listed: dict[int, Migration] = {}
        if len(group) > 1:
            try:
                listed = await self._list_workspace(group)
            except Unresolved:
                if self._stopped(group):
                    return {t.key for t in group}
        done: set[TaskKey] = set()
        for task in group:
            migration = listed.get(task.migration_id)
            if migration is None:  # not listed: ask for this one
                if await self._poll(task):
                    done.add(task.key)
            elif await self._settle_listed(task, migration):
                done.add(task.key)
        return done

    async def _list_workspace(self, group: list[LifecycleTask]) -> dict[int, Migration]:
        """The group's tasks as ListMigrations shows them, paging only while that costs fewer
        reads than asking for the tasks still missing one by one."""
        wanted = {t.migration_id for t in group}
        found: dict[int, Migration] = {}

        def until(page: MigrationPage, seen: int) -> bool:
            found.update((m.migration_id, m) for m in page.migrations if m.migration_id in wanted)
            missing = len(wanted) - len(found)
            if not missing or not page.migrations or page.total_count is None:
                return True
            pages_left = -(-(page.total_count - seen) // len(page.migrations))
            return pages_left >= missing

        first = group[0]
        client = self._ctx.client_for(first.profile)
        where = Place(first.at, self._leg.migration_type)
        await scan_migrations(
            self._ctx, first.key, until, policy=POLL_LIST_POLICY, client=client, where=where
        )
        return found

    async def _exported(self, task: LifecycleTask, url: str | None, rid: str | None) -> None:
        await self._ctx.writer.write(self._leg.succeeded(task.key, url, rid))
        self.stats.exported += 1
        await self._on_exported(task, url)

    async def _settle_listed(self, task: LifecycleTask, migration: Migration) -> bool:
        """Act on a listed status (SUCCESS, FAILURE, or still going); True when settled."""
        if migration.status == LIST_SUCCESS:
            await self._exported(task, migration.download_url, None)
            return True
        if migration.status == LIST_FAILURE:
            # the list says only FAILURE: the summary tells an error from a revocation
            return await self._poll(task)
        return False

    async def _poll(self, task: LifecycleTask) -> bool:
        """One status read and what follows from it; True when the task needs no more polls."""
        key = task.key
        try:
            summary = await read_summary(
                self._ctx,
                key,
                task.migration_id,
                policy=POLL_SUMMARY_POLICY,
                client=self._ctx.client_for(task.profile),
                target=task.at,
            )
        except Unresolved:
            # stopped: it stays started; else the status could not be read: next round
            return self._stopped([task])
        leg = self._leg
        if summary.status == leg.success:
            await self._exported(task, summary.download_url, summary.request_id)
            return True
        if (code := leg.failures.get(summary.status)) is not None:
            message = f"the {leg.noun} ended {summary.status}"
            await self._ctx.writer.write(leg.failed(key, code, message, summary.request_id))
            self.stats.failed += 1
            log.warning(f"{leg.noun} failed", task=str(key), code=code, message=message)
            return True
        return False
