"""The client signs with its key provider: the current key per request, a stable account label,
and a key refused as expired is replaced and the request sent again by the attempt loop."""

from __future__ import annotations

import io
import itertools
import json
import random
from collections.abc import Awaitable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest

from runner.attempt import Outcome, Policy, attempt
from runner.clock import FakeClock
from runner.commands.preflight import NoJournal
from runner.context import RunContext
from runner.dataworks.actions import CREATE_EXPORT
from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.keys import RefreshingKeys
from runner.dataworks.transport import FunctionTransport, HttpRequest, HttpResponse
from runner.journal import Op
from runner.logs import get_logger
from runner.models import ApiError, ErrorKind, ExportMode, ExportSpec, TaskKey
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy

SPEC = ExportSpec(TaskKey("cn-shanghai", 12345, "backup"), ExportMode.FULL)
T0 = 1_800_000_000.0
EXPIRED = {
    "RequestId": "R-1",
    "Code": "InvalidSecurityToken.Expired",
    "Message": "Specified SecurityToken is expired.",
}


class Keys:
    """A source of numbered temporary keys living an hour."""

    def __init__(self) -> None:
        self.numbers = itertools.count(1)

    async def __call__(self) -> Credentials:
        n = next(self.numbers)
        return Credentials(f"STS.k{n}", f"secret-{n}-Wq4", f"tok-{n}", expiration=T0 + 3600)


def signer(request: HttpRequest) -> str:
    """The access key id a request was signed with (V3 Authorization or V1 query)."""
    authorization = request.headers.get("Authorization", "")
    if authorization:
        return authorization.split("Credential=", 1)[1].split(",", 1)[0]
    return dict(parse_qsl(urlsplit(request.url).query))["AccessKeyId"]


def make(
    refuse: set[str], keys: RefreshingKeys | Credentials
) -> tuple[DataWorksClient, FunctionTransport]:
    async def handler(request: HttpRequest) -> HttpResponse:
        if signer(request) in refuse:
            return HttpResponse(400, {}, json.dumps(EXPIRED).encode())
        body = {"RequestId": "R-2", "Data": 7, "Success": True}
        return HttpResponse(200, {}, json.dumps(body).encode())

    transport = FunctionTransport(handler)
    now = datetime.fromtimestamp(T0, UTC)
    return DataWorksClient(transport, keys, Endpoints(), now=lambda: now), transport


def provider() -> RefreshingKeys:
    return RefreshingKeys(Keys(), account="acs:ram::1:role/r", origin="test", now=lambda: T0)


@pytest.mark.anyio
async def test_each_request_is_signed_with_the_current_key() -> None:
    """The provider's key signs; its account label is the client's account."""
    keys = provider()
    client, transport = make(set(), keys)
    assert client.account == "acs:ram::1:role/r"
    await client.create_export_migration(SPEC)
    await client.create_export_migration(SPEC)
    assert [signer(r) for r in transport.requests] == ["STS.k1", "STS.k1"]
    assert keys.fetches == 1  # never a fetch per request


@pytest.mark.anyio
async def test_expired_token_invalidates_the_key_and_is_retryable() -> None:
    """InvalidSecurityToken.Expired is retryable, and the next request goes with a fresh key."""
    keys = provider()
    client, transport = make({"STS.k1"}, keys)
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert raised.value.kind is ErrorKind.RETRYABLE
    assert raised.value.code == "InvalidSecurityToken.Expired"
    created = await client.create_export_migration(SPEC)
    assert created.migration_id == 7
    assert [signer(r) for r in transport.requests] == ["STS.k1", "STS.k2"]


@pytest.mark.anyio
async def test_expired_static_token_stays_fatal() -> None:
    """A fixed STS token that expired cannot be replaced: the account stops, as before."""
    client, _ = make({"AKID"}, Credentials("AKID", "s", "tok"))
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert raised.value.kind is ErrorKind.FATAL


@pytest.mark.anyio
async def test_no_key_to_be_had_stops_the_account() -> None:
    """When the provider cannot give a key, the call fails as fatal, naming the source."""

    async def broken() -> Credentials:
        raise CredentialsError("RamRoleArn from f profile 'p': AssumeRole refused: Forbidden")

    keys = RefreshingKeys(broken, account="a", origin="test", now=lambda: T0)
    client, transport = make(set(), keys)
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert raised.value.kind is ErrorKind.FATAL
    assert raised.value.code == "CredentialsUnavailable"
    assert "AssumeRole refused" in raised.value.message
    assert transport.requests == []


class Writer:
    """A journal writer that keeps nothing."""

    async def write(self, *ops: Op) -> None:
        return None

    def queue(self, *ops: Op) -> Awaitable[None]:
        return NoJournal().queue(*ops)

    def post(self, *ops: Op) -> None:
        return None

    async def flush(self) -> None:
        return None


@pytest.mark.anyio
async def test_the_attempt_loop_resends_with_a_fresh_key(quiet_logs: io.StringIO) -> None:
    """The attempt loop resends a request refused as expired with the next key; no secret logged."""
    keys = provider()
    client, transport = make({"STS.k1"}, keys)
    clock = FakeClock()
    ctx = RunContext(
        client,
        Writer(),
        RateLimiter(clock, write_rate=100),
        clock,
        RetryPolicy(max_attempts=3),
        random.Random(1),
    )
    policy = Policy("create", CREATE_EXPORT)
    result = await attempt(ctx, SPEC.key, policy, lambda: client.create_export_migration(SPEC))
    assert result.outcome is Outcome.DONE
    assert [signer(r) for r in transport.requests] == ["STS.k1", "STS.k2"]
    assert not ctx.stops.first
    get_logger("test").info("after", note="x")
    assert "secret-1-Wq4" not in quiet_logs.getvalue()
    assert "secret-2-Wq4" not in quiet_logs.getvalue()
