"""The client: what goes on the wire, and how every kind of answer is classified."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest

from runner.dataworks import signing
from runner.dataworks.client import DataWorksClient, classify
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.transport import (
    ConnectError,
    ExchangeError,
    ExchangeTimeout,
    FunctionTransport,
    HttpRequest,
    HttpResponse,
)
from runner.models import DUPLICATE_NAME_CODE, ApiError, ErrorKind, ExportMode, ExportSpec, TaskKey
from runner.redact import clean_message

SPEC = ExportSpec(
    TaskKey("cn-shanghai", 12345, "backup"),
    ExportMode.INCREMENTAL,
    description="quarterly backup",
    incremental_since=1589904000000,
)
CREDS = Credentials("AKID", "s3cr3t")


def json_response(status: int, body: object, **headers: str) -> HttpResponse:
    return HttpResponse(status, headers, json.dumps(body).encode())


def make_client(
    answer: HttpResponse | Exception, *, endpoint: str | None = None
) -> tuple[DataWorksClient, FunctionTransport]:
    async def handler(request: HttpRequest) -> HttpResponse:
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport = FunctionTransport(handler)
    nonces = iter(f"{n:032x}" for n in range(100))
    client = DataWorksClient(
        transport,
        CREDS,
        Endpoints(endpoint),
        now=lambda: datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        nonce=lambda: next(nonces),
    )
    return client, transport


@pytest.mark.anyio
async def test_create_is_a_signed_form_post() -> None:
    """CreateExportMigration goes as POST / with a sorted form body and V3 headers."""
    client, transport = make_client(
        json_response(200, {"RequestId": "R1", "Data": 42, "Success": True})
    )
    created = await client.create_export_migration(SPEC)
    assert (created.migration_id, created.request_id) == (42, "R1")
    (request,) = transport.requests
    assert request.method == "POST"
    assert request.url == "https://dataworks.cn-shanghai.aliyuncs.com/"
    body = dict(parse_qsl(request.body.decode()))
    assert body == {
        "Description": "quarterly backup",
        "ExportMode": "INCREMENTAL",
        "IncrementalSince": "1589904000000",
        "Name": "backup",
        "ProjectId": "12345",
    }
    keys = [k for k, _ in parse_qsl(request.body.decode())]
    assert keys == sorted(keys)
    assert request.headers["x-acs-action"] == "CreateExportMigration"
    assert request.headers["x-acs-version"] == "2020-05-18"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"].startswith("ACS3-HMAC-SHA256 Credential=AKID,")
    assert "s3cr3t" not in json.dumps(dict(request.headers))


@pytest.mark.anyio
@pytest.mark.parametrize("description", ["quarterly backup", "plain", "a&b=c", None])
async def test_a_create_sends_the_same_body_with_or_without_the_fingerprint(
    description: str | None,
) -> None:
    """Given the spec's fingerprint, the client sends the same form body as without it: the
    fingerprint itself when nothing needs escaping, else the parameters encoded as ever."""
    spec = ExportSpec(TaskKey("cn-shanghai", 12345, "backup"), description=description)
    client, transport = make_client(
        json_response(200, {"RequestId": "R", "Data": 1, "Success": True})
    )
    await client.create_export_migration(spec)
    await client.create_export_migration(spec, fingerprint=spec.fingerprint())
    plain, given = transport.requests
    assert given.body == plain.body == signing.form_encode(spec.request_params()).encode()


@pytest.mark.anyio
async def test_each_attempt_has_a_fresh_nonce() -> None:
    """Two calls never reuse a nonce, so a retry is never refused as a replay."""
    client, transport = make_client(
        json_response(200, {"RequestId": "R", "Data": 1, "Success": True})
    )
    await client.create_export_migration(SPEC)
    await client.create_export_migration(SPEC)
    nonces = {r.headers["x-acs-signature-nonce"] for r in transport.requests}
    assert len(nonces) == 2


def test_nonces_are_random_hex_never_repeated_and_not_shared_with_a_fork() -> None:
    """Nonces read in bulk are still 32 hex digits, all distinct across several reads, and a
    forked child reads its own instead of reusing the parent's."""
    from runner.dataworks import client as client_module

    made = [client_module._new_nonce() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in made)
    assert client_module._nonces  # some are left over for the next requests
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: tells what its next nonce is, then leaves at once
        os.close(reader)
        os.write(writer, client_module._new_nonce().encode())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 64).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child not in client_module._nonces  # not one the parent still holds


@pytest.mark.anyio
async def test_endpoint_override_replaces_every_region() -> None:
    """--endpoint sends every region's requests to the given base URL."""

    async def handler(request: HttpRequest) -> HttpResponse:
        return json_response(200, {"RequestId": "R", "Data": 1, "Success": True})

    transport = FunctionTransport(handler)
    client = DataWorksClient(transport, CREDS, Endpoints("http://127.0.0.1:8123"))
    await client.create_export_migration(SPEC)
    assert transport.requests[0].url == "http://127.0.0.1:8123/"
    assert transport.requests[0].headers["host"] == "127.0.0.1:8123"


@pytest.mark.anyio
async def test_list_parses_a_page() -> None:
    """ListMigrations answers become Migration values with paging numbers."""
    body = {
        "RequestId": "R",
        "Success": True,
        "Data": {
            "PageNumber": 2,
            "PageSize": 100,
            "TotalCount": 101,
            "Migrations": [
                {
                    "Id": 7,
                    "Name": "n",
                    "ProjectId": 12345,
                    "MigrationType": "EXPORT",
                    "Status": "INIT",
                }
            ],
        },
    }
    client, transport = make_client(json_response(200, body))
    page = await client.list_migrations("cn-shanghai", 12345, page_number=2)
    assert (page.page_number, page.total_count) == (2, 101)
    assert page.migrations[0].migration_id == 7
    sent = dict(parse_qsl(transport.requests[0].body.decode()))
    assert sent == {
        "MigrationType": "EXPORT",
        "PageNumber": "2",
        "PageSize": "100",
        "ProjectId": "12345",
    }


def gateway_error(status: int, code: str, message: str = "m", **headers: str) -> HttpResponse:
    body = {"RequestId": "REQ", "HostId": "h", "Code": code, "Message": message, "Recommend": "r"}
    return json_response(status, body, **headers)


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (gateway_error(429, "Throttling.User"), ErrorKind.RETRYABLE, "Throttling.User"),
        (gateway_error(429, "Throttling.Api.Risk"), ErrorKind.FATAL, "Throttling.Api.Risk"),
        (gateway_error(503, "ServiceUnavailable"), ErrorKind.UNKNOWN_OUTCOME, "ServiceUnavailable"),
        (
            gateway_error(500, "InternalError.System"),
            ErrorKind.UNKNOWN_OUTCOME,
            "InternalError.System",
        ),
        (gateway_error(429, "Throttling.Resource"), ErrorKind.FATAL, "Throttling.Resource"),
        (gateway_error(500, "Forbidden.Not.Server"), ErrorKind.FATAL, "Forbidden.Not.Server"),
        (
            gateway_error(500, "Invalid.Wkbench.Parameter"),
            ErrorKind.PERMANENT,
            "Invalid.Wkbench.Parameter",
        ),
        (gateway_error(400, "SignatureNonceUsed"), ErrorKind.RETRYABLE, "SignatureNonceUsed"),
        (HttpResponse(429, {}, b"slow down"), ErrorKind.RETRYABLE, "HTTP429"),
        (gateway_error(400, "SignatureDoesNotMatch"), ErrorKind.FATAL, "SignatureDoesNotMatch"),
        (
            gateway_error(404, "InvalidAccessKeyId.NotFound"),
            ErrorKind.FATAL,
            "InvalidAccessKeyId.NotFound",
        ),
        (
            gateway_error(400, "InvalidTimeStamp.Expired"),
            ErrorKind.FATAL,
            "InvalidTimeStamp.Expired",
        ),
        (gateway_error(400, "InvalidParameter"), ErrorKind.PERMANENT, "InvalidParameter"),
        (gateway_error(403, "Forbidden.Access"), ErrorKind.PERMANENT, "Forbidden.Access"),
        (
            gateway_error(400, "Invalid.Tenant.ProjectNotExists"),
            ErrorKind.PERMANENT,
            "Invalid.Tenant.ProjectNotExists",
        ),
        (
            gateway_error(
                400, "Invalid.Param", "The export task name 'x' already exists in project 1."
            ),
            ErrorKind.PERMANENT,
            DUPLICATE_NAME_CODE,
        ),
        (HttpResponse(200, {}, b"<html>"), ErrorKind.UNKNOWN_OUTCOME, "MalformedResponse"),
        (HttpResponse(502, {}, b"bad gateway"), ErrorKind.UNKNOWN_OUTCOME, "HTTP502"),
        (
            json_response(
                200, {"RequestId": "R", "Success": False, "ErrorCode": "X", "ErrorMessage": "no"}
            ),
            ErrorKind.PERMANENT,
            "X",
        ),
        (
            json_response(200, {"RequestId": "R", "Success": True}),
            ErrorKind.UNKNOWN_OUTCOME,
            "MalformedResponse",
        ),
        (ConnectError("refused"), ErrorKind.RETRYABLE, "ConnectError"),
        (ExchangeError("reset"), ErrorKind.UNKNOWN_OUTCOME, "ExchangeError"),
        (ExchangeTimeout("timed out"), ErrorKind.UNKNOWN_OUTCOME, "Timeout"),
    ],
)
@pytest.mark.anyio
async def test_create_errors_are_classified(
    answer: HttpResponse | Exception, kind: ErrorKind, code: str
) -> None:
    """Every answer to a create maps to the error kind that decides what happens next."""
    client, _ = make_client(answer)
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert (raised.value.kind, raised.value.code) == (kind, code)


@pytest.mark.anyio
async def test_gateway_error_keeps_request_id_and_retry_after() -> None:
    """The request id and x-acs-retry-after (ms) travel with the error."""
    client, _ = make_client(gateway_error(429, "Throttling.User", **{"x-acs-retry-after": "1500"}))
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert raised.value.request_id == "REQ"
    assert raised.value.retry_after == 1.5
    assert raised.value.http_status == 429


@pytest.mark.anyio
async def test_lost_answer_to_a_read_is_retryable() -> None:
    """A timeout on ListMigrations is simply retried: reads change nothing."""
    client, _ = make_client(ExchangeError("timed out"))
    with pytest.raises(ApiError) as raised:
        await client.list_migrations("cn-shanghai", 1)
    assert raised.value.kind is ErrorKind.RETRYABLE


def test_classify_unknown_4xx_is_permanent() -> None:
    """An unrecognised 4xx code fails the task instead of looping."""
    assert classify(400, "SomethingNew") is ErrorKind.PERMANENT
    assert classify(504, "") is ErrorKind.RETRYABLE


@pytest.mark.anyio
async def test_server_error_on_a_read_is_retryable() -> None:
    """A 5xx on ListMigrations is simply retried: reads change nothing."""
    client, _ = make_client(gateway_error(503, "ServiceUnavailable"))
    with pytest.raises(ApiError) as raised:
        await client.list_migrations("cn-shanghai", 1)
    assert raised.value.kind is ErrorKind.RETRYABLE


@pytest.mark.anyio
async def test_throttling_without_json_still_counts_as_throttling() -> None:
    """A bare 429 slows the bucket like a Throttling.* code does."""
    client, _ = make_client(HttpResponse(429, {}, b""))
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert raised.value.is_throttling


@pytest.mark.anyio
async def test_echoed_string_to_sign_and_token_never_reach_the_message() -> None:
    """A SignatureDoesNotMatch message loses its string to sign; credentials in any encoding
    are masked."""
    token = "TOK/EN+with=SECRET"
    message = (
        "Specified signature is not matched with our calculation. server string to sign is:"
        "POST&%2F&SecurityToken%3DTOK%252FEN%252Bwith%253DSECRET"
    )

    async def handler(request: HttpRequest) -> HttpResponse:
        return gateway_error(400, "SignatureDoesNotMatch", message + " " + token)

    client = DataWorksClient(
        FunctionTransport(handler), Credentials("AKID", "s3cr3t", token), Endpoints()
    )
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    text = f"{raised.value} {raised.value.message}"
    assert "SECRET" not in text
    assert "string to sign omitted" in raised.value.message
    assert raised.value.message.startswith("Specified signature is not matched")


def test_clean_message_masks_encoded_secrets_and_bounds_length() -> None:
    """Raw, percent-encoded and double-encoded secrets are masked; long messages are cut."""
    secret = "a/b+c"
    text = f"x {secret} y a%2Fb%2Bc z a%252Fb%252Bc " + "w" * 1000
    cleaned = clean_message(text, [secret])
    assert "a/b+c" not in cleaned
    assert "%2F" not in cleaned
    assert cleaned.count("[redacted]") == 3
    assert len(cleaned) <= 501


@pytest.mark.anyio
async def test_malformed_list_page_is_a_retryable_error() -> None:
    """A ListMigrations answer with the wrong shapes is an ApiError, never a crash."""
    body = {
        "RequestId": "R",
        "Success": True,
        "Data": {"PageNumber": None, "Migrations": [{"Id": "x"}]},
    }
    client, _ = make_client(json_response(200, body))
    with pytest.raises(ApiError) as raised:
        await client.list_migrations("cn-shanghai", 1)
    assert (raised.value.kind, raised.value.code) == (ErrorKind.RETRYABLE, "MalformedResponse")
