"""The create phase: every planned task created once (CreateExportMigration).

Intent is journaled before each create leaves; a lost or 5xx answer is settled by looking the
name up before anything is resent; "name already exists" is adopted when the journal shows the
create may be ours (or with --adopt-existing), and fails otherwise.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from runner.attempt import (
    MAX_LOST_ROUNDS,
    OnRefusal,
    Outcome,
    Policy,
    Result,
    Unresolved,
    attempt,
)
from runner.context import ApiClient, RunContext
from runner.dataworks.actions import CREATE_EXPORT
from runner.journal import (
    MarkCreated,
    MarkExists,
    MarkFailed,
    MarkInFlight,
    MarkListedAbsent,
    MarkPending,
)
from runner.logs import get_logger
from runner.lookup import NameIndex, drift
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
    TaskKey,
)
from runner.pool import Progress, Silent, TaskOutcome, run_pool

log = get_logger("runner.create")

CREATE_POLICY = Policy(
    "create",
    CREATE_EXPORT,
    settle_lost=True,
    visibility=True,
    on_refusal=OnRefusal.CHECK_IF_MAYBE_APPLIED,
)
# How long a create whose answer was lost may take to show in ListMigrations. The service
# documents no bound; a minute is well past the client's 10 s timeout and any plausible apply
# delay behind it, and it costs time only when an answer is lost.
DEFAULT_VISIBILITY_WINDOW = 60.0
# Actions taken at a time: the first listings of their workspaces are made together, before any
# of their creates, so no worker waits at a new workspace for its listing.
LIST_AHEAD = 4096


@dataclass(frozen=True, slots=True)
class _Later:
    """A create whose answer was lost: looked up again at `due` (clock time) before any resend."""

    spec: ExportSpec
    due: float
    rounds: int = 1  # lost answers so far in this run


@dataclass(slots=True)
class CreateStats:
    created: int = 0
    adopted: int = 0
    failed: int = 0
    unresolved: int = 0
    stopped: int = 0
    exists: int = 0  # names taken by tasks this journal never made
    drifted: int = 0  # of those, listed with other values than the manifest's

    def count(self, outcome: TaskOutcome) -> None:
        field = _COUNTED.get(outcome)
        if field is not None:
            setattr(self, field, getattr(self, field) + 1)


_COUNTED = {  # the CreateStats field each outcome is counted in
    TaskOutcome.CREATED: "created",
    TaskOutcome.ADOPTED: "adopted",
    TaskOutcome.FAILED: "failed",
    TaskOutcome.UNRESOLVED: "unresolved",
    TaskOutcome.STOPPED: "stopped",
    TaskOutcome.EXISTS: "exists",
}


class CreatePhase:
    """Carries out the plan's sending actions."""

    def __init__(
        self,
        ctx: RunContext,
        *,
        concurrency: int = 16,
        adopt_existing: bool = False,
        progress: Progress | None = None,
        visibility_window: float = DEFAULT_VISIBILITY_WINDOW,
        wall: Callable[[], float] = time.time,
        sent_workspaces: Collection[tuple[str, int]] = (),
    ) -> None:
        self._ctx = ctx
        # workspaces this journal has sent a create to; any other is listed whole before its
        # first create, so a task made by a lost journal (or anyone) is never made again
        self._sent_workspaces = set(sent_workspaces)
        self._window = visibility_window
        self._wall = wall  # epoch seconds, to age the journal's in-flight rows
        self._later: list[_Later] = []
        self._concurrency = concurrency
        self._adopt_existing = adopt_existing
        self._progress = progress or Silent()
        self._index = NameIndex(ctx)
        # a first listing made ahead that failed: the first task that needs it gets the failure,
        # as if it had listed itself (later ones list again, as they would have)
        self._unlisted: dict[tuple[str, int], Unresolved] = {}
        self.stats = CreateStats()

    async def run(self, actions: Iterable[Action]) -> CreateStats:
        """Carry out every sending action (the others are skipped). Creates whose answers were
        lost are looked up again once their visibility window has passed, and only then sent
        again if still absent."""

        async def again(later: _Later) -> None:
            outcome = await self._guarded(
                self._create(
                    later.spec, maybe_ours=True, visible_after=later.due, rounds=later.rounds
                )
            )
            self._finish(later.spec.key, outcome)

        source = iter(actions)
        listed = set(self._sent_workspaces)
        while chunk := list(itertools.islice(source, LIST_AHEAD)):
            await run_pool(self._to_list(chunk, listed), self._concurrency, self._list_ahead)
            await run_pool(chunk, self._concurrency, self._first)
        while self._later:
            due, self._later = sorted(self._later, key=lambda later: later.due), []
            await run_pool(due, self._concurrency, again)
        return self.stats

    def _to_list(self, chunk: list[Action], listed: set[tuple[str, int]]) -> Iterator[ExportSpec]:
        """A task in each workspace of `chunk` that `_listed_before` will list whole and that
        is not in `listed` (which it joins): one whose create goes out with no lookup first."""
        for action in chunk:
            key = action.spec.key
            workspace = (key.region, key.project_id)
            if workspace in listed or action.taken or action.create_sent or action.listed:
                continue
            if action.kind in (ActionKind.CREATE, ActionKind.RETRY):
                listed.add(workspace)
                yield action.spec

    async def _list_ahead(self, spec: ExportSpec) -> None:
        """The first listing of `spec`'s workspace, made before its tasks need it."""
        client = self._ctx.client_for(spec.profile)
        if self._ctx.is_stopped(spec.key, client):
            return
        try:
            await self._index.census(spec.key, client)
        except Unresolved as failure:
            self._unlisted[(spec.key.region, spec.key.project_id)] = failure

    def _finish(self, key: TaskKey, outcome: TaskOutcome | None) -> None:
        if outcome is not None:  # None: deferred, finished by a later pass
            self.stats.count(outcome)
            self._progress.task_finished(key, outcome)

    async def _guarded(self, work: Awaitable[TaskOutcome | None]) -> TaskOutcome | None:
        try:
            return await work
        except Unresolved:
            return TaskOutcome.UNRESOLVED

    async def _first(self, action: Action) -> None:
        """An action's first pass (the pool's work): its outcome counted, unless deferred."""
        spec = action.spec
        outcome: TaskOutcome | None
        if self._ctx.is_stopped(spec.key, self._ctx.client_for(spec.profile)):
            if not action.create_sent:
                self._keep_listing(spec.key)
            outcome = TaskOutcome.STOPPED
        elif action.kind is ActionKind.RECONCILE:
            outcome = await self._guarded(self._reconcile(spec, action.since))
        elif action.taken:
            # found taken by another's task before: looked up again, whatever this journal has
            # sent to the workspace since (a service may accept a taken name a second time)
            outcome = await self._guarded(self._taken(spec))
        elif action.kind in (ActionKind.CREATE, ActionKind.RETRY):
            # the journal shows a create was sent before: "name already exists" may be ours
            try:
                outcome = await self._create(
                    spec, maybe_ours=action.create_sent, listed=action.listed
                )
            except Unresolved:  # as _guarded, without its coroutine on the busiest path
                outcome = TaskOutcome.UNRESOLVED
        else:
            outcome = TaskOutcome.SKIPPED
        self._finish(spec.key, outcome)

    async def _taken(self, spec: ExportSpec) -> TaskOutcome | None:
        """A task found taken before: still taken, it stays `exists` (or is adopted with
        --adopt-existing); gone since, it is created."""
        found = await self._index.find(spec.key, self._ctx.client_for(spec.profile))
        if found is not None:
            return await self._exists(spec, found)
        return await self._create(spec, maybe_ours=False)

    async def _reconcile(self, spec: ExportSpec, since: float | None) -> TaskOutcome | None:
        """A create an earlier run may have made: adopt it if listed; send again only once
        its visibility window (from when the journal last heard of it) has passed."""
        found = await self._index.find(spec.key, self._ctx.client_for(spec.profile))
        if found is not None:
            return await self._adopt(spec.key, found.migration_id)
        wait = 0.0 if since is None else since + self._window - self._wall()
        if wait > 0:
            self._later.append(_Later(spec, self._ctx.clock.monotonic() + wait))
            return None
        return await self._create(spec, maybe_ours=True)

    async def _settle(self, spec: ExportSpec) -> Created | None:
        found = await self._index.find(spec.key, self._ctx.client_for(spec.profile))
        return None if found is None else Created(found.migration_id, None)

    async def _create(
        self,
        spec: ExportSpec,
        *,
        maybe_ours: bool,
        visible_after: float | None = None,
        listed: bool = False,
        rounds: int = 0,
    ) -> TaskOutcome | None:
        key = spec.key
        client = self._ctx.client_for(spec.profile)
        if not (maybe_ours or listed) and visible_after is None:
            try:
                known, found = self._listing_seen(key)
                if not known:
                    found = await self._listed_before(key, client)
            except Unresolved as unlisted:
                error = unlisted.error
                if error is None or error.kind is not ErrorKind.PERMANENT:
                    raise  # the task stays as it was: a later run lists again
                message = f"the workspace's tasks could not be listed, nothing was sent: {error}"
                return await self._fail(key, error, message)
            if found is not None:
                return await self._exists(spec, found)
        fingerprint = spec.fingerprint()  # the intent's, and often the request's body as is
        result: Result[Created] = await attempt(
            self._ctx,
            key,
            CREATE_POLICY,
            lambda: client.create_export_migration(spec, fingerprint=fingerprint),
            send_after=lambda committed: client.create_export_migration(
                spec, after=committed, fingerprint=fingerprint
            ),
            settle=lambda: self._settle(spec),
            intent=MarkInFlight(key, fingerprint),
            done=lambda created: (MarkCreated(key, created.migration_id, created.request_id),),
            maybe_applied=maybe_ours,
            visible_after=visible_after,
            client=client,
        )
        match result.outcome:
            case Outcome.DONE:
                return TaskOutcome.CREATED
            case Outcome.SETTLED:
                assert result.value is not None
                return await self._adopt(key, result.value.migration_id)
            case Outcome.UNRESOLVED:
                return TaskOutcome.UNRESOLVED
            case Outcome.LOST:
                assert result.lost_at is not None
                if rounds + 1 >= MAX_LOST_ROUNDS:  # left in flight: the next run looks first
                    log.warning("answer lost again", task=str(key), rounds=rounds + 1)
                    return TaskOutcome.UNRESOLVED
                self._later.append(_Later(spec, result.lost_at + self._window, rounds + 1))
                return None
            case Outcome.STOPPED:
                if result.sent and not result.maybe_applied:
                    # refused before anything was done: the intent just written is void
                    await self._ctx.writer.write(MarkPending(key, unsent=True))
                if not result.maybe_applied:
                    self._keep_listing(key)
                # else it stays in_flight: an answer was lost, the next run looks first
                return TaskOutcome.STOPPED
            case Outcome.REFUSED:
                assert result.error is not None
                if result.error.code == DUPLICATE_NAME_CODE:
                    return await self._on_duplicate(spec, result.error, result.maybe_applied)
                return await self._fail(key, result.error)
            case Outcome.GAVE_UP:
                error = result.error
                assert error is not None
                attempts = self._ctx.retry.max_attempts
                return await self._fail(key, error, f"gave up after {attempts} attempts: {error}")
        raise AssertionError(result.outcome)  # pragma: no cover

    def _keep_listing(self, key: TaskKey) -> None:
        """A task stopped before its create (a spent daily quota): when this run's listing of
        its workspace showed the name absent, the journal keeps that, so that a rerun creates
        it with no listing first (re-listing every workspace could spend the next day's quota
        again before a single create)."""
        if self._index.counted(key) and self._index.seen(key) is None:
            self._ctx.writer.post(MarkListedAbsent(key, self._wall()))

    def _listing_seen(self, key: TaskKey) -> tuple[bool, Migration | None]:
        """(True, what `_listed_before` would answer) when that is known without an await (the
        workspace was sent to, or is listed already); else (False, None)."""
        workspace = (key.region, key.project_id)
        if workspace in self._sent_workspaces:
            return True, None
        if workspace in self._unlisted or not self._index.counted(key):
            return False, None
        return True, self._index.seen(key)

    async def _listed_before(self, key: TaskKey, client: ApiClient) -> Migration | None:
        """The task of this name in a workspace this journal never sent a create to, as one
        whole listing of the workspace (per run) shows it; None when there is none."""
        workspace = (key.region, key.project_id)
        if workspace in self._sent_workspaces:
            return None
        failure = self._unlisted.pop(workspace, None)
        if failure is not None:
            raise failure
        await self._index.census(key, client)
        return self._index.seen(key)

    async def _exists(self, spec: ExportSpec, found: Migration) -> TaskOutcome:
        """A name already taken that this journal never sent: adopted with --adopt-existing,
        else the task is marked `exists`."""
        key = spec.key
        if (reason := drift(found, spec.description, "task")) is not None:
            self.stats.drifted += 1
            log.warning("drifted", task=str(key), reason=reason)
        if self._adopt_existing:
            fingerprint = ADOPTED_FINGERPRINT
            return await self._adopt(key, found.migration_id, fingerprint=fingerprint)
        message = (
            f"the workspace already holds an export task of this name ({found.migration_id}) "
            "that this journal never made (a lost or other journal?); rerun with "
            "--adopt-existing to adopt it"
        )
        await self._ctx.writer.write(MarkExists(key, found.migration_id, message))
        return TaskOutcome.EXISTS

    async def _adopt(
        self, key: TaskKey, migration_id: int, *, fingerprint: str | None = None
    ) -> TaskOutcome:
        await self._ctx.writer.write(MarkCreated(key, migration_id, None, fingerprint))
        return TaskOutcome.ADOPTED

    async def _fail(self, key: TaskKey, error: ApiError, message: str | None = None) -> TaskOutcome:
        await self._ctx.writer.write(
            MarkFailed(key, error.code, message or error.message, error.request_id)
        )
        return TaskOutcome.FAILED

    async def _on_duplicate(self, spec: ExportSpec, error: ApiError, ours: bool) -> TaskOutcome:
        key = spec.key
        if ours or self._adopt_existing:
            found = await self._index.find(key, self._ctx.client_for(spec.profile))
            if found is not None:
                foreign = None if ours else ADOPTED_FINGERPRINT
                return await self._adopt(key, found.migration_id, fingerprint=foreign)
            return await self._fail(
                key,
                error,
                "the service says the name exists but ListMigrations does not show it: "
                + error.message,
            )
        return await self._fail(
            key,
            error,
            "an export task with this name already exists in the workspace and this journal "
            "never sent it; rerun with --adopt-existing to adopt it",
        )
