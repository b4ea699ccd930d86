"""The signer against the golden vectors made by the official SDK code, and the request builder."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from runner import __version__
from runner.dataworks import signing
from runner.dataworks.credentials import Credentials

REPO_ROOT = Path(__file__).resolve().parents[2]
# A copy of the shared reference's golden vectors (made by the official SDK code), kept with the
# tests so that a clone alone can run them; test_vectors_match_the_shared_reference keeps it honest.
VECTORS_PATH = REPO_ROOT / "tests" / "data" / "signing-vectors.json"
SHARED_VECTORS = REPO_ROOT.parent / "shared" / "reference" / "signing-vectors.json"

Vector = dict[str, Any]


def _load() -> list[Vector]:
    vectors: list[Vector] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["vectors"]
    return vectors


VECTORS = _load()
V3 = [v for v in VECTORS if v["signature_version"] == "V3"]
V1 = [v for v in VECTORS if v["signature_version"] == "V1"]
WITH_BODY = [v for v in VECTORS if v["inputs"].get("body_params")]
SDK_WIRE = [
    v
    for v in VECTORS
    if "sdk_extra_signed_headers" in v["inputs"]
    or (v["signature_version"] == "V1" and v["id"].startswith("v1-tea-"))
]

_INPUT_OF = {
    "Action": "action",
    "Version": "version",
    "Timestamp": "timestamp",
    "SignatureNonce": "nonce",
    "AccessKeyId": "access_key_id",
    "RegionId": "region_id",
    "SecurityToken": "security_token",
}


def _ids(vectors: list[Vector]) -> list[str]:
    return [str(v["id"]) for v in vectors]


def _body_bytes(inputs: Vector) -> bytes:
    params = inputs.get("body_params") or {}
    return signing.form_encode(params).encode("ascii") if params else b""


def v3_headers_to_sign(inputs: Vector) -> dict[str, str]:
    """The headers a V3 vector signs: its explicit list, or the SDK's full set built from inputs."""
    if "headers_to_sign" in inputs:
        return dict(inputs["headers_to_sign"])
    body = _body_bytes(inputs)
    headers = {
        "host": inputs["host"],
        "x-acs-action": inputs["action"],
        "x-acs-version": inputs["version"],
        "x-acs-date": inputs["timestamp"],
        "x-acs-signature-nonce": inputs["nonce"],
        "x-acs-content-sha256": signing.sha256_hex(body),
    }
    if body:
        headers["content-type"] = signing.FORM_CONTENT_TYPE
    if inputs["security_token"]:
        headers["x-acs-accesskey-id"] = inputs["access_key_id"]
        headers["x-acs-security-token"] = inputs["security_token"]
    headers.update(inputs["sdk_extra_signed_headers"])
    return headers


def v1_signed_params(inputs: Vector) -> dict[str, str]:
    """All params a V1 vector signs: query, body and the common params its description lists."""
    params: dict[str, str] = {**(inputs.get("query_params") or {})}
    params.update(inputs.get("body_params") or {})
    for item in (p.strip() for p in inputs.get("common_params", "").split(",") if p.strip()):
        optional = item.startswith("[")
        name, sep, literal = item.strip("[]").partition("=")
        if sep:
            params[name] = literal.strip("'\"")
            continue
        value = inputs.get(_INPUT_OF[name])
        if value is None and optional:
            continue
        params[name] = str(value)
    return params


def _credentials(inputs: Vector) -> Credentials:
    return Credentials(
        inputs["access_key_id"], inputs["access_key_secret"], inputs["security_token"]
    )


def _build_like_sdk(vector: Vector) -> signing.SignedRequest:
    inputs = vector["inputs"]
    headers = vector["outputs"]["headers"]
    return signing.build_request(
        signature_version="v3" if vector["signature_version"] == "V3" else "v1",
        method=inputs["method"],
        host=inputs["host"],
        action=inputs["action"],
        api_version=inputs["version"],
        body_params=inputs.get("body_params") or {},
        credentials=_credentials(inputs),
        timestamp=inputs["timestamp"],
        nonce=inputs["nonce"],
        query_params=inputs.get("query_params") or {},
        user_agent=headers["user-agent"],
    )


# ---------------------------------------------------------------------------------------------
# Encoding


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),
        ("~-_.", "~-_."),
        ("*", "%2A"),
        ("+/=&", "%2B%2F%3D%26"),
        ("ü—", "%C3%BC%E2%80%94"),
        ("AZaz09", "AZaz09"),
        ("", ""),
    ],
)
def test_percent_encode_is_rfc3986(raw: str, encoded: str) -> None:
    """percent_encode keeps only unreserved characters, writes %20 for space and uppercase hex."""
    assert signing.percent_encode(raw) == encoded


@pytest.mark.parametrize("vector", WITH_BODY, ids=_ids(WITH_BODY))
def test_form_encode_reproduces_sdk_body(vector: Vector) -> None:
    """form_encode gives the SDK's body bytes (sorted keys; aliyunsdkcore differs only in order)."""
    expected: str = vector["outputs"]["body"]
    ours = signing.form_encode(vector["inputs"]["body_params"])
    if vector["id"].startswith("v1-core-"):
        assert ours == "&".join(sorted(expected.split("&")))
    else:
        assert ours == expected


def test_form_encode_uses_plus_for_space_and_keeps_tilde() -> None:
    """The form body is quote_plus style: space '+', literal '+' as %2B, '*' as %2A, '~' kept."""
    assert signing.form_encode({"b": "x y+*~", "a": "1"}) == "a=1&b=x+y%2B%2A~"


def test_timestamp_of_converts_to_utc_seconds() -> None:
    """timestamp_of writes UTC with second precision, converting other zones."""
    dt = datetime(2025, 1, 2, 11, 4, 5, 987654, tzinfo=timezone(timedelta(hours=8)))
    assert signing.timestamp_of(dt) == "2025-01-02T03:04:05Z"
    assert signing.parse_timestamp("2025-01-02T03:04:05Z") == dt.replace(microsecond=0)


def test_timestamp_of_rejects_naive_datetime() -> None:
    """A naive datetime is refused rather than guessed to be UTC."""
    with pytest.raises(ValueError, match="aware"):
        signing.timestamp_of(datetime(2025, 1, 2))


@pytest.mark.parametrize(
    "bad", ["2025-01-02 03:04:05Z", "2025-01-02T03:04:05", "2025-01-02T03:04:05.1Z"]
)
def test_parse_timestamp_rejects_other_formats(bad: str) -> None:
    """parse_timestamp accepts only yyyy-MM-ddTHH:mm:ssZ."""
    with pytest.raises(ValueError, match=r"does not match|unconverted"):
        signing.parse_timestamp(bad)


# ---------------------------------------------------------------------------------------------
# V3 vectors


@pytest.mark.parametrize("vector", V3, ids=_ids(V3))
def test_v3_vector(vector: Vector) -> None:
    """Every V3 step (hash, canonical parts, string to sign, signature, header) matches the SDK."""
    inputs, out = vector["inputs"], vector["outputs"]
    body = _body_bytes(inputs)
    assert body == out["body"].encode("ascii")
    payload = signing.sha256_hex(body)
    assert payload == out["content_sha256"]
    headers = v3_headers_to_sign(inputs)
    names = list(headers)
    query = inputs.get("query_params") or {}
    assert signing.canonical_query_string(query) == out["canonical_query_string"]
    assert signing.canonical_headers(headers, names) == out["canonical_headers"]
    assert signing.signed_headers_string(names) == out["signed_headers"]
    canonical = signing.canonical_request(
        method=inputs["method"],
        path=inputs["pathname"],
        query=query,
        headers=headers,
        signed_headers=names,
        content_sha256=payload,
    )
    assert canonical == out["canonical_request"]
    sts = signing.v3_string_to_sign(canonical)
    assert sts == out["string_to_sign"]
    assert sts.endswith(out["hashed_canonical_request"])
    signature = signing.v3_signature(inputs["access_key_secret"], sts)
    assert signature == out["signature"]
    assert (
        signing.v3_authorization(inputs["access_key_id"], names, signature) == out["authorization"]
    )


def test_canonical_headers_trims_and_ignores_name_case() -> None:
    """Header names are matched case-insensitively and values are trimmed."""
    assert signing.canonical_headers({"Host": " h ", "X-Acs-A": "1"}, ["x-acs-a", "HOST"]) == (
        "host:h\nx-acs-a:1\n"
    )


def test_canonical_headers_refuses_missing_signed_header() -> None:
    """A header listed as signed but absent is an error, not an empty line."""
    with pytest.raises(KeyError):
        signing.canonical_headers({"host": "h"}, ["host", "x-acs-date"])


# ---------------------------------------------------------------------------------------------
# V1 vectors


@pytest.mark.parametrize("vector", V1, ids=_ids(V1))
def test_v1_vector(vector: Vector) -> None:
    """Every V1 step (canonicalized query, string to sign, signature) matches the SDK."""
    inputs, out = vector["inputs"], vector["outputs"]
    params = v1_signed_params(inputs)
    canonical = signing.v1_canonicalized_query_string(params)
    assert canonical == out["canonicalized_query_string"]
    sts = signing.v1_string_to_sign(inputs["method"], canonical)
    assert sts == out["string_to_sign"]
    assert signing.v1_signature(inputs["access_key_secret"], sts) == out["signature"]
    wire = dict(parse_qsl(out["query_string"], keep_blank_values=True))
    wire.update(parse_qsl(out["body"], keep_blank_values=True))
    assert wire == {**params, "Signature": out["signature"]}


def test_v1_canonicalization_skips_signature() -> None:
    """The Signature param itself is never part of what is signed."""
    assert (
        signing.v1_canonicalized_query_string({"b": "2", "Signature": "x", "a": "1"}) == "a=1&b=2"
    )


# ---------------------------------------------------------------------------------------------
# build_request


@pytest.mark.parametrize("vector", SDK_WIRE, ids=_ids(SDK_WIRE))
def test_build_request_reproduces_sdk_wire(vector: Vector) -> None:
    """With the SDK's user-agent pinned, build_request puts on the wire exactly what the SDK did."""
    out = vector["outputs"]
    signed = _build_like_sdk(vector)
    assert signed.method == vector["inputs"]["method"]
    assert signed.path_and_query == (f"/?{out['query_string']}" if out["query_string"] else "/")
    assert list(signed.headers.items()) == list(out["headers"].items())
    assert signed.body == out["body"].encode("ascii")
    assert urlsplit(out["url"]).path == "/"


AK = Credentials("AKID", "s3cr3t")
STS = Credentials("STS.AKID", "s3cr3t", "tok/en+==")
BODY = {"ProjectId": "12345", "Name": "sales full", "Description": "ü & *"}


def _v3(
    credentials: Credentials = AK,
    *,
    body: dict[str, str] | None = None,
    timestamp: str = "2025-01-02T03:04:05Z",
    nonce: str = "n" * 32,
    query: dict[str, str] | None = None,
) -> signing.SignedRequest:
    return signing.build_request(
        signature_version="v3",
        method="post",
        host="dataworks.cn-shanghai.aliyuncs.com",
        action="CreateExportMigration",
        api_version="2020-05-18",
        body_params=BODY if body is None else body,
        credentials=credentials,
        timestamp=timestamp,
        nonce=nonce,
        query_params=query,
    )


def _signed_names(request: signing.SignedRequest) -> list[str]:
    auth = request.headers["Authorization"]
    return auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")


@pytest.mark.parametrize("credentials", [AK, STS], ids=["ak", "sts"])
def test_build_request_v3_header_set(credentials: Credentials) -> None:
    """V3 sets the documented headers, signs every one of them but Authorization."""
    signed = _v3(credentials)
    expected = {
        "host",
        "x-acs-version",
        "x-acs-action",
        "user-agent",
        "x-acs-date",
        "x-acs-signature-nonce",
        "accept",
        "content-type",
        "x-acs-content-sha256",
        "x-acs-credentials-provider",
        "Authorization",
    }
    if credentials.security_token:
        expected |= {"x-acs-accesskey-id", "x-acs-security-token"}
    assert set(signed.headers) == expected
    assert _signed_names(signed) == sorted(expected - {"Authorization"})
    assert signed.method == "POST"
    assert signed.path_and_query == "/"
    assert signed.headers["user-agent"] == f"runner/{__version__}"
    assert signed.headers["x-acs-credentials-provider"] == credentials.provider
    assert signed.headers["x-acs-content-sha256"] == signing.sha256_hex(signed.body)
    assert signed.headers["Authorization"].startswith(
        f"ACS3-HMAC-SHA256 Credential={credentials.access_key_id},"
    )


def test_build_request_v3_without_body_has_no_content_type() -> None:
    """An empty body means no content-type at all (so none can go unsigned) and the empty hash."""
    signed = _v3(body={}, query={"PageSize": "10", "PageNumber": "1"})
    assert "content-type" not in signed.headers
    assert signed.body == b""
    assert signed.headers["x-acs-content-sha256"] == signing.EMPTY_SHA256
    assert signed.path_and_query == "/?PageNumber=1&PageSize=10"


@pytest.mark.parametrize("version", ["v3", "v1"])
def test_build_request_never_sends_unsigned_content_type(version: signing.SignatureVersion) -> None:
    """Where headers are signed (V3) content-type is among them; the body is always form encoded."""
    signed = signing.build_request(
        signature_version=version,
        method="POST",
        host="h",
        action="A",
        api_version="2020-05-18",
        body_params=BODY,
        credentials=AK,
        timestamp="2025-01-02T03:04:05Z",
        nonce="n",
    )
    assert signed.headers["content-type"] == signing.FORM_CONTENT_TYPE
    assert signed.body == signing.form_encode(BODY).encode("ascii")
    if version == "v3":
        assert "content-type" in _signed_names(signed)


@pytest.mark.parametrize(
    "change",
    [{"nonce": "m" * 32}, {"timestamp": "2025-01-02T03:04:06Z"}, {"credentials": STS}],
    ids=["nonce", "timestamp", "credentials"],
)
def test_fresh_inputs_change_signature(change: dict[str, Any]) -> None:
    """A new nonce, date or key gives a new signature (retries are re-signed, never replayed)."""
    assert _v3(**change).headers["Authorization"] != _v3().headers["Authorization"]


def _v3_by_the_spec(signed: signing.SignedRequest, secret: str) -> str:
    """The Authorization header of `signed`, from the spec's own steps: canonical request over
    every header sent, string to sign, signature."""
    headers = {k: v for k, v in signed.headers.items() if k != "Authorization"}
    path, _, raw_query = signed.path_and_query.partition("?")
    canonical = signing.canonical_request(
        method=signed.method,
        path=path,
        query=dict(parse_qsl(raw_query, keep_blank_values=True)),
        headers=headers,
        signed_headers=headers,
        content_sha256=signing.sha256_hex(signed.body),
    )
    signature = signing.v3_signature(secret, signing.v3_string_to_sign(canonical))
    key_id = signed.headers["Authorization"].split("Credential=", 1)[1].split(",", 1)[0]
    return signing.v3_authorization(key_id, headers, signature)


@pytest.mark.parametrize("seed", range(60))
def test_build_request_v3_signs_every_shape_as_the_spec_says(seed: int) -> None:
    """Requests of every shape (key or STS token, body or none, query or none, odd spaces in
    the date, nonce and user agent) carry the signature the spec's steps give, whatever shapes
    were signed before (the per-shape template is reused)."""
    rng = random.Random(seed)

    def text() -> str:
        return "".join(rng.choice("aZ09 -_.~*&=+/%ü") for _ in range(rng.randrange(0, 8)))

    credentials = rng.choice([AK, STS, Credentials("K2", "other secret", " tok ")])
    body = {f"P{n}": text() for n in range(rng.randrange(0, 4))}
    query = {f"Q{n}": text() for n in range(rng.randrange(0, 3))}
    signed = signing.build_request(
        signature_version="v3",
        method=rng.choice(["POST", "post", "GET"]),
        host=rng.choice(["dataworks.cn-shanghai.aliyuncs.com", "127.0.0.1:8080"]),
        action=rng.choice(["CreateExportMigration", "ListMigrations"]),
        api_version="2020-05-18",
        body_params=body,
        credentials=credentials,
        timestamp=rng.choice(["2025-01-02T03:04:05Z", " 2025-01-02T03:04:05Z "]),
        nonce=rng.choice(["n" * 32, " spaced nonce ", f"{seed:032x}"]),
        query_params=query,
        user_agent=rng.choice([signing.USER_AGENT, " ua/1 "]),
    )
    assert signed.headers["Authorization"] == _v3_by_the_spec(signed, credentials.access_key_secret)
    assert ("content-type" in signed.headers) == bool(body)


def test_build_request_v3_is_deterministic() -> None:
    """The same inputs give the same request: the signer has no clock and no randomness."""
    assert _v3() == _v3()


@pytest.mark.parametrize("credentials", [AK, STS], ids=["ak", "sts"])
def test_build_request_v1_puts_common_params_in_query(credentials: Credentials) -> None:
    """V1 sends Action..AccessKeyId and Signature in the URL and the API params in the body."""
    signed = signing.build_request(
        signature_version="v1",
        method="POST",
        host="h",
        action="CreateExportMigration",
        api_version="2020-05-18",
        body_params=BODY,
        credentials=credentials,
        timestamp="2025-01-02T03:04:05Z",
        nonce="abc",
    )
    query = dict(parse_qsl(urlsplit(signed.path_and_query).query, keep_blank_values=True))
    names = ["Action", "Format", "Version", "Timestamp", "SignatureNonce"]
    names += ["SecurityToken"] if credentials.security_token else []
    names += ["SignatureMethod", "SignatureVersion", "AccessKeyId", "Signature"]
    assert list(query) == names
    assert query["SignatureMethod"] == "HMAC-SHA1"
    assert query["SignatureVersion"] == "1.0"
    params = {**query, **BODY}
    sts = signing.v1_string_to_sign("POST", signing.v1_canonicalized_query_string(params))
    assert query["Signature"] == signing.v1_signature(credentials.access_key_secret, sts)
    assert "Authorization" not in signed.headers


def test_build_request_v1_refuses_param_collisions() -> None:
    """A body param named like a common param would be signed ambiguously, so it is refused."""
    with pytest.raises(ValueError, match="collide"):
        signing.build_request(
            signature_version="v1",
            method="POST",
            host="h",
            action="A",
            api_version="v",
            body_params={"Action": "B"},
            credentials=AK,
            timestamp="2025-01-02T03:04:05Z",
            nonce="n",
        )


def test_build_request_refuses_unknown_version() -> None:
    """Only v3 and v1 exist."""
    with pytest.raises(ValueError, match="unknown signature version"):
        signing.build_request(
            signature_version="v2",  # type: ignore[arg-type]
            method="POST",
            host="h",
            action="A",
            api_version="v",
            body_params={},
            credentials=AK,
            timestamp=signing.timestamp_of(datetime(2025, 1, 2, tzinfo=UTC)),
            nonce="n",
        )


def test_vectors_match_the_shared_reference() -> None:
    """The vectors kept with the tests are the shared reference's, byte for byte."""
    if not SHARED_VECTORS.exists():
        pytest.skip("the shared reference folder is not beside this clone")
    assert VECTORS_PATH.read_bytes() == SHARED_VECTORS.read_bytes()


@pytest.mark.parametrize("length", [0, 1, 20, 63, 64, 65, 130])
def test_hmac_with_its_key_blocks_hashed_once_is_hmac(length: int) -> None:
    """HmacSha256 gives RFC 2104's HMAC-SHA256 for keys shorter, as long as and longer than a
    block, message after message, and its repr shows nothing of the key."""
    import hashlib
    import hmac

    key = bytes(random.Random(length).randrange(256) for _ in range(length))
    mac = signing.HmacSha256(key)
    for message in (b"", b"x", b"ACS3-HMAC-SHA256\n" + b"a" * 200):
        assert mac.hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()
    assert key.hex() not in repr(mac) or not key
