"""The start phase: StartMigration for every created task, through the write bucket.

A task the service will not start because it already ran counts as started (the wait reads how
it ended). A task refused, or never answered, stays `created`, so a later --start tries again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.attempt import OnRefusal, Outcome, Policy, Result, attempt
from runner.context import RunContext
from runner.dataworks.actions import START
from runner.logs import get_logger
from runner.lookup import read_summary
from runner.models import NOT_STARTED_STATUSES, ApiError, ErrorKind, Started, TaskKey
from runner.phases.tasks import EXPORT_LEG, Leg, LifecycleTask
from runner.pool import ProgressFactory, TaskOutcome, run_pool, silent

log = get_logger("runner.start")

# A lost answer is settled by reading the status; a refusal may mean "already running".
START_POLICY = Policy("start", START, settle_lost=True, on_refusal=OnRefusal.CHECK)


@dataclass(slots=True)
class StartStats:
    started: int = 0
    not_started: int = 0  # refused or unanswered: the task stays created
    unresolved: int = 0
    stopped: int = 0


class StartPhase:
    def __init__(
        self,
        ctx: RunContext,
        *,
        concurrency: int = 16,
        progress: ProgressFactory = silent,
        leg: Leg = EXPORT_LEG,
    ) -> None:
        self._ctx = ctx
        self._concurrency = concurrency
        self._progress = progress
        self._leg = leg
        self.stats = StartStats()

    async def run(self, tasks: Sequence[LifecycleTask]) -> list[LifecycleTask]:
        """Start every task; return those now started."""
        started: list[LifecycleTask] = []
        label = "starting" if self._leg is EXPORT_LEG else f"starting {self._leg.noun}s"
        progress = self._progress(label, len(tasks))

        async def handle(task: LifecycleTask) -> None:
            outcome = await self._start(task)
            if outcome is TaskOutcome.STARTED:
                started.append(task)
            progress.task_finished(task.key, outcome)

        with progress:
            await run_pool(tasks, self._concurrency, handle)
        return started

    async def _running(self, task: LifecycleTask) -> Started | None:
        """A Started value when the service shows the task started (running or finished)."""
        client = self._ctx.client_for(task.profile)
        summary = await read_summary(
            self._ctx, task.key, task.migration_id, client=client, target=task.at
        )
        return None if summary.status in NOT_STARTED_STATUSES else Started(True, None)

    async def _start(self, task: LifecycleTask) -> TaskOutcome:
        key, at, client = task.key, task.at, self._ctx.client_for(task.profile)
        started = self._leg.started

        async def send() -> Started:
            answer = await client.start_migration(at.region, at.project_id, task.migration_id)
            if not answer.started:  # answered, but not started: a refusal in a success body
                raise ApiError(
                    ErrorKind.PERMANENT,
                    answer.error_code or "StartRefused",
                    answer.error_message or "answered false",
                    http_status=200,
                    request_id=answer.request_id,
                )
            return answer

        result: Result[Started] = await attempt(
            self._ctx,
            key,
            START_POLICY,
            send,
            settle=lambda: self._running(task),
            done=lambda answer: (started(key, answer.request_id),),
            client=client,
            target=at,
        )
        match result.outcome:
            case Outcome.DONE:
                self.stats.started += 1
                return TaskOutcome.STARTED
            case Outcome.SETTLED:
                await self._ctx.writer.write(started(key, None))
                self.stats.started += 1
                return TaskOutcome.STARTED
            case Outcome.UNRESOLVED:
                self.stats.unresolved += 1
                return TaskOutcome.UNRESOLVED
            case Outcome.STOPPED:
                self.stats.stopped += 1
                return TaskOutcome.STOPPED
        error = result.error
        assert error is not None
        message = error.message
        if result.outcome is Outcome.GAVE_UP:
            message = f"gave up after {self._ctx.retry.max_attempts} attempts"
        return self._not_started(key, error.code, message)

    def _not_started(self, key: TaskKey, code: str, message: str) -> TaskOutcome:
        self.stats.not_started += 1
        log.warning(
            "not started",
            task=str(key),
            leg=self._leg.noun,
            code=code,
            message=message,
            hint="it stays created",
        )
        return TaskOutcome.NOT_STARTED
