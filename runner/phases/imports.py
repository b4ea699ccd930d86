"""The import phase: each exported package is uploaded and its import task created in the
target workspace, exactly once.

For a task whose package is saved: AuthorizeFileUpload, then the OSS post of the saved file
itself (`MarkUploaded` once it is whole there), then CreateImportMigration, its intent journaled
before it leaves. A lost answer is settled by looking the target's import tasks up by name
(ListMigrations, MigrationType IMPORT), and the create is only sent again once lookups over the
visibility window all say absent. A package is uploaded again only while its import was never
created; once created, the import is started and waited for by the start and wait phases, on
the import leg.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from runner.attempt import (
    MAX_LOST_ROUNDS,
    OnRefusal,
    Outcome,
    Policy,
    Result,
    Unresolved,
    attempt,
)
from runner.context import RunContext
from runner.dataworks.actions import AUTHORIZE_UPLOAD, CREATE_IMPORT
from runner.dataworks.upload import Uploader, UploadError
from runner.journal import (
    MarkError,
    MarkImportCreated,
    MarkImportFailed,
    MarkImportInFlight,
    MarkUploaded,
    TaskRow,
)
from runner.logs import get_logger
from runner.lookup import IMPORT, NameIndex, drift
from runner.models import (
    DUPLICATE_NAME_CODE,
    ApiError,
    Created,
    ErrorKind,
    Migration,
    TaskKey,
    TaskState,
)
from runner.phases.tasks import LifecycleTask
from runner.pool import ProgressFactory, TaskOutcome, run_pool, silent

log = get_logger("runner.imports")

# The grant and the post are one attempt: a failed post asks for a fresh grant (policies expire).
UPLOAD_POLICY = Policy("upload", AUTHORIZE_UPLOAD)
CREATE_IMPORT_POLICY = Policy(
    "create import",
    CREATE_IMPORT,
    settle_lost=True,
    visibility=True,
    on_refusal=OnRefusal.CHECK_IF_MAYBE_APPLIED,
)
NAME_TAKEN = "ImportNameTaken"


@dataclass(frozen=True, slots=True)
class ImportTask:
    """A task whose export is done and whose import is not created yet, as the journal holds it."""

    key: TaskKey
    state: TaskState
    target: TaskKey  # the import task: target region, project id, import name
    profile: str | None  # the target's credentials profile
    params: Mapping[str, str]  # CreateImportMigration's parameters but PackageFile
    package_path: str | None
    package_file: str | None  # set once uploaded
    sent: bool  # a CreateImportMigration was sent before: look before sending again
    updated_at: float  # epoch seconds the journal last heard of the task

    @classmethod
    def from_row(cls, row: TaskRow) -> ImportTask | None:
        """The task if its import is still to be created: exported with its package saved,
        uploaded, or failed before its import was created."""
        imports = row.imports
        if imports is None or imports.migration_id is not None:
            return None
        ready = (row.state is TaskState.EXPORTED and row.package_path is not None) or row.state in (
            TaskState.UPLOADED,
            TaskState.IMPORT_FAILED,
        )
        if not ready:
            return None
        return cls(
            row.key,
            row.state,
            imports.target,
            imports.profile,
            json.loads(imports.params),
            row.package_path,
            imports.package_file,
            imports.sent,
            row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class _Later:
    """A create whose earlier send may show late: looked up (and sent) from `due` on."""

    task: ImportTask
    package_file: str
    due: float  # clock time
    rounds: int = 1  # lost answers so far in this run


class _Deferred:
    """A task left for a later pass (its visibility window has not passed yet)."""


_DEFERRED = _Deferred()
Carried = LifecycleTask | _Deferred | None


@dataclass(slots=True)
class ImportStats:
    uploaded: int = 0
    created: int = 0  # import tasks created, or found made by an earlier send
    adopted: int = 0  # found made already under the name, never sent by this journal
    failed: int = 0  # refused for good: the task is import_failed
    not_created: int = 0  # unresolved, given up or stopped: a rerun goes on from where it is
    bytes_uploaded: int = 0


def _upload_error(error: UploadError) -> ApiError:
    """A failed post as the attempt loop sees it: a refused policy is retried with a new grant."""
    kind = ErrorKind.RETRYABLE if error.retryable or error.refused else ErrorKind.PERMANENT
    return ApiError(kind, error.code, str(error), http_status=error.status)


class ImportPhase:
    """Uploads packages and creates their import tasks; returns those created, to be started."""

    def __init__(
        self,
        ctx: RunContext,
        uploader: Uploader,
        *,
        timeout: float,
        visibility_window: float,
        concurrency: int = 16,
        upload_concurrency: int = 4,
        wall: Callable[[], float] = time.time,
        progress: ProgressFactory = silent,
        sent_workspaces: Collection[tuple[str, int]] = (),
        adopt_existing: bool = False,
    ) -> None:
        self._ctx = ctx
        self._sent_workspaces = frozenset(sent_workspaces)
        self._adopt_existing = adopt_existing
        self._uploader = uploader
        self._timeout = timeout
        self._window = visibility_window
        self._concurrency = concurrency
        # uploads at once: each streams a whole package
        self._uploads = anyio.CapacityLimiter(upload_concurrency)
        self._wall = wall
        self._progress = progress
        self._index = NameIndex(ctx, migration_type=IMPORT)
        self._later: list[_Later] = []
        self.stats = ImportStats()

    async def run(self, tasks: Sequence[ImportTask]) -> list[LifecycleTask]:
        """Upload and create every import; creates whose answers were lost (or an earlier run's
        intents) are looked up again, together, once their visibility window has passed, and
        only then sent again if still absent. Returns the imports created."""
        created: list[LifecycleTask] = []
        progress = self._progress("importing", len(tasks))

        async def finish(task: ImportTask, work: Awaitable[Carried]) -> None:
            failed = self.stats.failed
            try:
                found = await work
            except Unresolved:
                found = None
                self.stats.not_created += 1
            if found is _DEFERRED:
                return  # finished by a later pass
            if isinstance(found, LifecycleTask):
                created.append(found)
                outcome = TaskOutcome.CREATED
            elif self.stats.failed > failed:
                outcome = TaskOutcome.FAILED
            else:
                outcome = TaskOutcome.UNRESOLVED
            progress.task_finished(task.key, outcome)

        async def first(task: ImportTask) -> None:
            await finish(task, self._carry(task))

        async def again(later: _Later) -> None:
            await finish(
                later.task,
                self._create(later.task, later.package_file, later.due, rounds=later.rounds),
            )

        with progress:
            await run_pool(tasks, self._concurrency, first)
            while self._later:
                due, self._later = sorted(self._later, key=lambda later: later.due), []
                await run_pool(due, self._concurrency, again)
        return created

    async def _carry(self, task: ImportTask) -> Carried:
        """Upload if needed, then create the import: the created import, None, or _DEFERRED."""
        if task.sent:  # an earlier create may have landed: never a second one
            found = await self._lookup(task)
            if found is not None:
                return await self._created(task, found, None)
        elif (taken := await self._taken(task)) is not None:  # before any upload for it
            if not self._adopt_existing:
                await self._fail(task.key, NAME_TAKEN, self._taken_message(task.target))
                return None
            if (reason := drift(taken, task.params.get("Description"), "import")) is not None:
                log.warning("drifted", task=str(task.key), reason=reason)  # adopted all the same
            log.info("import adopted", task=str(task.key), import_migration_id=taken.migration_id)
            return await self._created(task, taken.migration_id, None, adopted=True)
        package_file = task.package_file
        if package_file is None:
            package_file = await self._upload(task)
            if package_file is None:
                return None
        if task.sent:  # absent so far: sent again only once the window from its send passed
            wait = task.updated_at + self._window - self._wall()
            if wait > 0:
                return self._defer(task, package_file, self._ctx.clock.monotonic() + wait)
            # the window has passed and the lookup above said absent: no second lookup first
        return await self._create(task, package_file, None)

    async def _taken(self, task: ImportTask) -> Migration | None:
        """The import of this name the target workspace already holds, when this journal never
        sent an import there: it is listed whole once per run first, so that after a lost
        journal an import made before is never made again."""
        target = task.target
        if (target.region, target.project_id) in self._sent_workspaces:
            return None
        client = self._ctx.client_for(task.profile)
        await self._index.census(task.key, client, target=target)
        return self._index.seen(target)

    @staticmethod
    def _taken_message(target: TaskKey) -> str:
        return (
            f"the target workspace {target.region}/{target.project_id} already holds an import"
            f" task named {target.name!r} that this journal never made; rerun with"
            " --adopt-existing to adopt it, or give the import another import_name"
        )

    def _defer(self, task: ImportTask, package_file: str, due: float, rounds: int = 1) -> Carried:
        self._later.append(_Later(task, package_file, due, rounds))
        return _DEFERRED

    async def _lookup(self, task: ImportTask) -> int | None:
        client = self._ctx.client_for(task.profile)
        found = await self._index.find(task.key, client, target=task.target)
        return None if found is None else found.migration_id

    async def _upload(self, task: ImportTask) -> str | None:
        """The package posted whole under a fresh grant; its PackageFile, or None on failure."""
        key, path = task.key, task.package_path
        if path is None or not await anyio.Path(path).is_file():
            await self._fail(key, "NoPackage", f"the package file is missing: {path}")
            return None
        client = self._ctx.client_for(task.profile)
        target = task.target

        async def send() -> tuple[str, int]:
            grant = await client.authorize_file_upload(target.region)
            try:
                async with self._uploads:
                    size = await self._uploader.upload(grant, Path(path), self._timeout)
            except UploadError as error:
                raise _upload_error(error) from error
            return grant.package_file, size

        result = await attempt(
            self._ctx,
            key,
            UPLOAD_POLICY,
            send,
            done=lambda sent: (MarkUploaded(key, sent[0]),),
            client=client,
            target=target,
        )
        if result.outcome is Outcome.DONE and result.value is not None:
            package_file, size = result.value
            self.stats.uploaded += 1
            self.stats.bytes_uploaded += size
            return package_file
        if result.outcome is Outcome.REFUSED and result.error is not None:
            await self._fail(key, result.error.code, f"upload refused: {result.error.message}")
            return None
        self.stats.not_created += 1
        reason = str(result.error or result.outcome)
        code = result.error.code if result.error is not None else "UploadError"
        self._ctx.writer.post(MarkError(key, code, f"not uploaded: {reason}"))
        log.warning("not uploaded", task=str(key), reason=reason)
        return None

    async def _create(
        self, task: ImportTask, package_file: str, visible_after: float | None, *, rounds: int = 0
    ) -> Carried:
        """CreateImportMigration, its intent committed first; with `visible_after` (clock
        time), an earlier send may have landed: looked up then, and sent only if absent."""
        key, target = task.key, task.target
        client = self._ctx.client_for(task.profile)

        async def settle() -> Created | None:
            found = await self._lookup(task)
            return None if found is None else Created(found, None)

        result: Result[Created] = await attempt(
            self._ctx,
            key,
            CREATE_IMPORT_POLICY,
            lambda: client.create_import_migration(target.region, task.params, package_file),
            settle=settle,
            intent=MarkImportInFlight(key),
            maybe_applied=task.sent or visible_after is not None,
            visible_after=visible_after,
            client=client,
            target=target,
        )
        match result.outcome:
            case Outcome.LOST:
                # a lost answer not visible yet: looked up again once the window has passed
                assert result.lost_at is not None
                if rounds + 1 >= MAX_LOST_ROUNDS:  # left in flight: the next run looks first
                    log.warning("answer lost again", task=str(key), rounds=rounds + 1)
                    return None
                return self._defer(task, package_file, result.lost_at + self._window, rounds + 1)
            case Outcome.DONE | Outcome.SETTLED:
                assert result.value is not None
                return await self._created(task, result.value.migration_id, result.value.request_id)
            case Outcome.REFUSED:
                error = result.error
                assert error is not None
                if error.code == DUPLICATE_NAME_CODE or error.is_duplicate_name:
                    message = self._taken_message(target)
                    if result.maybe_applied:
                        message = (
                            "the service says the import name exists but ListMigrations does"
                            f" not show it: {error.message}"
                        )
                    await self._fail(key, NAME_TAKEN, message, error.request_id)
                else:
                    await self._fail(key, error.code, error.message, error.request_id)
                return None
        # unresolved, given up or stopped: the row stays uploaded; the next run looks first
        self.stats.not_created += 1
        log.warning("import not created", task=str(key), reason=str(result.error or result.outcome))
        return None

    async def _created(
        self, task: ImportTask, migration_id: int, request_id: str | None, *, adopted: bool = False
    ) -> LifecycleTask:
        await self._ctx.writer.write(MarkImportCreated(task.key, migration_id, request_id))
        if adopted:
            self.stats.adopted += 1
        else:
            self.stats.created += 1
        return LifecycleTask(
            task.key,
            migration_id,
            TaskState.IMPORT_CREATED,
            profile=task.profile,
            target=task.target,
        )

    async def _fail(
        self, key: TaskKey, code: str, message: str, request_id: str | None = None
    ) -> None:
        await self._ctx.writer.write(MarkImportFailed(key, code, message, request_id))
        self.stats.failed += 1
        log.warning("import failed", task=str(key), code=code, message=message)
