"""StartMigration and GetMigrationSummary: what goes on the wire and how answers are read."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from runner.dataworks.transport import ExchangeError, HttpResponse
from runner.models import ApiError, ErrorKind, Started, Summary
from tests.dataworks.test_client import json_response, make_client

URL = "https://b.oss-cn-shanghai.aliyuncs.com/pre/x.zip?Expires=1639540903&OSSAccessKeyId=K&Signature=S"


@pytest.mark.anyio
async def test_start_is_a_signed_post_with_both_ids() -> None:
    """StartMigration sends ProjectId and MigrationId in the form body; Data true is started."""
    client, transport = make_client(
        json_response(200, {"RequestId": "R1", "Data": True, "Success": True, "ErrorCode": ""})
    )
    started = await client.start_migration("cn-shanghai", 12345, 100001)
    assert started == Started(True, "R1")
    (request,) = transport.requests
    assert request.headers["x-acs-action"] == "StartMigration"
    assert dict(parse_qsl(request.body.decode())) == {"MigrationId": "100001", "ProjectId": "12345"}


@pytest.mark.anyio
async def test_start_answered_false_is_an_answer_with_its_reason() -> None:
    """Data false (already running, or cannot start) returns the code and message, no error."""
    body = {
        "RequestId": "R2",
        "Data": False,
        "Success": True,
        "ErrorCode": "Invalid.Migration.Status",
        "ErrorMessage": "The migration task 100001 is already EXPORTING.",
    }
    client, _ = make_client(json_response(200, body))
    started = await client.start_migration("cn-shanghai", 12345, 100001)
    assert started == Started(
        False, "R2", "Invalid.Migration.Status", "The migration task 100001 is already EXPORTING."
    )


@pytest.mark.parametrize(
    "answer",
    [
        json_response(503, {"Code": "ServiceUnavailable", "Message": "later"}),
        json_response(500, {"Code": "InternalError.System", "Message": "oops"}),
        ExchangeError("no answer within 10s"),
        json_response(200, {"RequestId": "R", "Success": True}),
    ],
    ids=["503", "500", "lost", "no-data"],
)
@pytest.mark.anyio
async def test_start_with_a_lost_or_failed_answer_is_an_unknown_outcome(
    answer: HttpResponse | Exception,
) -> None:
    """A start is mutating: a 5xx, lost or malformed answer may hide a start that happened."""
    client, _ = make_client(answer)
    with pytest.raises(ApiError) as caught:
        await client.start_migration("cn-shanghai", 12345, 100001)
    assert caught.value.kind is ErrorKind.UNKNOWN_OUTCOME


@pytest.mark.anyio
async def test_start_with_a_bad_key_is_fatal() -> None:
    """A credentials error on StartMigration stops the run like on any call."""
    client, _ = make_client(json_response(404, {"Code": "InvalidAccessKeyId.NotFound"}))
    with pytest.raises(ApiError) as caught:
        await client.start_migration("cn-shanghai", 12345, 100001)
    assert caught.value.kind is ErrorKind.FATAL


@pytest.mark.anyio
async def test_summary_reads_status_name_and_download_url() -> None:
    """GetMigrationSummary gives the status, the task name and the DownloadUrl once exported."""
    data = {"MigrationId": 100001, "Name": "n", "Status": "EXPORT_SUCCESS", "DownloadUrl": URL}
    client, transport = make_client(
        json_response(200, {"RequestId": "R3", "Success": True, "Data": data})
    )
    summary = await client.get_migration_summary("cn-shanghai", 12345, 100001)
    assert summary == Summary("EXPORT_SUCCESS", URL, "n", "R3")
    assert transport.requests[0].headers["x-acs-action"] == "GetMigrationSummary"


@pytest.mark.anyio
async def test_summary_without_url_has_none() -> None:
    """A running export has no DownloadUrl: an absent or empty one reads as None."""
    data = {"Name": "n", "Status": "EXPORTING", "DownloadUrl": ""}
    client, _ = make_client(json_response(200, {"Success": True, "Data": data}))
    summary = await client.get_migration_summary("cn-shanghai", 12345, 100001)
    assert (summary.status, summary.download_url) == ("EXPORTING", None)


@pytest.mark.parametrize(
    "answer",
    [
        json_response(503, {"Code": "ServiceUnavailable"}),
        ExchangeError("reset"),
        json_response(200, {"Success": True, "Data": {"Name": "n"}}),
    ],
    ids=["503", "lost", "no-status"],
)
@pytest.mark.anyio
async def test_summary_failures_are_retryable(answer: HttpResponse | Exception) -> None:
    """A read changes nothing: 5xx, lost and malformed summaries may simply be read again."""
    client, _ = make_client(answer)
    with pytest.raises(ApiError) as caught:
        await client.get_migration_summary("cn-shanghai", 12345, 100001)
    assert caught.value.kind is ErrorKind.RETRYABLE
