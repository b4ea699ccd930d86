"""The simulator's operations: one handler per API action, on the in-memory state.

Pure of HTTP: `Service.operate` takes the action row, the request parameters, the caller's
access key, the time and the simulator's base URL, and returns the answer's status and body. The
aiohttp app (`runner.sim.app`) and the in-process transport (`runner.sim.inprocess`) both answer
through it, so there is one model of the service.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

from runner.dataworks.actions import (
    ACTIONS,
    CREATE_EXPORT,
    CREATE_IMPORT,
    GET_PROCESS,
    GET_SUMMARY,
    LIST,
    START,
    ApiAction,
)
from runner.sim import auth
from runner.sim.faults import Faults, draw_export_failure, draw_import_end
from runner.sim.state import DataWorksState, SimError

ANONYMOUS = "anonymous"


@dataclass(slots=True)
class SimStats:
    """Counters for tests and the demo."""

    requests: Counter[str] = field(default_factory=Counter)  # by action, as asked
    creates_applied: int = 0
    creates_by_key: Counter[str] = field(default_factory=Counter)  # applied, by signing key id
    create_span: dict[str, list[float]] = field(default_factory=dict)  # by key id: first, last
    starts_applied: int = 0
    throttled: int = 0
    auth_failures: int = 0
    faults: Counter[str] = field(default_factory=Counter)  # by Fault value
    downloads: int = 0
    duplicates_created: int = 0  # tasks made under a name already taken (unique_names off)
    hostile_applied: int = 0  # writes applied, then answered with a hostile answer
    # DataWorks requests that passed the signature check, by the access key id that signed them
    signed_by: Counter[str] = field(default_factory=Counter)
    # STS and the credentials URI: calls answered, keys minted, revoked, refused as expired
    sts: Counter[str] = field(default_factory=Counter)
    # the import leg: AuthorizeFileUpload grants, OSS posts stored and refused (by OSS code),
    # imports created (duplicates among them) and each import made, by id
    grants_issued: int = 0
    uploads_stored: int = 0
    upload_bytes: int = 0  # of the stored uploads
    upload_failures: Counter[str] = field(default_factory=Counter)
    imports_applied: int = 0
    duplicate_imports: int = 0
    imports: dict[int, ImportMade] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "creates_applied": self.creates_applied,
            "creates_by_key": dict(self.creates_by_key),
            "create_span_by_key": {key: list(span) for key, span in self.create_span.items()},
            "starts_applied": self.starts_applied,
            "throttled": self.throttled,
            "auth_failures": self.auth_failures,
            "faults": dict(self.faults),
            "downloads": self.downloads,
            "duplicates_created": self.duplicates_created,
            "hostile_applied": self.hostile_applied,
            "signed_by": dict(self.signed_by),
            "sts": dict(self.sts),
            "grants_issued": self.grants_issued,
            "uploads_stored": self.uploads_stored,
            "upload_bytes": self.upload_bytes,
            "upload_failures": dict(self.upload_failures),
            "imports_applied": self.imports_applied,
            "duplicate_imports": self.duplicate_imports,
            "imports": [self.imports[i].snapshot() for i in sorted(self.imports)],
        }


@dataclass(frozen=True, slots=True)
class ImportMade:
    """An import task as the stats show it: where, from which export's package, and its status:
    INIT until started, then the status it ends in (drawn when it is started)."""

    project_id: int
    name: str
    migration_id: int
    source_migration_id: int | None
    status: str = "INIT"
    created_by: str = ""  # the access key id that signed its CreateImportMigration

    def snapshot(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "name": self.name,
            "migration_id": self.migration_id,
            "created_by": self.created_by,
            "source_migration_id": self.source_migration_id,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Call:
    """One request as an operation sees it."""

    params: Mapping[str, str]
    access_key: str
    now: float  # epoch seconds
    base_url: str  # where the simulator is reached (for DownloadUrls)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def ok(rid: str, data: Any, *, detailed: bool = False, code: str = "", message: str = "") -> Answer:
    """A success body; `detailed` adds HttpStatusCode/ErrorCode/ErrorMessage as the operations
    that document them do."""
    body: dict[str, Any] = {"RequestId": rid, "Data": data, "Success": True}
    if detailed:
        body.update(HttpStatusCode=200, ErrorCode=code, ErrorMessage=message)
    return Answer(200, body)


def error(rid: str, host: str, status: int, code: str, message: str) -> Answer:
    """The gateway's error body with its HTTP status."""
    body = {
        "RequestId": rid,
        "HostId": host,
        "Code": code,
        "Message": message,
        "Recommend": (
            f"https://api.alibabacloud.com/troubleshoot?q={code}"
            f"&product=dataworks-public&requestId={rid}"
        ),
    }
    return Answer(status, body)


def params_of(query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """Operation parameters: the form body, falling back to the query string."""
    params = dict(query)
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if body and content_type in ("", "application/x-www-form-urlencoded"):
        text = body.decode("utf-8", errors="replace")
        params.update(parse_qsl(text, keep_blank_values=True))
    return params


def access_key_of(headers: Mapping[str, str], params: Mapping[str, str]) -> str:
    """The access key a request is counted against: V3 Credential, else V1 AccessKeyId."""
    parsed = auth.parse_authorization(headers.get("authorization", ""))
    if parsed is not None:
        return parsed.credential
    return params.get("AccessKeyId") or ANONYMOUS


class Service:
    """The operations on one simulator's state, counted in its stats."""

    def __init__(
        self, state: DataWorksState, stats: SimStats, faults: Faults, rng: random.Random
    ) -> None:
        self.state = state
        self.stats = stats
        self._faults = faults
        self._rng = rng

    @property
    def faults(self) -> Faults:
        return self._faults

    def operate(self, action: ApiAction, call: Call, rid: str, host: str) -> Answer:
        try:
            return HANDLERS[action.name](self, call, rid)
        except SimError as exc:
            return error(rid, host, exc.status, exc.code, exc.message)

    def create_export(self, call: Call, rid: str) -> Answer:
        data = self.state.create_export_migration(call.params, call.now, call.access_key)
        self.stats.creates_applied += 1
        self.stats.creates_by_key[call.access_key] += 1
        span = self.stats.create_span.setdefault(call.access_key, [call.now, call.now])
        span[1] = call.now
        self.stats.duplicates_created = self.state.duplicates
        return ok(rid, data)

    def create_import(self, call: Call, rid: str) -> Answer:
        data = self.state.create_import_migration(call.params, call.now, call.access_key)
        record = self.state.migrations[data]
        self.stats.creates_applied += 1  # exports and imports alike
        self.stats.imports_applied += 1
        self.stats.duplicate_imports = self.state.duplicate_imports
        self.stats.duplicates_created = self.state.duplicates
        self.stats.imports[data] = ImportMade(
            record.project_id,
            record.name,
            data,
            record.source_migration_id,
            created_by=call.access_key,
        )
        return ok(rid, data, detailed=True)

    def start(self, call: Call, rid: str) -> Answer:
        will_fail = draw_export_failure(self._faults, self._rng)  # drawn for every start, as ever
        started, message = self.state.start_migration(
            call.params,
            call.now,
            will_fail=will_fail,
            import_end=lambda: draw_import_end(self._faults, self._rng),
        )
        if started:
            self.stats.starts_applied += 1
            migration_id = int(call.params["MigrationId"].strip())
            made = self.stats.imports.get(migration_id)
            if made is not None:
                status = self.state.migrations[migration_id].end_status_name()
                self.stats.imports[migration_id] = replace(made, status=status)
        code = "" if started else "Invalid.Migration.Status"
        return ok(rid, started, detailed=True, code=code, message=message)

    def summary(self, call: Call, rid: str) -> Answer:
        return ok(rid, self.state.get_migration_summary(call.params, call.now, call.base_url))

    def process(self, call: Call, rid: str) -> Answer:
        return ok(rid, self.state.get_migration_process(call.params, call.now), detailed=True)

    def list(self, call: Call, rid: str) -> Answer:
        return ok(rid, self.state.list_migrations(call.params, call.now, call.base_url))


HANDLERS: dict[str, Callable[[Service, Call, str], Answer]] = {
    CREATE_EXPORT.name: Service.create_export,
    CREATE_IMPORT.name: Service.create_import,
    START.name: Service.start,
    GET_SUMMARY.name: Service.summary,
    GET_PROCESS.name: Service.process,
    LIST.name: Service.list,
}
assert set(HANDLERS) == set(ACTIONS), "every API action has a simulator handler"
