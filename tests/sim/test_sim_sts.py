"""The simulator's STS and credentials URI over HTTP: documented bodies, the signature check,
minted keys accepted until --sts-ttl and then refused as expired, revocation, stats."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiohttp import web

from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.signing import parse_timestamp
from runner.dataworks.sts import Sts, StsRefused
from runner.dataworks.transport import AiohttpTransport, HttpRequest
from runner.models import ApiError, ErrorKind, ExportMode, ExportSpec, TaskKey
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.server import serve
from runner.sim.service import SimStats

T0 = 1_800_000_000.0
KEY = Key("sim-ak", "sim-SECRET-7")
ROLE = "acs:ram::1234567890:role/runner"
SPEC = ExportSpec(TaskKey("cn-shanghai", 12345, "backup"), ExportMode.FULL)


class EpochClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sim:
    url: str
    clock: EpochClock
    app: web.Application
    transport: AiohttpTransport

    @property
    def stats(self) -> SimStats:
        return self.app[STATS]

    def sts(self, signature_version: str = "v1") -> Sts:
        return Sts(
            self.transport,
            self.url,
            signature_version="v3" if signature_version == "v3" else "v1",
            now=lambda: datetime.fromtimestamp(self.clock.now, UTC),
        )

    def client(self, key: Credentials) -> DataWorksClient:
        now = self.clock
        return DataWorksClient(
            self.transport,
            key,
            Endpoints(self.url),
            now=lambda: datetime.fromtimestamp(now(), UTC),
        )


@contextlib.asynccontextmanager
async def running(**faults: float) -> AsyncIterator[Sim]:
    clock = EpochClock()
    config = SimConfig(keys={KEY.access_key_id: KEY}, faults=Faults(**faults), clock=clock)  # type: ignore[arg-type]
    app = build_app(config)
    async with serve(config, app=app) as url, AiohttpTransport() as transport:
        yield Sim(url, clock, app, transport)


BASE = Credentials(KEY.access_key_id, KEY.access_key_secret)


@pytest.mark.anyio
@pytest.mark.parametrize("version", ["v1", "v3"])
async def test_assume_role_answers_the_documented_body(version: str) -> None:
    """AssumeRole, signed V1 or V3 by a configured key, mints a key for DurationSeconds."""
    async with running() as sim:
        key = await sim.sts(version).assume_role(
            BASE, role_arn=ROLE, session_name="nightly", duration=900
        )
        raw = await sim.transport.send(_assume_request(sim), 5.0)
    assert key.access_key_id.startswith("STS.")
    assert key.expiration == T0 + 900
    assert sim.stats.sts["assume_role"] == 2
    assert sim.stats.requests["AssumeRole"] == 2
    body = json.loads(raw.body)
    assert raw.status == 200
    assert set(body) == {"RequestId", "AssumedRoleUser", "Credentials"}
    assert body["AssumedRoleUser"]["Arn"] == f"{ROLE}/s2"
    creds = body["Credentials"]
    assert set(creds) == {"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}
    assert parse_timestamp(creds["Expiration"]).timestamp() == T0 + 3600  # ttl caps 3600 s


def _assume_request(sim: Sim) -> HttpRequest:
    from runner.dataworks import signing

    signed = signing.build_request(
        signature_version="v3",
        method="POST",
        host=sim.url.split("://")[1],
        action="AssumeRole",
        api_version="2015-04-01",
        body_params={"RoleArn": ROLE, "RoleSessionName": "s2", "DurationSeconds": "3600"},
        credentials=BASE,
        timestamp=signing.timestamp_of(datetime.fromtimestamp(T0, UTC)),
        nonce="f" * 32,
    )
    return HttpRequest("POST", sim.url + signed.path_and_query, signed.headers, signed.body)


@pytest.mark.anyio
async def test_assume_role_with_a_wrong_key_is_refused() -> None:
    """AssumeRole goes through the signature check: an unknown key or secret is refused."""
    async with running() as sim:
        with pytest.raises(StsRefused) as raised:
            await sim.sts().assume_role(
                Credentials(KEY.access_key_id, "wrong"),
                role_arn=ROLE,
                session_name="s1",
                duration=900,
            )
    assert raised.value.code == "SignatureDoesNotMatch"
    assert "wrong" not in str(raised.value)
    assert sim.stats.auth_failures == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arn", "session", "duration", "code"),
    [
        ("arn:aws:iam::1:role/x", "s1", 900, "InvalidParameter.RoleArn"),
        (ROLE, "a b", 900, "InvalidParameter.RoleSessionName"),
        (ROLE, "s1", 60, "InvalidParameter.DurationSeconds"),
    ],
)
async def test_assume_role_checks_its_parameters(
    arn: str, session: str, duration: int, code: str
) -> None:
    """Malformed parameters are refused 400 with the documented codes."""
    async with running() as sim:
        with pytest.raises(StsRefused) as raised:
            await sim.sts().assume_role(BASE, role_arn=arn, session_name=session, duration=duration)
    assert raised.value.code == code


@pytest.mark.anyio
async def test_assume_role_with_oidc_is_anonymous_and_needs_a_token() -> None:
    """AssumeRoleWithOIDC needs no signature, only a non-empty token."""
    async with running() as sim:
        sts = sim.sts()
        key = await sts.assume_role_with_oidc(
            role_arn=ROLE,
            provider_arn="acs:ram::1234567890:oidc-provider/ack",
            token="eyJ.token",
            session_name="pod",
            duration=3600,
        )
        with pytest.raises(StsRefused, match=r"InvalidParameter\.OIDCToken"):
            await sts.assume_role_with_oidc(
                role_arn=ROLE,
                provider_arn="acs:ram::1234567890:oidc-provider/ack",
                token=" ",
                session_name="pod",
                duration=3600,
            )
    assert key.access_key_id.startswith("STS.")
    assert sim.stats.sts["assume_role_with_oidc"] == 1


@pytest.mark.anyio
async def test_minted_keys_sign_until_they_expire() -> None:
    """A minted key signs until --sts-ttl has passed, then gets 400 InvalidSecurityToken.Expired."""
    async with running(sts_ttl=8.0) as sim:
        key = await sim.sts().assume_role(BASE, role_arn=ROLE, session_name="s1", duration=900)
        assert key.expiration == T0 + 8
        client = sim.client(key)
        await client.create_export_migration(SPEC)
        sim.clock.now += 8
        with pytest.raises(ApiError) as raised:
            await client.list_migrations("cn-shanghai", 12345)
    assert raised.value.code == "InvalidSecurityToken.Expired"
    assert raised.value.http_status == 400
    assert raised.value.message == "Specified SecurityToken is expired."
    assert raised.value.kind is ErrorKind.FATAL
    assert sim.stats.sts["expired_refused"] == 1
    assert sim.stats.signed_by == {key.access_key_id: 1}


@pytest.mark.anyio
async def test_credentials_uri_hands_out_a_fresh_key_each_time() -> None:
    """GET /_sim/credentials answers the credentials-URI body with Code Success."""
    async with running(sts_ttl=8.0) as sim:
        one = await sim.transport.send(HttpRequest("GET", f"{sim.url}/_sim/credentials", {}), 5)
        two = await sim.transport.send(HttpRequest("GET", f"{sim.url}/_sim/credentials", {}), 5)
    first, second = json.loads(one.body), json.loads(two.body)
    assert set(first) == {
        "Code",
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
        "LastUpdated",
    }
    assert first["Code"] == "Success"
    assert first["AccessKeyId"] != second["AccessKeyId"]
    assert parse_timestamp(first["Expiration"]).timestamp() == T0 + 8
    assert sim.stats.sts["credentials_uri"] == 2


@pytest.mark.anyio
async def test_revoked_keys_are_refused_before_their_expiry() -> None:
    """With --revoke-rate 1 every key is refused at some point before its Expiration."""
    async with running(sts_ttl=100.0, revoke_rate=1.0) as sim:
        key = await sim.sts().assume_role(BASE, role_arn=ROLE, session_name="s1", duration=900)
        client = sim.client(key)
        sim.clock.now += 80.1  # revoked within 20..80 % of its life
        with pytest.raises(ApiError, match=r"InvalidSecurityToken\.Expired"):
            await client.create_export_migration(SPEC)
    assert key.expiration == T0 + 100
    assert sim.stats.sts["keys_revoked"] == 1


@pytest.mark.anyio
async def test_unknown_sts_action_is_not_found() -> None:
    """An STS version with an action the simulator lacks answers 404 InvalidApi.NotFound."""
    async with running() as sim:
        request = HttpRequest(
            "POST", f"{sim.url}/?Action=GetCallerIdentity&Version=2015-04-01", {}, b""
        )
        answer = await sim.transport.send(request, 5)
    assert answer.status == 404
    assert json.loads(answer.body)["Code"] == "InvalidApi.NotFound"


def test_sts_errors_are_credentials_errors() -> None:
    """A refusal is a CredentialsError: a source that failed, with its code kept."""
    error = StsRefused("x: AssumeRole refused: Forbidden", "Forbidden")
    assert isinstance(error, CredentialsError)
    assert error.code == "Forbidden"
