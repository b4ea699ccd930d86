"""What every phase of a run shares, built once: the client, the journal writer, the limiter,
the clock, the retry policy and the random source, plus the run's fatal stops and request counts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from runner.clock import Clock
from runner.dataworks.upload import UploadGrant
from runner.journal import Op
from runner.models import (
    ApiError,
    Created,
    ExportSpec,
    MigrationPage,
    Started,
    Summary,
    TaskKey,
)
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy


class ApiClient(Protocol):
    """The one client seam: who pays for a request, where it is paced, and the operations."""

    @property
    def account(self) -> str: ...

    def limit_scope(self, region: str) -> str: ...

    async def create_export_migration(
        self,
        spec: ExportSpec,
        *,
        after: Awaitable[None] | None = None,
        fingerprint: str | None = None,
    ) -> Created:
        """With `after`: the request leaves only once it is done (built meanwhile).
        `fingerprint`: the spec's, when the caller has made it (it may spare its encoding)."""

    async def create_import_migration(
        self, region: str, params: Mapping[str, str], package_file: str
    ) -> Created: ...

    async def authorize_file_upload(self, region: str) -> UploadGrant: ...

    async def list_migrations(
        self,
        region: str,
        project_id: int,
        *,
        page_number: int = 1,
        page_size: int = 100,
        migration_type: str = "EXPORT",
    ) -> MigrationPage: ...

    async def start_migration(self, region: str, project_id: int, migration_id: int) -> Started: ...

    async def get_migration_summary(
        self, region: str, project_id: int, migration_id: int
    ) -> Summary: ...


class Writer(Protocol):
    """The journal's single writer: returns once the ops are committed, together."""

    async def write(self, *ops: Op) -> None: ...

    def queue(self, *ops: Op) -> Awaitable[None]:
        """Queue ops as `write` does; awaiting the result returns once they are committed."""

    def post(self, *ops: Op) -> None:
        """Queue ops to be committed without waiting: for what a crash may lose harmlessly."""

    async def flush(self) -> None:
        """Return once everything queued so far is committed."""


class Stops:
    """Fatal answers of the run: once an (account, region) is stopped nothing more goes to it."""

    def __init__(self) -> None:
        self._by_scope: dict[tuple[str, str], ApiError] = {}
        self.first: ApiError | None = None

    def stop(self, account: str, region: str, error: ApiError) -> None:
        self._by_scope.setdefault((account, region), error)
        if self.first is None:
            self.first = error

    def is_stopped(self, account: str, region: str) -> bool:
        return self.first is not None and (account, region) in self._by_scope


@dataclass(slots=True)
class RequestCounts:
    """Requests the run sent, by action, the throttled answers among them, and the requests
    that failed (refused, or not answered), by error code, with each code's first message."""

    by_action: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: dict[str, str] = field(default_factory=dict)

    def failed(self, error: ApiError) -> bool:
        """Count a failed request by its code; True the first time the run meets that code."""
        code = error.code
        self.errors[code] += 1
        if code in self.first_errors:
            return False
        self.first_errors[code] = error.message
        return True

    @property
    def requests(self) -> int:
        return self.by_action.total()


@dataclass(frozen=True, slots=True)
class RunContext:
    """Built once per run and handed to every phase."""

    client: ApiClient  # the run's default profile's
    writer: Writer
    limiter: RateLimiter
    clock: Clock
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random = field(default_factory=random.Random)
    stops: Stops = field(default_factory=Stops)
    counts: RequestCounts = field(default_factory=RequestCounts)
    # the clients of the profiles a manifest names (one account each), by profile name
    clients: Mapping[str, ApiClient] = field(default_factory=dict)

    def client_for(self, profile: str | None) -> ApiClient:
        """The client a task's workspace is reached with: its profile's, else the default."""
        if profile is None:
            return self.client
        found = self.clients.get(profile)
        if found is None:
            raise KeyError(f"no client for profile {profile!r}")  # run.py makes one for each
        return found

    def is_stopped(self, key: TaskKey, client: ApiClient | None = None) -> bool:
        """Whether the task's account and region were stopped by a fatal answer."""
        stops = self.stops
        # nothing stopped (every request of a healthy run asks): no account looked up
        return stops.first is not None and stops.is_stopped(
            (client or self.client).account, key.region
        )
