"""Fuzzing the response parser: any status, headers and body give a checked value or a
classified ApiError, for every operation, and nothing else."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.dataworks.answers import MAX_ID, REQUEST_ID, STATUS
from runner.dataworks.transport import HttpResponse
from runner.models import ApiError, ErrorKind, Migration
from runner.retry import MAX_RETRY_AFTER
from tests.dataworks.test_client import SPEC, make_client

pytestmark = pytest.mark.fuzz

KEYS = (
    "RequestId",
    "Success",
    "Data",
    "Code",
    "Message",
    "ErrorCode",
    "ErrorMessage",
    "Migrations",
    "TotalCount",
    "PageNumber",
    "PageSize",
    "Id",
    "Name",
    "Status",
    "DownloadUrl",
    "ProjectId",
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["EXPORT_SUCCESS", "INIT", "SUCCESS", "https://b.example.com/x.zip", ""]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=6),
    ),
    max_leaves=25,
)
JSON_BODIES = VALUES.map(lambda value: json.dumps(value).encode())
BODIES = st.one_of(
    JSON_BODIES,
    st.binary(max_size=200),
    JSON_BODIES.flatmap(lambda body: st.integers(0, len(body)).map(lambda n: body[:n])),
    st.just(b'{"Data":' * 5000),
)
HEADERS = st.dictionaries(
    st.sampled_from(["x-acs-request-id", "x-acs-retry-after", "content-type"]),
    st.text(max_size=70),
)
ANSWERS = st.builds(HttpResponse, st.integers(100, 599), HEADERS, BODIES)


def call(answer: HttpResponse, operation: str) -> Any:
    client, _ = make_client(answer)

    async def run() -> Any:
        if operation == "create":
            return await client.create_export_migration(SPEC)
        if operation == "list":
            return await client.list_migrations("cn-shanghai", 12345)
        if operation == "start":
            return await client.start_migration("cn-shanghai", 12345, 100001)
        return await client.get_migration_summary("cn-shanghai", 12345, 100001)

    return anyio.run(run)


def checked(migration: Migration) -> None:
    assert 1 <= migration.migration_id <= MAX_ID
    assert isinstance(migration.name, str)
    assert migration.status == "" or STATUS.fullmatch(migration.status)


@given(answer=ANSWERS, operation=st.sampled_from(["create", "list", "start", "summary"]))
def test_any_answer_is_a_checked_value_or_a_classified_error(
    answer: HttpResponse, operation: str
) -> None:
    """Whatever comes back, the client returns a value whose fields are checked or raises an
    ApiError of one of the four kinds; a write's malformed answer is never retried blindly."""
    error: ApiError | None = None
    try:
        value = call(answer, operation)
    except ApiError as caught:
        error = caught
    if error is not None:
        assert error.kind in ErrorKind
        assert error.request_id is None or REQUEST_ID.fullmatch(error.request_id)
        assert error.retry_after is None or 0 < error.retry_after <= MAX_RETRY_AFTER
        error.message.encode("utf-8")  # storable and printable
        if operation in ("create", "start") and error.code == "MalformedResponse":
            assert error.kind is ErrorKind.UNKNOWN_OUTCOME
        return
    assert answer.status < 300
    if operation == "create":
        assert 1 <= value.migration_id <= MAX_ID
    elif operation == "list":
        for migration in value.migrations:
            checked(migration)
        assert value.total_count >= len(value.migrations)
    elif operation == "start":
        assert isinstance(value.started, bool)
    else:
        assert STATUS.fullmatch(value.status)
        assert value.download_url is None or value.download_url.isascii()
    assert value.request_id is None or REQUEST_ID.fullmatch(value.request_id)
