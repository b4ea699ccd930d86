"""The simulator's signature check, proven on the SDK's golden vectors, not only on our signer."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from runner.dataworks import signing
from runner.dataworks.credentials import Credentials
from runner.sim.auth import (
    AuthFailure,
    IncomingRequest,
    Key,
    NonceCache,
    parse_authorization,
    verify,
)
from tests.dataworks.test_signing import V3, VECTORS, Vector

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def wire_request(vector: Vector) -> IncomingRequest:
    """What a server receives for a vector: decoded query, lower-case headers, raw body."""
    out = vector["outputs"]
    return IncomingRequest(
        method=vector["inputs"]["method"],
        path="/",
        query=dict(parse_qsl(out["query_string"], keep_blank_values=True)),
        headers={name.lower(): value for name, value in out["headers"].items()},
        body=out["body"].encode("ascii"),
    )


def keys_for(vector: Vector, secret: str | None = None) -> dict[str, Key]:
    inputs = vector["inputs"]
    key_id = inputs["access_key_id"]
    return {key_id: Key(key_id, secret or inputs["access_key_secret"], inputs["security_token"])}


def now_of(vector: Vector) -> datetime:
    return signing.parse_timestamp(vector["inputs"]["timestamp"])


def check(
    vector: Vector, request: IncomingRequest | None = None, nonces: NonceCache | None = None
) -> AuthFailure | None:
    """verify() with the vector's key and clock, on its wire request unless another is given."""
    received = wire_request(vector) if request is None else request
    return verify(received, keys_for(vector), now_of(vector), nonces=nonces)


def tampered(value: str) -> str:
    """A different value of the same shape (a timestamp stays a valid timestamp)."""
    if _TIMESTAMP.match(value):
        return signing.timestamp_of(signing.parse_timestamp(value) + timedelta(seconds=1))
    return value + "0"


def _ids(vectors: list[Vector]) -> list[str]:
    return [str(v["id"]) for v in vectors]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_accepts_golden_vector(vector: Vector) -> None:
    """Each vector's on-the-wire request, exactly as the official SDK sent it, is accepted."""
    assert check(vector) is None


# ---------------------------------------------------------------------------------------------
# Tampering, one item at a time


def _signed_header_names(vector: Vector) -> list[str]:
    auth = vector["outputs"]["headers"].get("Authorization")
    parsed = parse_authorization(auth) if auth else None
    return parsed.signed_headers if parsed else []


def _tamper_cases() -> list[tuple[Vector, str, str]]:
    cases = []
    for vector in VECTORS:
        out = vector["outputs"]
        cases += [(vector, "query", n) for n, _ in parse_qsl(out["query_string"])]
        cases += [(vector, "body", n) for n, _ in parse_qsl(out["body"])]
        cases += [(vector, "header", n) for n in _signed_header_names(vector)]
    return cases


TAMPER = _tamper_cases()
_EXPECTED_CODE = {
    "AccessKeyId": "InvalidAccessKeyId.NotFound",
    "SecurityToken": "InvalidSecurityToken.Mismatch",
    "x-acs-security-token": "InvalidSecurityToken.Mismatch",
    "SignatureMethod": "IncompleteSignature",
    "SignatureVersion": "IncompleteSignature",
    "x-acs-accesskey-id": "IncompleteSignature",
}


@pytest.mark.parametrize(
    ("vector", "where", "name"), TAMPER, ids=[f"{v['id']}-{w}-{n}" for v, w, n in TAMPER]
)
def test_rejects_single_tampered_item(vector: Vector, where: str, name: str) -> None:
    """Changing any one query param, body param or signed header makes the request fail."""
    request = wire_request(vector)
    query, headers, body = dict(request.query), dict(request.headers), request.body
    if where == "query":
        query[name] = tampered(query[name])
    elif where == "header":
        headers[name] = tampered(headers[name])
    else:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True)
        body = urlencode([(n, tampered(v) if n == name else v) for n, v in pairs]).encode("ascii")
    failure = check(vector, IncomingRequest(request.method, "/", query, headers, body))
    assert failure is not None
    assert failure.code == _EXPECTED_CODE.get(name, "SignatureDoesNotMatch")
    assert failure.status == (
        404 if "NotFound" in failure.code else 403 if "Token" in failure.code else 400
    )


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_rejects_wrong_secret_with_server_string_to_sign(vector: Vector) -> None:
    """A wrong secret gives SignatureDoesNotMatch quoting the string to sign (the SDK's own)."""
    request = wire_request(vector)
    failure = verify(request, keys_for(vector, secret="not-the-secret"), now_of(vector))
    assert failure == AuthFailure(
        400,
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation. "
        f"server string to sign is:{vector['outputs']['string_to_sign']}",
    )
    assert "not-the-secret" not in failure.message


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_rejects_changed_body(vector: Vector) -> None:
    """Bytes added to the body are caught (V3 by the content hash, V1 by the signed params)."""
    request = wire_request(vector)
    body = request.body + b"&Extra=1" if request.body else b"Extra=1"
    headers = dict(request.headers)
    headers.setdefault("content-type", signing.FORM_CONTENT_TYPE)
    failure = check(vector, IncomingRequest(request.method, "/", request.query, headers, body))
    assert failure is not None
    assert failure.code in ("SignatureDoesNotMatch", "IncompleteSignature")


@pytest.mark.parametrize("minutes", [16, -16])
@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_rejects_timestamp_16_minutes_off(vector: Vector, minutes: int) -> None:
    """A request dated more than 15 minutes from the server clock is InvalidTimeStamp.Expired."""
    now = now_of(vector) + timedelta(minutes=minutes)
    failure = verify(wire_request(vector), keys_for(vector), now)
    assert failure is not None
    assert (failure.status, failure.code) == (400, "InvalidTimeStamp.Expired")


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_accepts_timestamp_14_minutes_off(vector: Vector) -> None:
    """Clock skew within 15 minutes is tolerated."""
    now = now_of(vector) - timedelta(minutes=14)
    assert verify(wire_request(vector), keys_for(vector), now) is None


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_rejects_replayed_nonce(vector: Vector) -> None:
    """The same signed request sent twice is refused the second time with SignatureNonceUsed."""
    nonces = NonceCache()
    assert check(vector, nonces=nonces) is None
    failure = check(vector, nonces=nonces)
    assert failure is not None
    assert (failure.status, failure.code) == (400, "SignatureNonceUsed")


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_rejects_unknown_key_id(vector: Vector) -> None:
    """A key id the server does not know is InvalidAccessKeyId.NotFound (404)."""
    key = Key("someone-else", "x")
    failure = verify(wire_request(vector), {"someone-else": key}, now_of(vector))
    assert failure is not None
    assert (failure.status, failure.code) == (404, "InvalidAccessKeyId.NotFound")


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_security_token_must_match_the_key(vector: Vector) -> None:
    """A key with a token needs that token; a key without one refuses a token (403)."""
    inputs = vector["inputs"]
    key_id, secret = inputs["access_key_id"], inputs["access_key_secret"]
    other = Key(key_id, secret, None if inputs["security_token"] else "STS.other")
    failure = verify(wire_request(vector), {key_id: other}, now_of(vector))
    assert failure is not None
    assert (failure.status, failure.code) == (403, "InvalidSecurityToken.Mismatch")


# ---------------------------------------------------------------------------------------------
# What must be signed and present


MINIMAL_FORM = next(v for v in V3 if v["id"] == "v3-minimal-CreateExportMigration-POST-form-ak")


def _resign(
    headers: dict[str, str], signed: list[str], request: IncomingRequest
) -> IncomingRequest:
    """The request re-signed (correctly) over just `signed`, with these headers sent."""
    canonical = signing.canonical_request(
        method=request.method,
        path="/",
        query=request.query,
        headers=headers,
        signed_headers=signed,
        content_sha256=headers["x-acs-content-sha256"],
    )
    sig = signing.v3_signature("testsecret", signing.v3_string_to_sign(canonical))
    headers = {**headers, "authorization": signing.v3_authorization("testid", signed, sig)}
    return IncomingRequest(request.method, "/", request.query, headers, request.body)


@pytest.mark.parametrize("left_out", ["content-type", "host", "x-acs-date", "x-acs-extra"])
def test_requires_host_content_type_and_x_acs_headers_signed(left_out: str) -> None:
    """A correct signature that leaves host, content-type or any x-acs-* header unsigned is
    IncompleteSignature."""
    request = wire_request(MINIMAL_FORM)
    headers = {k: v for k, v in request.headers.items() if k != "authorization"}
    headers["x-acs-extra"] = "1"
    signed = [name for name in headers if name != left_out]
    assert (
        verify(
            _resign(headers, list(headers), request), keys_for(MINIMAL_FORM), now_of(MINIMAL_FORM)
        )
        is None
    )
    failure = verify(
        _resign(headers, signed, request), keys_for(MINIMAL_FORM), now_of(MINIMAL_FORM)
    )
    assert failure is not None
    assert (failure.status, failure.code) == (400, "IncompleteSignature")
    assert left_out in failure.message


def test_accepts_unsigned_ordinary_header() -> None:
    """Headers outside host/content-type/x-acs-* (e.g. accept-encoding) may go unsigned."""
    request = wire_request(MINIMAL_FORM)
    headers = {**request.headers, "accept-encoding": "gzip, deflate", "user-agent": "x"}
    changed = IncomingRequest(request.method, "/", request.query, headers, request.body)
    assert check(MINIMAL_FORM, changed) is None


@pytest.mark.parametrize(
    "authorization",
    [
        "ACS3-HMAC-SHA256 Credential=testid,Signature=00",
        "ACS3-HMAC-SHA256 Credential=testid",
        "ACS3-HMAC-SHA256 garbage",
        "ACS3-HMAC-SM3 Credential=testid,SignedHeaders=host,Signature=00",
    ],
)
def test_rejects_malformed_authorization(authorization: str) -> None:
    """An Authorization header that cannot be parsed is IncompleteSignature."""
    request = wire_request(MINIMAL_FORM)
    headers = {**request.headers, "authorization": authorization}
    failure = check(MINIMAL_FORM, IncomingRequest("POST", "/", {}, headers, request.body))
    assert failure is not None
    assert (failure.status, failure.code) == (400, "IncompleteSignature")


@pytest.mark.parametrize("header", ["authorization", "x-acs-content-sha256"])
def test_non_ascii_signature_or_hash_is_a_mismatch_not_a_crash(header: str) -> None:
    """Non-ASCII bytes where hex is expected give SignatureDoesNotMatch (no TypeError)."""
    request = wire_request(MINIMAL_FORM)
    headers = {**request.headers, header: request.headers[header][:-2] + "é"}
    failure = check(MINIMAL_FORM, IncomingRequest("POST", "/", {}, headers, request.body))
    assert failure is not None
    assert (failure.status, failure.code) == (400, "SignatureDoesNotMatch")


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["signature_version"] == "V1"][:1])
def test_non_ascii_v1_signature_is_a_mismatch(vector: Vector) -> None:
    """A V1 Signature param with non-ASCII characters is SignatureDoesNotMatch."""
    request = wire_request(vector)
    query = {**request.query, "Signature": "é="}
    failure = check(vector, IncomingRequest(request.method, "/", query, request.headers, b""))
    assert failure is not None
    assert failure.code == "SignatureDoesNotMatch"


def test_rejects_unsigned_request() -> None:
    """Neither an Authorization header nor a Signature param: IncompleteSignature."""
    request = IncomingRequest("POST", "/", {"Action": "X"}, {"host": "h"}, b"")
    failure = verify(request, {}, now_of(MINIMAL_FORM))
    assert failure is not None
    assert failure.code == "IncompleteSignature"


def test_rejects_badly_formatted_date() -> None:
    """An x-acs-date not in yyyy-MM-ddTHH:mm:ssZ is InvalidTimeStamp.Format."""
    request = wire_request(MINIMAL_FORM)
    headers = {**request.headers, "x-acs-date": "2025-01-02 03:04:05"}
    failure = check(MINIMAL_FORM, IncomingRequest("POST", "/", {}, headers, request.body))
    assert failure is not None
    assert (failure.status, failure.code) == (400, "InvalidTimeStamp.Format")


# ---------------------------------------------------------------------------------------------
# Our own signer, through the checker


def incoming(signed: signing.SignedRequest) -> IncomingRequest:
    parts = urlsplit(signed.path_and_query)
    return IncomingRequest(
        method=signed.method,
        path=parts.path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={name.lower(): value for name, value in signed.headers.items()},
        body=signed.body,
    )


@pytest.mark.parametrize("token", [None, "STS.tok/en+=="], ids=["ak", "sts"])
@pytest.mark.parametrize("version", ["v3", "v1"])
@pytest.mark.parametrize(
    "query", [{}, {"PageSize": "10", "Tag": "a b&ü"}], ids=["noquery", "query"]
)
def test_accepts_our_build_request(
    version: signing.SignatureVersion, token: str | None, query: dict[str, str]
) -> None:
    """Requests made by our build_request (v3 and v1, AK and STS) pass the check."""
    now = datetime.fromisoformat("2025-06-07T08:09:10+00:00")
    credentials = Credentials("AKID", "s3cret", token)
    signed = signing.build_request(
        signature_version=version,
        method="POST",
        host="127.0.0.1:8080",
        action="CreateExportMigration",
        api_version="2020-05-18",
        body_params={"ProjectId": "1", "Name": "n ü+*~", "Description": "a & b"},
        credentials=credentials,
        timestamp=signing.timestamp_of(now),
        nonce="0" * 32,
        query_params=query,
    )
    keys = {"AKID": Key("AKID", "s3cret", token)}
    assert verify(incoming(signed), keys, now, nonces=NonceCache()) is None


def test_naive_now_is_taken_as_utc() -> None:
    """A naive `now` is read as UTC instead of failing the comparison."""
    assert (
        verify(
            wire_request(MINIMAL_FORM),
            keys_for(MINIMAL_FORM),
            now_of(MINIMAL_FORM).replace(tzinfo=None),
        )
        is None
    )


# ---------------------------------------------------------------------------------------------
# NonceCache


def test_nonce_cache_forgets_after_ttl() -> None:
    """A nonce may be used again once 15 minutes have passed."""
    cache = NonceCache()
    t0 = now_of(MINIMAL_FORM)
    assert cache.check_and_add("n", t0)
    assert not cache.check_and_add("n", t0 + timedelta(minutes=14))
    assert cache.check_and_add("n", t0 + timedelta(minutes=15, seconds=1))


def test_nonce_cache_is_bounded() -> None:
    """The cache keeps at most max_entries nonces, dropping the oldest."""
    cache = NonceCache(max_entries=3)
    t0 = now_of(MINIMAL_FORM)
    for i in range(5):
        assert cache.check_and_add(str(i), t0)
    assert len(cache) == 3
    assert "0" not in cache
    assert "4" in cache


def test_nonce_cache_refuses_zero_size() -> None:
    """A cache that could hold nothing would never detect a replay."""
    with pytest.raises(ValueError, match="max_entries"):
        NonceCache(max_entries=0)
