"""Fuzzing the simulator's request parser: any method, query, headers and body are answered
(an error answer is an answer), never raised."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.dataworks import signing
from runner.dataworks.actions import ACTIONS
from runner.dataworks.credentials import Credentials
from runner.sim import auth
from runner.sim.faults import Faults
from runner.sim.service import Call, Service, SimStats, access_key_of, params_of
from runner.sim.state import DataWorksState

pytestmark = pytest.mark.fuzz

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
# aiohttp decodes header bytes as UTF-8 with surrogateescape: lone surrogates do arrive
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
WITH_SURROGATE = st.tuples(ANY_TEXT, st.integers(0xD800, 0xDFFF)).map(lambda p: p[0] + chr(p[1]))
NAMES = st.sampled_from(
    [
        "ProjectId",
        "Name",
        "ExportMode",
        "ExportObjectStatus",
        "IncrementalSince",
        "MigrationId",
        "MigrationType",
        "PageNumber",
        "PageSize",
        "Owner",
        "AccessKeyId",
        "Signature",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "Timestamp",
        "SecurityToken",
        "PackageType",
        "PackageFile",
    ]
)
VALUES = st.one_of(
    ANY_TEXT,
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["FULL", "INCREMENTAL", "EXPORT", "HMAC-SHA1", "1.0", "2025-01-02T03:04:05Z"]),
    st.just("9" * 5000),
)
QUERY = st.dictionaries(st.one_of(NAMES, ANY_TEXT), VALUES, max_size=8)
HEADER_NAMES = st.sampled_from(
    [
        "authorization",
        "content-type",
        "host",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
        "x-acs-security-token",
        "x-acs-accesskey-id",
        "x-acs-action",
        "x-acs-version",
    ]
)
AUTHORIZATION = st.builds(
    lambda cred, names, sig: (
        f"ACS3-HMAC-SHA256 Credential={cred},SignedHeaders={names},Signature={sig}"
    ),
    ANY_TEXT,
    ANY_TEXT,
    ANY_TEXT,
)
HEADERS = st.dictionaries(st.one_of(HEADER_NAMES, ANY_TEXT), st.one_of(ANY_TEXT, AUTHORIZATION))
BODY = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.one_of(NAMES, ANY_TEXT), VALUES, max_size=6).map(
        lambda params: "&".join(f"{k}={v}" for k, v in params.items()).encode(
            "utf-8", "surrogatepass"
        )
    ),
)


@given(
    method=st.sampled_from(["POST", "GET", "PUT", ""]),
    query=QUERY,
    headers=HEADERS,
    body=BODY,
    action=st.sampled_from(sorted(ACTIONS)),
)
def test_any_request_is_answered_not_raised(
    method: str, query: dict[str, str], headers: dict[str, str], body: bytes, action: str
) -> None:
    """Parameters, the signature check and every operation turn any input into an answer."""
    keys = {"AK": auth.Key("AK", "SK"), "STS.K": auth.Key("STS.K", "SK", "TOKEN")}
    incoming = auth.IncomingRequest(method, "/", query, headers, body)
    failure = auth.verify(incoming, keys, NOW, nonces=auth.NonceCache())
    assert failure is None or 400 <= failure.status < 500
    params = params_of(query, headers, body)
    state = DataWorksState(unique_names=bool(len(body) % 2))
    service = Service(state, SimStats(), Faults(), random.Random(0))
    call = Call(params, access_key_of(headers, params), 1_735_787_045.0, "http://127.0.0.1:1")
    answer = service.operate(ACTIONS[action], call, "RID", "127.0.0.1:1")
    assert 200 <= answer.status < 500
    assert isinstance(answer.body, dict)


def signed_request(version: signing.SignatureVersion) -> auth.IncomingRequest:
    from urllib.parse import parse_qsl, urlsplit

    signed = signing.build_request(
        signature_version=version,
        method="POST",
        host="127.0.0.1:1",
        action="ListMigrations",
        api_version="2020-05-18",
        body_params={"ProjectId": "12345", "MigrationType": "EXPORT"},
        credentials=Credentials("AK", "SK", None),
        timestamp=signing.timestamp_of(NOW),
        nonce="nonce-1",
    )
    parts = urlsplit(signed.path_and_query)
    return auth.IncomingRequest(
        signed.method,
        parts.path,
        dict(parse_qsl(parts.query, keep_blank_values=True)),
        {name.lower(): value for name, value in signed.headers.items()},
        signed.body,
    )


@given(
    version=st.sampled_from(["v3", "v1"]),
    where=st.sampled_from(["header", "query"]),
    index=st.integers(0, 30),
    value=st.one_of(ANY_TEXT, WITH_SURROGATE),
)
def test_a_signed_request_with_one_value_changed_is_answered(
    version: signing.SignatureVersion, where: str, index: int, value: str
) -> None:
    """Starting from a correctly signed request, any one header or query value replaced by
    arbitrary text (lone surrogates included) is accepted or refused, never raised."""
    request = signed_request(version)
    keys = {"AK": auth.Key("AK", "SK")}
    assert auth.verify(request, keys, NOW) is None
    values = dict(request.headers if where == "header" else request.query)
    if values:
        name = sorted(values)[index % len(values)]
        values[name] = value
    if where == "header":
        changed = auth.IncomingRequest(request.method, "/", request.query, values, request.body)
    else:
        changed = auth.IncomingRequest(request.method, "/", values, request.headers, request.body)
    failure = auth.verify(changed, keys, NOW)
    assert failure is None or 400 <= failure.status < 500
