"""Reading a workspace's export tasks back: the paged ListMigrations scan and the name index
that settles an unknown create."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio

from runner.attempt import Policy, Unresolved, read
from runner.context import ApiClient, RunContext
from runner.dataworks.actions import GET_SUMMARY, LIST
from runner.models import Migration, MigrationPage, Summary, TaskKey

EXPORT = "EXPORT"
IMPORT = "IMPORT"
LIST_PAGE_SIZE = 100
LIST_MAX_PAGES = 100  # the service refuses PageNumber above 100

LIST_POLICY = Policy("list", LIST)
POLL_LIST_POLICY = Policy("list", LIST, record_success=False)  # polls would flood the history
SUMMARY_POLICY = Policy("summary", GET_SUMMARY)
POLL_SUMMARY_POLICY = Policy("summary", GET_SUMMARY, record_success=False)


@dataclass(frozen=True, slots=True)
class Place:
    """Which migrations a listing reads: a workspace (`target`'s) and a migration type."""

    target: TaskKey
    migration_type: str = EXPORT


class Incomplete(Unresolved):
    """A listing that could not be shown to hold every task: nothing is absent on its word."""


async def scan_migrations(
    ctx: RunContext,
    key: TaskKey,
    until: Callable[[MigrationPage, int], bool],
    *,
    policy: Policy = LIST_POLICY,
    client: ApiClient | None = None,
    where: Place | None = None,
) -> None:
    """Read the migrations of `key`'s workspace page by page (its export tasks; with `where`,
    another workspace's, of `where`'s migration type, for the journal's task `key`), until
    `until(page, seen)` says enough or every one was seen.

    Returning without `until` saying enough means every task of the workspace was seen: the
    pages held TotalCount distinct tasks. Anything that leaves that in doubt raises Incomplete:
    no TotalCount, a TotalCount that shrinks, an id on two pages, a short page before the end,
    or the page-number limit. A page size the service caps (it echoes a smaller one: the docs
    allow it) is followed from then on. Raises Unresolved when a page cannot be read.
    """
    client = client or ctx.client
    place = where or Place(key)
    at = place.target
    ids: set[int] = set()
    size = LIST_PAGE_SIZE
    total: int | None = None
    for page_number in range(1, LIST_MAX_PAGES + 1):

        async def call(n: int = page_number, size: int = size) -> MigrationPage:
            return await client.list_migrations(
                at.region,
                at.project_id,
                page_number=n,
                page_size=size,
                migration_type=place.migration_type,
            )

        page = await read(ctx, key, policy, call, client=client, target=at)
        if page.total_count is None or (total is not None and page.total_count < total):
            raise Incomplete(key, "ListMigrations gave no TotalCount, or a smaller one")
        total = page.total_count
        if page_number == 1 and page.page_size is not None and 0 < page.page_size < size:
            size = page.page_size  # capped: page on at the size the service serves
        before = len(ids)
        ids.update(m.migration_id for m in page.migrations)
        if len(ids) != before + len(page.migrations):
            raise Incomplete(key, "ListMigrations pages overlap")
        if until(page, len(ids)):
            return
        if len(ids) >= total:
            return
        if len(page.migrations) < size:
            raise Incomplete(key, f"ListMigrations ended at {len(ids)} of {total} tasks")
    raise Incomplete(key, f"more than {LIST_MAX_PAGES} pages of migration tasks")


async def read_summary(
    ctx: RunContext,
    key: TaskKey,
    migration_id: int,
    *,
    policy: Policy = SUMMARY_POLICY,
    client: ApiClient | None = None,
    target: TaskKey | None = None,
) -> Summary:
    """GetMigrationSummary for one task (in `target`'s workspace when given), retried through
    the read bucket."""
    reader = client or ctx.client
    at = target or key
    return await read(
        ctx,
        key,
        policy,
        lambda: reader.get_migration_summary(at.region, at.project_id, migration_id),
        client=reader,
        target=at,
    )


class NameIndex:
    """The migration tasks seen by name, per workspace, for the length of a run: export tasks,
    or with `migration_type=IMPORT` import tasks.

    A name once seen stays (tasks are not deleted), so other lookups in the same workspace are
    answered without a request. A name not seen is always asked for again: it may have been
    created since. `key` is the journal's task; `target`, when given, the task looked up
    elsewhere (an import in its target workspace).
    """

    def __init__(self, ctx: RunContext, *, migration_type: str = EXPORT) -> None:
        self._ctx = ctx
        self._type = migration_type
        self._known: dict[tuple[str, int], dict[str, Migration]] = {}
        self._census: dict[tuple[str, int], anyio.Lock] = {}
        self._counted: set[tuple[str, int]] = set()

    async def census(
        self, key: TaskKey, client: ApiClient | None = None, *, target: TaskKey | None = None
    ) -> None:
        """List `key`'s (or `target`'s) whole workspace once for the run (every caller after the
        first waits for it): afterwards `seen` answers for every name the workspace held.
        Raises Unresolved when the listing cannot be read or shown complete."""
        at = target or key
        workspace = (at.region, at.project_id)
        if workspace in self._counted:
            return
        lock = self._census.setdefault(workspace, anyio.Lock())
        async with lock:
            if workspace in self._counted:
                return
            known = self._known.setdefault(workspace, {})

            def never(page: MigrationPage, seen: int) -> bool:
                known.update((m.name, m) for m in page.migrations)
                return False

            await scan_migrations(self._ctx, key, never, client=client, where=Place(at, self._type))
            self._counted.add(workspace)

    def counted(self, key: TaskKey) -> bool:
        """Whether `key`'s workspace was listed whole in this run (so `seen` answers for it)."""
        return (key.region, key.project_id) in self._counted

    def seen(self, key: TaskKey) -> Migration | None:
        """The task of `key`'s name as a listing of this run showed it, if one did."""
        return self._known.get((key.region, key.project_id), {}).get(key.name)

    async def find(
        self, key: TaskKey, client: ApiClient | None = None, *, target: TaskKey | None = None
    ) -> Migration | None:
        at = target or key
        known = self._known.setdefault((at.region, at.project_id), {})
        if at.name not in known:

            def until(page: MigrationPage, seen: int) -> bool:
                known.update((m.name, m) for m in page.migrations)
                return at.name in known

            await scan_migrations(self._ctx, key, until, client=client, where=Place(at, self._type))
        return known.get(at.name)


def drift(found: Migration, wanted: str | None, noun: str) -> str | None:
    """Why a listed task, found under a name this journal never sent, is not what the manifest
    asks for (its description differs), or None. `noun`: what it is ("export", "import")."""
    listed = found.description
    if listed is None or listed == (wanted or ""):
        return None
    return f"the existing {noun}'s description is {listed!r}, the manifest's {wanted or ''!r}"
