"""A fake DataWorks client for scheduler tests: in-memory tasks and scripted failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.lowlevel

from runner.models import (
    DUPLICATE_NAME_CODE,
    ApiError,
    Created,
    ErrorKind,
    ExportSpec,
    Migration,
    MigrationPage,
)

# A script step decides the fate of one create call: "ok", an ApiError to raise before applying,
# or "applied-then-lost" (the create happens, the answer is lost: an unknown outcome).
Step = str | ApiError


@dataclass
class FakeService:
    """Keeps names unique per project, like the service; follows a script per task name."""

    account: str = "AKID"
    scripts: dict[str, list[Step]] = field(default_factory=dict)
    existing: dict[tuple[int, str], int] = field(default_factory=dict)
    on_create: Callable[[ExportSpec], None] | None = None
    creates: list[str] = field(default_factory=list)
    lists: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    next_id: int = 100_001
    unique_names: bool = True  # False: a service that does not refuse a second create
    created: list[tuple[int, str, int]] = field(default_factory=list)  # every task it made

    def limit_scope(self, region: str) -> str:
        return region

    async def create_export_migration(self, spec: ExportSpec) -> Created:
        self.creates.append(spec.key.name)
        if self.on_create is not None:
            self.on_create(spec)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
            script = self.scripts.get(spec.key.name)
            step: Step = script.pop(0) if script else "ok"
            if isinstance(step, ApiError):
                raise step
            ident = (spec.key.project_id, spec.key.name)
            if ident in self.existing and self.unique_names:
                raise ApiError(
                    ErrorKind.PERMANENT, DUPLICATE_NAME_CODE, "already exists", http_status=400
                )
            self.existing[ident] = self.next_id
            self.created.append((spec.key.project_id, spec.key.name, self.next_id))
            self.next_id += 1
            if step == "applied-then-lost":
                raise ApiError(ErrorKind.UNKNOWN_OUTCOME, "ExchangeError", "timed out")
            if step == "applied-then-500":
                raise ApiError(
                    ErrorKind.UNKNOWN_OUTCOME, "InternalError.System", "oops", http_status=500
                )
            return Created(self.existing[ident], f"req-{spec.key.name}")
        finally:
            self.in_flight -= 1

    async def list_migrations(
        self,
        region: str,
        project_id: int,
        *,
        page_number: int = 1,
        page_size: int = 100,
        migration_type: str = "EXPORT",
    ) -> MigrationPage:
        self.lists += 1
        await anyio.lowlevel.checkpoint()
        mine = sorted((i, n) for (p, n), i in self.existing.items() if p == project_id)
        chunk = mine[(page_number - 1) * page_size : page_number * page_size]
        return MigrationPage(
            tuple(Migration(i, n, project_id, "EXPORT", "INIT") for i, n in chunk),
            page_number,
            page_size,
            len(mine),
        )


def error(
    kind: ErrorKind, code: str, status: int = 400, retry_after: float | None = None
) -> ApiError:
    return ApiError(kind, code, f"{code} happened", http_status=status, retry_after=retry_after)
