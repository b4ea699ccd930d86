"""The simulator's HTTP face: an aiohttp application that answers like the DataWorks endpoint.

Every API request, POST or GET on `/`, goes through the same steps: find the operation
(`x-acs-action`/`Action`, `x-acs-version`/`Version`), check the signature, apply the per-key
throttling, draw a fault, run the operation on the in-memory state, answer. Timeouts and resets
are drawn before the operation but play out after it: the effect is applied and the answer is
lost, which is what gives the client an unknown outcome. `/download/<id>.zip` serves the export
packages behind the presigned DownloadUrls.

Two more products answer on the same address. By version: STS (`runner.sim.sts`) and
OpenPlatform's AuthorizeFileUpload (`runner.sim.openplatform`), the latter checked, throttled and
faulted as a DataWorks read. By Host: a request whose Host header is `<bucket>.<endpoint>` for a
bucket AuthorizeFileUpload granted goes to OSS PostObject (`runner.sim.oss_http`), before
anything else is looked at: the runner connects to the simulator and sends that Host.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from runner.dataworks.actions import (
    ACTIONS,
    AUTHORIZE_UPLOAD,
    DATAWORKS_VERSION,
    OPENPLATFORM_VERSION,
    ApiAction,
)
from runner.dataworks.checksums import CRC64_HEADER, crc64_update
from runner.sim import auth
from runner.sim.auth import AuthFailure, IncomingRequest, Key, NonceCache
from runner.sim.faults import (
    FAULT_ERRORS,
    Fault,
    Faults,
    Throttle,
    draw_fault,
    draw_latency,
)
from runner.sim.hostile import HostileDraw, draw_hostile, hostile_answer
from runner.sim.objects import DEFAULT_MAX_SIZE, ObjectStore
from runner.sim.openplatform import OpenPlatformService
from runner.sim.oss import OssService, UploadDropped, error_answer
from runner.sim.oss_http import handle_post
from runner.sim.packages import export_package
from runner.sim.service import Answer, Call, Service, SimStats, access_key_of, error, params_of
from runner.sim.state import DataWorksState, SimError
from runner.sim.sts import CREDENTIALS_PATH, STS_VERSION, Issuer, StsService

API_VERSION = DATAWORKS_VERSION
NOT_FOUND_MESSAGE = "Specified api is not found, please check your url and method."
ANONYMOUS = "anonymous"

Checker = Callable[[IncomingRequest], AuthFailure | None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a simulator instance is built from."""

    keys: Mapping[str, Key] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    clock: Callable[[], float] = time.time  # epoch seconds
    sleep: Sleep = asyncio.sleep  # used for latency and for the timeout fault's hang
    export_duration: float = 5.0  # seconds from StartMigration to EXPORT_SUCCESS
    download_ttl: float = 3600.0  # seconds a DownloadUrl stays valid after it is read
    checker: Checker | None = None  # replaces the signature check (tests, open mode)
    unique_names: bool = True  # False: a taken name is accepted again and the copy counted
    import_duration: float = 5.0  # seconds from StartMigration to the end of an import
    upload_max_bytes: int = DEFAULT_MAX_SIZE  # the grants' content-length-range maximum
    spool_dir: str | None = None  # where OSS posts are spooled while they arrive; None: $TMPDIR


STATS = web.AppKey("runner_sim_stats", SimStats)
STATE = web.AppKey("runner_sim_state", DataWorksState)


def default_checker(config: SimConfig, keys: Mapping[str, Key] | None = None) -> Checker:
    """The real signature check against the configured keys (or `keys`), on the config's clock."""
    nonces = NonceCache()
    accepted = config.keys if keys is None else keys

    def check(request: IncomingRequest) -> AuthFailure | None:
        now = datetime.fromtimestamp(config.clock(), UTC)
        return auth.verify(request, accepted, now, nonces=nonces)

    return check


def allow_all(request: IncomingRequest) -> AuthFailure | None:
    """A checker that accepts every request (open mode and tests that are not about auth)."""
    return None


def build_app(config: SimConfig) -> web.Application:
    sim = _Simulator(config)
    app = web.Application()
    app[STATS] = sim.stats
    app[STATE] = sim.state
    app.router.add_route("POST", "/", sim.handle_api)
    app.router.add_route("GET", "/", sim.handle_api)
    app.router.add_route("GET", "/download/{migration_id:\\d+}.zip", sim.handle_download)
    app.router.add_route("GET", "/_sim/stats", sim.handle_stats)
    app.router.add_route("GET", CREDENTIALS_PATH, sim.handle_credentials)
    return app


class _Simulator:
    async def handle_stats(self, request: web.Request) -> web.Response:
        """The simulator's counters as JSON, for rehearsals and tests driving it from outside."""
        return web.json_response(self.stats.snapshot())

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        objects = ObjectStore.for_seed(
            config.seed,
            policy_ttl=config.faults.upload_policy_ttl,
            max_size=config.upload_max_bytes,
        )
        self.state = DataWorksState(
            duration=config.export_duration,
            import_duration=config.import_duration,
            objects=objects,
            download_ttl=config.download_ttl,
            missing_projects=frozenset(config.faults.missing_projects),
            url_secret=f"runner-sim-{config.seed}".encode(),
            unique_names=config.unique_names,
            apply_lag=config.faults.apply_lag,
            max_page_size=config.faults.max_page_size,
        )
        self.throttle = Throttle(config.faults)
        self.rng = random.Random(config.seed)
        self.service = Service(self.state, self.stats, config.faults, self.rng)
        # OpenPlatform has its own limits (per key, as DataWorks's) and OSS its own draws
        self.openplatform_throttle = Throttle(config.faults)
        self.openplatform = OpenPlatformService(objects, self.stats)
        oss_rng = random.Random(f"oss-faults-{config.seed}")
        self.oss = OssService(
            objects, self.stats, config.faults, oss_rng, config.clock, spool_dir=config.spool_dir
        )
        self._ids = random.Random(f"request-ids-{config.seed}")
        # STS: minted keys are accepted besides the configured ones, until they expire
        self.issuer = Issuer(config.faults, random.Random(f"sts-{config.seed}"), self.stats)
        keys = collections.ChainMap(self.issuer.keys, dict(config.keys))
        checker = config.checker or default_checker(config, keys)
        self.checker = self.issuer.guard(checker, config.clock)
        self.sts = StsService(self.issuer, self.stats, self.checker, config.clock)

    async def handle_credentials(self, request: web.Request) -> web.Response:
        """A credentials URI (ALIBABA_CLOUD_CREDENTIALS_URI): a fresh key at every GET."""
        return web.json_response(self.sts.credentials_uri())

    def request_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4)).upper()

    async def handle_api(self, request: web.Request) -> web.StreamResponse:
        faults = self.config.faults
        rid = self.request_id()
        if self.oss.owns(request.host):  # `<bucket>.<endpoint>`: OSS, before anything else
            return await self.handle_oss(request, rid)
        body = await request.read()
        query = dict(request.query)
        headers = {name.lower(): value for name, value in request.headers.items()}
        delay = draw_latency(faults, self.rng)
        if delay > 0:
            await self.config.sleep(delay)

        action = headers.get("x-acs-action") or query.get("Action") or ""
        version = headers.get("x-acs-version") or query.get("Version") or ""
        self.stats.requests[action or "(none)"] += 1
        incoming = IncomingRequest(request.method, request.path, query, headers, body)
        if version == STS_VERSION:  # the second product: STS (runner.sim.sts)
            answer = self.sts.handle(incoming, action, rid, request.host)
            return _json(answer.status, answer.body, rid)
        row = _row(action, version)
        if row is None:
            return _error(request, rid, 404, "InvalidApi.NotFound", NOT_FOUND_MESSAGE)

        failure = self.checker(incoming)
        if failure is not None:
            self.stats.auth_failures += 1
            return _error(request, rid, failure.status, failure.code, failure.message)

        params = params_of(query, headers, body)
        signer = access_key_of(headers, params)
        self.stats.signed_by[signer] += 1
        throttle = self.throttle if row.name in ACTIONS else self.openplatform_throttle
        rejection = throttle.check(self.issuer.account_of(signer), self.config.clock())
        if rejection is not None:
            self.stats.throttled += 1
            extra = {}
            if rejection.retry_after_ms is not None:
                extra["x-acs-retry-after"] = str(rejection.retry_after_ms)
            return _error(request, rid, rejection.status, rejection.code, rejection.message, extra)

        if row.name in ACTIONS:  # hostile answers are DataWorks's
            hostile = draw_hostile(faults.hostile_rate, self.rng, row)
            if hostile is not None:
                return self._hostile(request, hostile, action, params, headers, rid)

        fault = draw_fault(faults, self.rng, is_write=row.mutating, action=row.name)
        if fault in FAULT_ERRORS:
            self.stats.faults[fault.value] += 1
            status, code, message = FAULT_ERRORS[fault]
            return _error(request, rid, status, code, message)

        call = Call(
            params,
            access_key_of(headers, params),
            self.config.clock(),
            f"{request.scheme}://{request.host}",
        )
        answer = self._operate(row, call, rid, request.host)
        response = _json(answer.status, answer.body, rid)

        if fault is Fault.TIMEOUT:
            self.stats.faults[fault.value] += 1
            await self.config.sleep(faults.hang_seconds)
        elif fault is Fault.RESET:
            self.stats.faults[fault.value] += 1
            return _drop_connection(request)
        elif fault is Fault.APPLIED_ERROR:
            self.stats.faults[fault.value] += 1
            status, code, message = FAULT_ERRORS[Fault.INTERNAL]
            return _error(request, rid, status, code, message)
        return response

    def _operate(self, row: ApiAction, call: Call, rid: str, host: str) -> Answer:
        if row.name in ACTIONS:
            return self.service.operate(row, call, rid, host)
        return self.openplatform.handle(row.name, call.params, call.now, rid, host)

    async def handle_oss(self, request: web.Request, rid: str) -> web.StreamResponse:
        """OSS PostObject (runner.sim.oss_http); the upload_reset fault drops the connection."""
        try:
            return await handle_post(self.oss, request, rid)
        except UploadDropped:
            return _drop_connection(request)

    def _hostile(
        self,
        request: web.Request,
        draw: HostileDraw,
        action: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        rid: str,
    ) -> web.Response:
        """A hostile answer (runner.sim.hostile), after applying the operation when drawn so."""
        row = ACTIONS[action]
        body = None
        if draw.apply:
            call = Call(
                params,
                access_key_of(headers, params),
                self.config.clock(),
                f"{request.scheme}://{request.host}",
            )
            body = self.service.operate(row, call, rid, request.host).body
            if row.mutating:
                self.stats.hostile_applied += 1
        self.stats.faults[f"hostile_{draw.kind.value}"] += 1
        answer = hostile_answer(draw, row, body, rid)
        return web.Response(
            status=answer.status,
            body=answer.body,
            content_type=answer.content_type,
            headers={"x-acs-request-id": rid, **answer.headers},
        )

    async def handle_download(self, request: web.Request) -> web.StreamResponse:
        migration_id = int(request.match_info["migration_id"])
        expires = request.query.get("Expires", "")
        signature = request.query.get("Signature", "")
        try:
            record = self.state.check_download(
                migration_id, expires, signature, self.config.clock()
            )
        except SimError as exc:
            return _oss_error(self.request_id(), exc)
        self.stats.downloads += 1
        package = export_package(record)
        return web.Response(
            body=package,
            content_type="application/zip",
            # as OSS does: the object's CRC-64/ECMA, which the downloader checks
            headers={
                "x-oss-request-id": self.request_id(),
                CRC64_HEADER: str(crc64_update(0, package)),
            },
        )


def _error(
    request: web.Request,
    rid: str,
    status: int,
    code: str,
    message: str,
    extra_headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The gateway error body with its HTTP status."""
    answer = error(rid, request.host, status, code, message)
    return _json(answer.status, answer.body, rid, extra_headers)


def _json(
    status: int, body: Mapping[str, Any], rid: str, extra: Mapping[str, str] | None = None
) -> web.Response:
    headers = {"x-acs-request-id": rid, **(extra or {})}
    return web.Response(
        status=status,
        text=json.dumps(body, separators=(",", ":")),
        content_type="application/json",
        headers=headers,
    )


def _oss_error(rid: str, exc: SimError) -> web.Response:
    answer = error_answer(rid, exc)
    return web.Response(
        status=answer.status,
        text=answer.body,
        content_type="application/xml",
        headers=answer.headers,
    )


def _row(action: str, version: str) -> ApiAction | None:
    """The API action a request names by action and version, if the simulator has it."""
    if version == API_VERSION:
        return ACTIONS.get(action)
    if version == OPENPLATFORM_VERSION and action == AUTHORIZE_UPLOAD.name:
        return AUTHORIZE_UPLOAD
    return None


def _drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer: the client sees a reset or a disconnect."""
    request.protocol.force_close()
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp fails to write this to the aborted transport and lets it go quietly
    return web.Response(status=500)
