"""The simulator over HTTP: operations, error bodies, faults, throttling and the signature check."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import zipfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runner.dataworks import signing
from runner.dataworks.credentials import Credentials
from runner.sim.app import STATE, STATS, Checker, SimConfig, Sleep, allow_all, build_app
from runner.sim.auth import AuthFailure, IncomingRequest, Key
from runner.sim.faults import Faults
from runner.sim.server import run_forever, serve
from runner.sim.service import SimStats
from runner.sim.state import DataWorksState

T0 = 1_700_000_000.0
VERSION = "2020-05-18"
KEY = Key("sim-ak", "sim-secret")
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
UUID_UPPER = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$")
CREATE = {"ProjectId": "12345", "Name": "n1", "ExportMode": "FULL", "Description": "d"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class EpochClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class SleepRecorder:
    """An injected sleep that returns at once and remembers what it was asked."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


@dataclass
class Harness:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    clock: EpochClock
    sleeps: SleepRecorder

    @property
    def stats(self) -> SimStats:
        return self.app[STATS]

    @property
    def state(self) -> DataWorksState:
        return self.app[STATE]

    async def call(
        self,
        action: str,
        params: Mapping[str, str] | None = None,
        *,
        version: str = VERSION,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """An unsigned V3-style POST (the permissive checker lets it through)."""
        sent = {
            "x-acs-action": action,
            "x-acs-version": version,
            "content-type": "application/x-www-form-urlencoded",
            **(headers or {}),
        }
        body = urlencode(dict(params or {}))
        async with self.client.post("/", data=body, headers=sent) as resp:
            return Answer(resp.status, await resp.json(), dict(resp.headers))

    async def signed(
        self,
        action: str,
        params: Mapping[str, str],
        *,
        key: Key = KEY,
        signature_version: signing.SignatureVersion = "v3",
        nonce: str = "0123456789abcdef0123456789abcdef",
    ) -> Answer:
        """A request signed by the project's signer, on the simulator's clock."""
        request = signing.build_request(
            signature_version=signature_version,
            method="POST",
            host=f"127.0.0.1:{self.client.port}",
            action=action,
            api_version=VERSION,
            body_params=params,
            credentials=Credentials(key.access_key_id, key.access_key_secret),
            timestamp=signing.timestamp_of(datetime.fromtimestamp(self.clock.now, UTC)),
            nonce=nonce,
        )
        async with self.client.request(
            "POST", request.path_and_query, headers=request.headers, data=request.body
        ) as resp:
            return Answer(resp.status, await resp.json(), dict(resp.headers))


@contextlib.asynccontextmanager
async def running(
    *,
    faults: Faults | None = None,
    checker: Checker | None = allow_all,
    sleep: Sleep | None = None,
    seed: int = 0,
    export_duration: float = 10.0,
    unique_names: bool = True,
) -> AsyncIterator[Harness]:
    clock = EpochClock()
    sleeps = SleepRecorder()
    config = SimConfig(
        keys={KEY.access_key_id: KEY},
        faults=faults or Faults(),
        seed=seed,
        clock=clock,
        sleep=sleep or sleeps,
        export_duration=export_duration,
        download_ttl=60.0,
        checker=checker,
        unique_names=unique_names,
    )
    app = build_app(config)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Harness(client, app, clock, sleeps)


def _assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status
    assert set(answer.body) == ERROR_KEYS
    assert answer.body["Code"] == code
    assert answer.headers["x-acs-request-id"] == answer.body["RequestId"]
    assert code in answer.body["Recommend"]


# -- operations ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_create_answers_the_documented_body() -> None:
    """CreateExportMigration answers exactly RequestId, Data (int64 id) and Success."""
    async with running() as sim:
        answer = await sim.call("CreateExportMigration", CREATE)
    assert answer.status == 200
    assert set(answer.body) == {"RequestId", "Data", "Success"}
    assert answer.body["Data"] == 100001
    assert answer.body["Success"] is True
    assert UUID_UPPER.match(answer.body["RequestId"])
    assert answer.headers["x-acs-request-id"] == answer.body["RequestId"]
    assert sim.stats.creates_applied == 1


@pytest.mark.anyio
async def test_start_and_reads_answer_the_documented_bodies() -> None:
    """StartMigration and GetMigrationProcess carry HttpStatusCode/ErrorCode/ErrorMessage;
    GetMigrationSummary and ListMigrations do not."""
    detailed = {"RequestId", "Data", "Success", "HttpStatusCode", "ErrorCode", "ErrorMessage"}
    async with running() as sim:
        mid = (await sim.call("CreateExportMigration", CREATE)).body["Data"]
        ask = {"ProjectId": "12345", "MigrationId": str(mid)}
        start = await sim.call("StartMigration", ask)
        assert set(start.body) == detailed
        assert (start.body["Data"], start.body["HttpStatusCode"]) == (True, 200)
        process = await sim.call("GetMigrationProcess", ask)
        assert set(process.body) == detailed
        assert {"TaskName", "TaskStatus"} == set(process.body["Data"][0])
        summary = await sim.call("GetMigrationSummary", ask)
        assert set(summary.body) == {"RequestId", "Data", "Success"}
        assert summary.body["Data"]["Status"] == "EXPORTING"
        assert summary.body["Data"]["MigrationId"] == mid
        listing = await sim.call(
            "ListMigrations", {"ProjectId": "12345", "MigrationType": "EXPORT"}
        )
        assert set(listing.body) == {"RequestId", "Data", "Success"}
        data = listing.body["Data"]
        assert (data["PageNumber"], data["PageSize"], data["TotalCount"]) == (1, 10, 1)
        assert data["Migrations"][0]["Id"] == mid
        again = await sim.call("StartMigration", ask)
        assert again.body["Data"] is False
        assert again.body["ErrorMessage"]


@pytest.mark.anyio
async def test_v1_style_get_with_query_parameters() -> None:
    """Action and Version in the query, parameters in the query string, GET: still answered."""
    async with running() as sim:
        query = {"Action": "CreateExportMigration", "Version": VERSION, **CREATE}
        async with sim.client.get("/?" + urlencode(query)) as resp:
            body = await resp.json()
    assert resp.status == 200
    assert body["Data"] == 100001


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "code", "name"),
    [
        ({"ProjectId": "12345", "ExportMode": "FULL"}, "MissingParameter", "Name"),
        ({"Name": "n", "ExportMode": "FULL"}, "MissingParameter", "ProjectId"),
        ({"ProjectId": "12345", "Name": "n"}, "MissingParameter", "ExportMode"),
        ({"ProjectId": "x", "Name": "n", "ExportMode": "FULL"}, "InvalidParameter", "ProjectId"),
        ({"ProjectId": "12345", "Name": "n", "ExportMode": "X"}, "InvalidParameter", "ExportMode"),
        (
            {"ProjectId": "12345", "Name": "n", "ExportMode": "INCREMENTAL"},
            "InvalidParameter",
            "IncrementalSince",
        ),
    ],
)
async def test_create_validation_errors(params: dict[str, str], code: str, name: str) -> None:
    """Validation errors answer 400 with the gateway body naming the parameter."""
    async with running() as sim:
        answer = await sim.call("CreateExportMigration", params)
        assert not sim.state.migrations
    _assert_error(answer, 400, code)
    assert name in answer.body["Message"]


@pytest.mark.anyio
async def test_list_paging_errors_over_http() -> None:
    """A PageSize over 100 and a missing MigrationType answer 400."""
    async with running() as sim:
        big = await sim.call(
            "ListMigrations", {"ProjectId": "12345", "MigrationType": "EXPORT", "PageSize": "101"}
        )
        untyped = await sim.call("ListMigrations", {"ProjectId": "12345"})
    _assert_error(big, 400, "InvalidParameter")
    _assert_error(untyped, 400, "MissingParameter")


@pytest.mark.anyio
async def test_duplicate_name_over_http() -> None:
    """A second create with the same name answers Invalid.Param '... already exists ...'."""
    async with running() as sim:
        await sim.call("CreateExportMigration", CREATE)
        answer = await sim.call("CreateExportMigration", CREATE)
        assert len(sim.state.migrations) == 1
    _assert_error(answer, 400, "Invalid.Param")
    assert answer.body["Message"] == "The export task name 'n1' already exists in project 12345."


@pytest.mark.anyio
async def test_pages_over_http() -> None:
    """Pages of ten, by id ascending, with the total count."""
    async with running() as sim:
        for i in range(12):
            await sim.call("CreateExportMigration", {**CREATE, "Name": f"t{i}"})
        page2 = await sim.call(
            "ListMigrations", {"ProjectId": "12345", "MigrationType": "EXPORT", "PageNumber": "2"}
        )
    data = page2.body["Data"]
    assert (data["PageNumber"], data["TotalCount"]) == (2, 12)
    assert [m["Id"] for m in data["Migrations"]] == [100011, 100012]


@pytest.mark.anyio
async def test_lifecycle_and_download() -> None:
    """On the fake clock the export finishes, its URL serves a zip, and expires."""
    async with running(export_duration=10.0) as sim:
        mid = (await sim.call("CreateExportMigration", CREATE)).body["Data"]
        ask = {"ProjectId": "12345", "MigrationId": str(mid)}
        assert (await sim.call("GetMigrationSummary", ask)).body["Data"]["Status"] == "INIT"
        await sim.call("StartMigration", ask)
        sim.clock.now += 10.0
        summary = (await sim.call("GetMigrationSummary", ask)).body["Data"]
        assert summary["Status"] == "EXPORT_SUCCESS"
        url = urlsplit(summary["DownloadUrl"])
        assert url.netloc == f"127.0.0.1:{sim.client.port}"
        path = f"{url.path}?{url.query}"
        async with sim.client.get(path) as resp:
            assert resp.status == 200
            package = zipfile.ZipFile(io.BytesIO(await resp.read()))
        assert "manifest.json" in package.namelist()
        sim.clock.now += 61.0
        async with sim.client.get(path) as resp:
            assert resp.status == 403
        assert sim.stats.downloads == 1


@pytest.mark.anyio
async def test_unknown_action_and_version() -> None:
    """An unknown action or another version answers 404 InvalidApi.NotFound."""
    async with running() as sim:
        unknown = await sim.call("DeleteEverything", CREATE)
        old = await sim.call("CreateExportMigration", CREATE, version="2017-12-12")
        assert not sim.state.migrations
    _assert_error(unknown, 404, "InvalidApi.NotFound")
    _assert_error(old, 404, "InvalidApi.NotFound")


@pytest.mark.anyio
async def test_missing_project() -> None:
    """A project listed as missing answers 400 Invalid.Tenant.ProjectNotExists."""
    async with running(faults=Faults(missing_projects=frozenset({12345}))) as sim:
        answer = await sim.call("CreateExportMigration", CREATE)
    _assert_error(answer, 400, "Invalid.Tenant.ProjectNotExists")
    assert answer.body["Message"] == "The project does not exist."


# -- faults --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_error_fault_changes_nothing() -> None:
    """error_rate=1: writes answer 503/500 and nothing is created; reads are spared."""
    async with running(faults=Faults(error_rate=1.0)) as sim:
        answers = [await sim.call("CreateExportMigration", CREATE) for _ in range(8)]
        listing = await sim.call(
            "ListMigrations", {"ProjectId": "12345", "MigrationType": "EXPORT"}
        )
        assert not sim.state.migrations
        assert sum(sim.stats.faults.values()) == 8
    codes = {(a.status, a.body["Code"]) for a in answers}
    assert codes == {(503, "ServiceUnavailable"), (500, "InternalError.System")}
    assert listing.status == 200


@pytest.mark.anyio
async def test_faults_are_reproducible_with_the_seed() -> None:
    """The same seed gives the same sequence of answers."""

    async def statuses(seed: int) -> list[int]:
        async with running(faults=Faults(error_rate=0.5), seed=seed) as sim:
            return [
                (await sim.call("CreateExportMigration", {**CREATE, "Name": f"t{i}"})).status
                for i in range(20)
            ]

    first, second = await statuses(3), await statuses(3)
    assert first == second
    assert 200 in first
    assert any(s >= 500 for s in first)


@pytest.mark.anyio
async def test_timeout_fault_applies_the_effect_then_hangs() -> None:
    """timeout_rate=1: the task exists while the answer is still held back for hang_seconds."""
    entered, release = asyncio.Event(), asyncio.Event()
    asked: list[float] = []

    async def hang(seconds: float) -> None:
        asked.append(seconds)
        entered.set()
        await release.wait()

    async with running(faults=Faults(timeout_rate=1.0, hang_seconds=30.0), sleep=hang) as sim:
        pending = asyncio.create_task(sim.call("CreateExportMigration", CREATE))
        await entered.wait()
        assert [m.name for m in sim.state.migrations.values()] == ["n1"]
        assert not pending.done()
        release.set()
        late = await pending
        assert sim.stats.faults["timeout"] == 1
    assert asked == [30.0]
    assert late.status == 200


@pytest.mark.anyio
async def test_reset_fault_applies_the_effect_and_drops_the_connection() -> None:
    """reset_rate=1: the client gets no answer, yet the task was created."""
    async with running(faults=Faults(reset_rate=1.0)) as sim:
        with pytest.raises(aiohttp.ClientError):
            await sim.call("CreateExportMigration", CREATE)
        assert len(sim.state.migrations) == 1
        assert sim.stats.faults["reset"] == 1
        assert sim.stats.creates_applied == 1
        ok = await sim.call("ListMigrations", {"ProjectId": "12345", "MigrationType": "EXPORT"})
    assert ok.body["Data"]["TotalCount"] == 1


@pytest.mark.anyio
async def test_applied_error_fault_creates_then_answers_500() -> None:
    """applied_error_rate=1: the task is created, yet the answer is 500 InternalError.System."""
    async with running(faults=Faults(applied_error_rate=1.0)) as sim:
        answer = await sim.call("CreateExportMigration", CREATE)
        assert len(sim.state.migrations) == 1
        assert sim.stats.faults["applied_error"] == 1
    _assert_error(answer, 500, "InternalError.System")


@pytest.mark.anyio
async def test_duplicates_are_made_and_counted_when_names_are_not_unique() -> None:
    """With unique_names off a second create of a name succeeds and is counted as a duplicate."""
    async with running(unique_names=False) as sim:
        first = await sim.call("CreateExportMigration", CREATE)
        second = await sim.call("CreateExportMigration", CREATE)
        assert first.status == second.status == 200
        assert len(sim.state.migrations) == 2
        assert sim.stats.snapshot()["duplicates_created"] == 1


@pytest.mark.anyio
async def test_latency_uses_the_injected_sleep() -> None:
    """Latency is slept through the injected sleep, on every request."""
    async with running(faults=Faults(latency=0.25)) as sim:
        await sim.call("CreateExportMigration", CREATE)
        await sim.call("ListMigrations", {"ProjectId": "12345", "MigrationType": "EXPORT"})
        assert sim.sleeps.calls == [0.25, 0.25]


@pytest.mark.anyio
async def test_export_failure_fault() -> None:
    """export_failure_rate=1: the started export ends EXPORT_ERROR."""
    async with running(faults=Faults(export_failure_rate=1.0), export_duration=1.0) as sim:
        mid = (await sim.call("CreateExportMigration", CREATE)).body["Data"]
        ask = {"ProjectId": "12345", "MigrationId": str(mid)}
        await sim.call("StartMigration", ask)
        sim.clock.now += 2.0
        summary = await sim.call("GetMigrationSummary", ask)
    assert summary.body["Data"]["Status"] == "EXPORT_ERROR"


# -- throttling ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_throttling_exactly_at_the_qps_limit() -> None:
    """N calls in one clock second pass, the N+1th gets 429 Throttling.User; reads count too."""
    faults = Faults(qps_limit=3, retry_after=True)
    async with running(faults=faults) as sim:
        listing = {"ProjectId": "12345", "MigrationType": "EXPORT"}
        passed = [await sim.call("ListMigrations", listing) for _ in range(3)]
        refused = await sim.call("CreateExportMigration", CREATE)
        sim.clock.now += 1.0
        later = await sim.call("CreateExportMigration", CREATE)
        assert sim.stats.throttled == 1
        assert len(sim.state.migrations) == 1
    assert [a.status for a in passed] == [200] * 3
    _assert_error(refused, 429, "Throttling.User")
    assert refused.body["Message"] == "Your request is too frequent. Try again later."
    assert refused.headers["x-acs-retry-after"] == "334"
    assert later.status == 200


@pytest.mark.anyio
async def test_throttling_is_per_access_key() -> None:
    """Each access key has its own bucket."""
    async with running(faults=Faults(qps_limit=1)) as sim:
        a = await sim.call("CreateExportMigration", {**CREATE, "AccessKeyId": "a"})
        b = await sim.call("CreateExportMigration", {**CREATE, "Name": "n2", "AccessKeyId": "b"})
        a2 = await sim.call("CreateExportMigration", {**CREATE, "Name": "n3", "AccessKeyId": "a"})
    assert (a.status, b.status, a2.status) == (200, 200, 429)
    assert "x-acs-retry-after" not in a2.headers


@pytest.mark.anyio
async def test_daily_quota() -> None:
    """Past the daily quota every call answers 429 Throttling.Api.Risk."""
    async with running(faults=Faults(daily_quota=2)) as sim:
        for i in range(2):
            sim.clock.now += 5
            assert (
                await sim.call("CreateExportMigration", {**CREATE, "Name": f"q{i}"})
            ).status == 200
        over = await sim.call("CreateExportMigration", {**CREATE, "Name": "q3"})
    _assert_error(over, 429, "Throttling.Api.Risk")


# -- signature check -----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("signature_version", ["v3", "v1"])
async def test_real_signature_check_accepts_signed_requests(
    signature_version: signing.SignatureVersion,
) -> None:
    """With the default checker, requests signed by the project's signer are served."""
    async with running(checker=None) as sim:
        answer = await sim.signed(
            "CreateExportMigration", CREATE, signature_version=signature_version
        )
        assert sim.stats.auth_failures == 0
    assert answer.status == 200
    assert answer.body["Data"] == 100001


@pytest.mark.anyio
async def test_real_signature_check_refuses_bad_requests() -> None:
    """A wrong secret, an unknown key and a replayed nonce are refused before any effect."""
    async with running(checker=None) as sim:
        wrong = await sim.signed("CreateExportMigration", CREATE, key=Key("sim-ak", "nope"))
        unknown = await sim.signed(
            "CreateExportMigration", CREATE, key=Key("who", "x"), nonce="b" * 32
        )
        unsigned = await sim.call("CreateExportMigration", CREATE)
        first = await sim.signed(
            "ListMigrations", {"ProjectId": "2", "MigrationType": "EXPORT"}, nonce="c" * 32
        )
        replay = await sim.signed(
            "ListMigrations", {"ProjectId": "2", "MigrationType": "EXPORT"}, nonce="c" * 32
        )
        assert not sim.state.migrations
        assert sim.stats.auth_failures == 4
    _assert_error(wrong, 400, "SignatureDoesNotMatch")
    _assert_error(unknown, 404, "InvalidAccessKeyId.NotFound")
    _assert_error(unsigned, 400, "IncompleteSignature")
    assert first.status == 200
    _assert_error(replay, 400, "SignatureNonceUsed")


@pytest.mark.anyio
async def test_injected_checker_failure_is_answered() -> None:
    """An injected checker's AuthFailure is answered with its status and code."""
    seen: list[IncomingRequest] = []

    def refuse(request: IncomingRequest) -> AuthFailure:
        seen.append(request)
        return AuthFailure(403, "Forbidden.RAM", "no")

    async with running(checker=refuse) as sim:
        answer = await sim.call("CreateExportMigration", CREATE)
    _assert_error(answer, 403, "Forbidden.RAM")
    assert seen[0].headers["x-acs-action"] == "CreateExportMigration"
    assert b"Name=n1" in seen[0].body


# -- server --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_serve_binds_loopback_and_answers() -> None:
    """serve() yields http://127.0.0.1:PORT on a free port and answers there."""
    config = SimConfig(checker=allow_all)
    async with serve(config) as url, aiohttp.ClientSession() as session:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        headers = {"x-acs-action": "CreateExportMigration", "x-acs-version": VERSION}
        async with session.post(url + "/", data=CREATE, headers=headers) as resp:
            body = await resp.json()
    assert body["Data"] == 100001
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        async with serve(config, host="0.0.0.0"):
            pass


# -- the official SDK as a client ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("algorithm", ["ACS3-HMAC-SHA256", "v2"])
async def test_official_sdk_drives_the_simulator(algorithm: str) -> None:
    """The official SDK (V3 and legacy V1 signing) creates, starts, reads and lists, and sees
    throttling as its ThrottlingException with retry_after in ms."""
    pytest.importorskip("alibabacloud_dataworks_public20200518")
    from alibabacloud_dataworks_public20200518 import models as dw
    from alibabacloud_dataworks_public20200518.client import Client
    from alibabacloud_tea_openapi.exceptions import ThrottlingException
    from alibabacloud_tea_openapi.utils_models import Config

    config = SimConfig(
        keys={KEY.access_key_id: KEY},
        faults=Faults(qps_limit=4, retry_after=True),
        export_duration=0.0,
    )
    async with serve(config) as url:
        sdk = Client(
            Config(
                access_key_id=KEY.access_key_id,
                access_key_secret=KEY.access_key_secret,
                endpoint=urlsplit(url).netloc,
                protocol="http",
                signature_algorithm=algorithm,
            )
        )

        def drive() -> tuple[int, str, int, int | None]:
            created = sdk.create_export_migration(
                dw.CreateExportMigrationRequest(
                    project_id=12345, name="sdk task", export_mode="FULL", description="é & +"
                )
            )
            mid = created.body.data
            sdk.start_migration(dw.StartMigrationRequest(project_id=12345, migration_id=mid))
            summary = sdk.get_migration_summary(
                dw.GetMigrationSummaryRequest(project_id=12345, migration_id=mid)
            )
            listing = sdk.list_migrations(
                dw.ListMigrationsRequest(project_id=12345, migration_type="EXPORT")
            )
            retry_after: int | None = None
            try:
                for _ in range(50):
                    sdk.list_migrations(
                        dw.ListMigrationsRequest(project_id=12345, migration_type="EXPORT")
                    )
            except ThrottlingException as exc:
                retry_after = exc.retry_after
            return mid, summary.body.data.status, listing.body.data.total_count, retry_after

        mid, status, total, retry_after = await asyncio.to_thread(drive)
    assert mid == 100001
    assert status == "EXPORT_SUCCESS"
    assert total == 1
    assert retry_after is not None
    assert retry_after > 0


def test_run_forever_announces_the_url_and_stops_on_ctrl_c() -> None:
    """run_forever announces http://127.0.0.1:PORT and returns quietly on Ctrl-C."""
    announced: list[str] = []

    def announce(url: str) -> None:
        announced.append(url)
        raise KeyboardInterrupt

    run_forever(SimConfig(checker=allow_all), 0, announce=announce)
    assert len(announced) == 1
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", announced[0])


@pytest.mark.anyio
async def test_serve_ends_a_hang_when_the_client_gives_up() -> None:
    """A client that gives up during a timeout fault's hang frees the server at once."""
    hanging = asyncio.Event()

    async def hang(seconds: float) -> None:
        hanging.set()
        await asyncio.sleep(seconds)

    config = SimConfig(checker=allow_all, faults=Faults(timeout_rate=1.0), sleep=hang)
    loop = asyncio.get_running_loop()
    async with serve(config) as url:
        async with aiohttp.ClientSession() as session:
            headers = {"x-acs-action": "CreateExportMigration", "x-acs-version": VERSION}
            pending = asyncio.create_task(session.post(url + "/", data=CREATE, headers=headers))
            await hanging.wait()
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
        closing = loop.time()
    assert loop.time() - closing < 5.0
