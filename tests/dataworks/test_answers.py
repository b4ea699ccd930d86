"""Malformed answers are classified, never raised as unexpected errors: unknown outcome for a
write, retryable for a read; values that are not what the service documents are refused."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from runner.dataworks.answers import (
    MAX_ID,
    code_of,
    load_json,
    request_id_of,
    retry_after_of,
    url_of,
)
from runner.dataworks.transport import HttpResponse
from runner.models import ApiError, ErrorKind
from runner.retry import MAX_RETRY_AFTER, RetryPolicy
from tests.dataworks.test_client import SPEC, json_response, make_client

DEEP = b'{"Data":' * 100_000 + b"1" + b"}" * 100_000


def raw(body: bytes, status: int = 200, **headers: str) -> HttpResponse:
    return HttpResponse(status, headers, body)


def created(data: Any) -> HttpResponse:
    return json_response(200, {"RequestId": "R", "Data": data, "Success": True})


GENERIC = {
    "nesting too deep": raw(DEEP),
    "float overflow": raw(b'{"RequestId":"R","Success":true,"Data":1e999}'),
    "NaN": raw(b'{"RequestId":"R","Success":true,"Data":NaN}'),
    "truncated": raw(b'{"RequestId":"R","Success":tr'),
    "empty": raw(b""),
    "array": raw(b'[{"RequestId":"R","Data":1,"Success":true}]'),
    "html 200": raw(b"<html><body>Welcome</body></html>"),
    "html 400": raw(b"<html><body>Bad request</body></html>", 400),
    "html 403": raw(b"<html><body>Forbidden</body></html>", 403),
    "html 502": raw(b"<html><body>Bad gateway</body></html>", 502),
    "not utf-8": raw(b'{"RequestId":"\xff\xfe"}'),
    "huge int": raw(b'{"RequestId":"R","Success":true,"Data":' + b"9" * 5000 + b"}"),
}
CREATE_ONLY = {
    "id 2^63": created(MAX_ID + 1),
    "id 2^64": created(2**64),
    "id as string": created("100001"),
    "negative id": created(-5),
    "zero id": created(0),
    "boolean id": created(True),
    "float id": created(100001.0),
    "no id": json_response(200, {"RequestId": "R", "Success": True}),
}


@pytest.mark.parametrize(
    "answer", [*GENERIC.values(), *CREATE_ONLY.values()], ids=[*GENERIC, *CREATE_ONLY]
)
@pytest.mark.anyio
async def test_a_malformed_answer_to_a_create_is_an_unknown_outcome(answer: HttpResponse) -> None:
    """The create may have been applied: the task is looked up before anything is resent."""
    client, _ = make_client(answer)
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME


def page(**data: Any) -> HttpResponse:
    migrations = [{"Id": 7, "Name": "n", "ProjectId": 12345, "Status": "INIT"}]
    fields: dict[str, Any] = {"TotalCount": 1, "Migrations": migrations, **data}
    return json_response(200, {"RequestId": "R", "Success": True, "Data": fields})


def item(**fields: Any) -> HttpResponse:
    entry = {"Id": 7, "Name": "n", "ProjectId": 12345, "Status": "INIT", **fields}
    return page(Migrations=[entry])


LIST_ONLY = {
    "TotalCount missing": json_response(
        200, {"RequestId": "R", "Success": True, "Data": {"Migrations": []}}
    ),
    "TotalCount negative": page(TotalCount=-1),
    "TotalCount a string": page(TotalCount="1"),
    "TotalCount below the page": page(TotalCount=0),
    "TotalCount overflows": page(TotalCount=2**64),
    "Migrations a dict": page(Migrations={"Id": 7}),
    "Migrations a string": page(Migrations="7"),
    "item not an object": page(Migrations=[7]),
    "item id as string": item(Id="7"),
    "item id negative": item(Id=-7),
    "item id beyond int64": item(Id=2**63),
    "item without Id": page(Migrations=[{"Name": "n"}]),
    "item name not text": item(Name=7),
    "item status odd": item(Status="\x1b[2J"),
    "item url not text": item(DownloadUrl=["https://x"]),
    "item url too long": item(DownloadUrl="https://x/" + "a" * 10_000),
    "item url not ascii": item(DownloadUrl="https://x/\u00e9"),
    "item project negative": item(ProjectId=-1),
    "Data not an object": json_response(200, {"RequestId": "R", "Success": True, "Data": [1]}),
}


@pytest.mark.parametrize(
    "answer", [*GENERIC.values(), *LIST_ONLY.values()], ids=[*GENERIC, *LIST_ONLY]
)
@pytest.mark.anyio
async def test_a_malformed_answer_to_a_list_is_retryable(answer: HttpResponse) -> None:
    """A page that cannot be trusted whole is read again, never taken as "not found"."""
    client, _ = make_client(answer)
    with pytest.raises(ApiError) as raised:
        await client.list_migrations("cn-shanghai", 12345)
    assert raised.value.kind is ErrorKind.RETRYABLE


def summary(**data: Any) -> HttpResponse:
    return json_response(200, {"RequestId": "R", "Success": True, "Data": data})


SUMMARY_ONLY = {
    "status not text": summary(Status=3),
    "status odd": summary(Status="export success; rm -rf"),
    "url not text": summary(Status="EXPORT_SUCCESS", DownloadUrl={"u": 1}),
    "url not http": summary(Status="EXPORT_SUCCESS", DownloadUrl="file:///etc/passwd"),
}


@pytest.mark.parametrize(
    "answer", [*GENERIC.values(), *SUMMARY_ONLY.values()], ids=[*GENERIC, *SUMMARY_ONLY]
)
@pytest.mark.anyio
async def test_a_malformed_answer_to_a_summary_is_retryable(answer: HttpResponse) -> None:
    """A status read that is not understood is read again."""
    client, _ = make_client(answer)
    with pytest.raises(ApiError) as raised:
        await client.get_migration_summary("cn-shanghai", 12345, 100001)
    assert raised.value.kind is ErrorKind.RETRYABLE


@pytest.mark.parametrize(
    "answer",
    [*GENERIC.values(), created(None), created("true")],
    ids=[*GENERIC, "no data", "data a string"],
)
@pytest.mark.anyio
async def test_a_malformed_answer_to_a_start_is_an_unknown_outcome(answer: HttpResponse) -> None:
    """A start that may have been applied is settled by reading the task's status."""
    client, _ = make_client(answer)
    with pytest.raises(ApiError) as raised:
        await client.start_migration("cn-shanghai", 12345, 100001)
    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME


@pytest.mark.anyio
async def test_values_that_reach_the_journal_are_checked() -> None:
    """An odd request id is dropped, an odd code falls back to the HTTP status, and a message
    is printable and bounded: nothing SQLite could refuse, nothing a terminal would act on."""
    body = {
        "RequestId": "x" * 10_000,
        "Code": {"nested": "code"},
        "Message": "bad \ud800 \x1b[31mthing\x1b[0m " + "m" * 10_000,
    }
    client, _ = make_client(json_response(400, body, **{"x-acs-request-id": "HDR-1"}))
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    error = raised.value
    assert (error.code, error.request_id, error.kind) == ("HTTP400", "HDR-1", ErrorKind.PERMANENT)
    assert error.message.startswith("bad \ufffd thing ")
    assert len(error.message) <= 501
    error.message.encode("utf-8")


def test_shapes_of_codes_request_ids_and_urls() -> None:
    """The small checkers accept what the service sends and refuse the rest."""
    assert code_of("Throttling.User") == "Throttling.User"
    assert code_of(110001123445) == "110001123445"
    assert code_of("a b") is None
    assert code_of(True) is None
    assert request_id_of("34267E2E-0C6A-4A64-9C0B-3B7B2C2B7D1A") is not None
    assert request_id_of(12) is None
    assert url_of("") is None
    assert url_of("https://b.example.com/x.zip?Expires=1") is not None
    with pytest.raises(ValueError, match="URL"):
        url_of("javascript:alert(1)")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1500", 1.5),
        (" 250 ", 0.25),
        ("0", None),
        ("-5", None),
        ("1e3", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits: int() takes them, the header must not
        ("", None),
        ("99999999999", MAX_RETRY_AFTER),
        ("9" * 60, None),
        ("9" * 5000, None),
    ],
)
def test_retry_after_is_parsed_strictly_and_clamped(header: str, seconds: float | None) -> None:
    """x-acs-retry-after is milliseconds; garbage is ignored and a long delay is clamped: a
    60-digit header neither crashes the run nor pauses it for ever."""
    assert retry_after_of({"x-acs-retry-after": header}) == seconds


@pytest.mark.anyio
async def test_a_60_digit_retry_after_on_a_throttled_answer_is_ignored() -> None:
    """A throttled answer carrying a 60-digit retry-after is still a plain throttled answer."""
    body = {"RequestId": "R", "Code": "Throttling.User", "Message": "slow down"}
    client, _ = make_client(json_response(429, body, **{"x-acs-retry-after": "9" * 60}))
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(SPEC)
    assert raised.value.is_throttling
    assert raised.value.retry_after is None


@pytest.mark.parametrize("retry_after", [1e57, float("inf"), float("nan"), 10**400 / 10**390])
def test_the_retry_delay_never_passes_the_clamp(retry_after: float) -> None:
    """Whatever retry-after reaches the policy, the delay stays within MAX_RETRY_AFTER."""
    delay = RetryPolicy().delay(3, random.Random(0), retry_after)
    assert 0 <= delay <= MAX_RETRY_AFTER


def test_deep_nesting_is_not_a_recursion_error() -> None:
    """(The fixture really is deeper than the interpreter can parse recursively.)"""
    with pytest.raises(RecursionError):
        json.loads(DEEP)


@pytest.mark.anyio
async def test_a_request_that_cannot_be_signed_fails_its_task_not_the_run() -> None:
    """A parameter that is not valid Unicode is a permanent error of that task; nothing is sent."""
    from runner.models import ExportSpec, TaskKey

    client, transport = make_client(created(1))
    with pytest.raises(ApiError) as raised:
        await client.create_export_migration(ExportSpec(TaskKey("cn-shanghai", 2, "a\ud800")))
    assert (raised.value.kind, raised.value.code) == (ErrorKind.PERMANENT, "InvalidRequest")
    assert transport.requests == []


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]
)
def test_an_answer_is_read_in_any_encoding_json_allows(encoding: str) -> None:
    """A JSON object in any of the encodings JSON allows (with or without a BOM) reads the same
    as in UTF-8: the fast path for '{' never takes UTF-16 or UTF-32 for UTF-8."""
    document = {"RequestId": "R-1", "Data": 7, "Message": "ü"}
    body = json.dumps(document, ensure_ascii=False).encode(encoding)
    assert load_json(body) == document
