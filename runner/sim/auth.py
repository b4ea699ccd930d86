"""The simulator's signature check: V3 (ACS3-HMAC-SHA256 header) and V1 (HMAC-SHA1 params).

The check recomputes the signature from what was received (decoded query, headers, raw body) and
answers with the error the real gateway gives. It is proven against the golden vectors made by the
official SDK, not only against our own signer.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from runner.dataworks import signing

NONCE_TTL = timedelta(minutes=15)

_MISMATCH = "Specified signature is not matched with our calculation."


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    method: str
    path: str  # e.g. "/"
    query: Mapping[str, str]  # decoded query parameters
    headers: Mapping[str, str]  # lower-case names
    body: bytes  # raw body bytes as received


@dataclass(frozen=True, slots=True)
class Key:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    status: int  # HTTP status to answer
    code: str
    message: str


class NonceCache:
    """Nonces seen in the last `ttl`, at most `max_entries` of them (oldest dropped first)."""

    def __init__(self, ttl: timedelta = NONCE_TTL, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._ttl = ttl
        self._max = max_entries
        self._seen: OrderedDict[str, datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._seen

    def check_and_add(self, nonce: str, now: datetime) -> bool:
        """Record the nonce; False when it was already used within the ttl."""
        self._expire(now)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now + self._ttl
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: datetime) -> None:
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires > now:
                return
            del self._seen[oldest]


def _fail(status: int, code: str, message: str) -> AuthFailure:
    return AuthFailure(status, code, message)


def _incomplete(message: str) -> AuthFailure:
    return _fail(400, "IncompleteSignature", message)


def _same(received: str, expected: str) -> bool:
    """Constant-time comparison that also copes with non-ASCII input."""
    return hmac.compare_digest(received.encode("utf-8"), expected.encode("utf-8"))


def _well_formed(request: IncomingRequest) -> bool:
    """Whether every header and query text is valid Unicode: the server decodes bytes with
    surrogateescape, and a lone surrogate can be neither hashed nor compared."""
    texts = (*request.headers.items(), *request.query.items())
    try:
        for name, value in texts:
            name.encode("utf-8")
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def verify(
    request: IncomingRequest,
    keys: Mapping[str, Key],
    now: datetime,
    *,
    max_skew: timedelta = timedelta(minutes=15),
    nonces: NonceCache | None = None,
) -> AuthFailure | None:
    """None when the request is correctly signed by a known key; otherwise the failure to answer."""
    if not _well_formed(request):
        return _incomplete("the request's headers or query are not valid UTF-8")
    headers = {name.lower(): value for name, value in request.headers.items()}
    authorization = headers.get("authorization", "")
    if authorization.startswith(signing.V3_ALGORITHM + " "):
        return _verify_v3(request, headers, keys, _aware(now), max_skew, nonces)
    if authorization:
        return _incomplete(f"unsupported Authorization scheme: {authorization.split(' ', 1)[0]}")
    params = _v1_params(request, headers)
    if isinstance(params, AuthFailure):
        return params
    if "Signature" in params:
        return _verify_v1(request, params, keys, _aware(now), max_skew, nonces)
    return _incomplete("the request carries no signature (Authorization header or Signature)")


# ---------------------------------------------------------------------------------------------
# Shared checks


def _check_time(value: str | None, now: datetime, max_skew: timedelta) -> AuthFailure | None:
    if not value:
        return _fail(400, "InvalidTimeStamp.Format", "the request timestamp is missing")
    try:
        sent = signing.parse_timestamp(value)
    except ValueError:
        return _fail(
            400,
            "InvalidTimeStamp.Format",
            f"the timestamp {value!r} is not in the format yyyy-MM-ddTHH:mm:ssZ (UTC)",
        )
    if abs(now - sent) > max_skew:
        return _fail(
            400,
            "InvalidTimeStamp.Expired",
            f"the timestamp {value} is more than {max_skew} away from the server time "
            f"{signing.timestamp_of(now)}",
        )
    return None


def _check_token(key: Key, token: str | None) -> AuthFailure | None:
    if key.security_token is None:
        if token:
            return _fail(
                403,
                "InvalidSecurityToken.Mismatch",
                "a security token was sent for an access key that has none",
            )
        return None
    if not token:
        return _fail(403, "InvalidSecurityToken.Mismatch", "the security token is missing")
    if not _same(token, key.security_token):
        return _fail(
            403, "InvalidSecurityToken.Mismatch", "the security token does not match the key"
        )
    return None


def _lookup_key(keys: Mapping[str, Key], key_id: str) -> Key | AuthFailure:
    key = keys.get(key_id)
    if key is None:
        return _fail(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    return key


def _check_nonce(nonces: NonceCache | None, nonce: str, now: datetime) -> AuthFailure | None:
    if nonces is not None and not nonces.check_and_add(nonce, now):
        return _fail(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
    return None


def _mismatch(string_to_sign: str) -> AuthFailure:
    return _fail(
        400,
        "SignatureDoesNotMatch",
        f"{_MISMATCH} server string to sign is:{string_to_sign}",
    )


# ---------------------------------------------------------------------------------------------
# V3


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The three parts of a V3 Authorization header."""

    credential: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`; None if malformed."""
    prefix = signing.V3_ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    parts: dict[str, str] = {}
    for item in value[len(prefix) :].split(","):
        name, sep, part = item.strip().partition("=")
        if not sep or name in parts:
            return None
        parts[name] = part.strip()
    credential = parts.get("Credential", "")
    names = parts.get("SignedHeaders", "")
    signature = parts.get("Signature", "")
    if not credential or not names or not signature:
        return None
    return ParsedAuthorization(credential, names.split(";"), signature)


def _verify_v3(
    request: IncomingRequest,
    headers: Mapping[str, str],
    keys: Mapping[str, Key],
    now: datetime,
    max_skew: timedelta,
    nonces: NonceCache | None,
) -> AuthFailure | None:
    auth = parse_authorization(headers["authorization"])
    if auth is None:
        return _incomplete(
            "the Authorization header must be "
            "'ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<names>,Signature=<hex>'"
        )
    signed = [name.strip().lower() for name in auth.signed_headers]
    if "authorization" in signed:
        return _incomplete("the Authorization header cannot be signed")
    for name in signed:
        if name not in headers:
            return _incomplete(f"the signed header {name} is not in the request")
    for name in ("host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"):
        if name not in headers:
            return _incomplete(f"the header {name} is required")
    must_sign = [n for n in headers if n in ("host", "content-type") or n.startswith("x-acs-")]
    for name in must_sign:
        if name not in signed:
            return _incomplete(f"the header {name} must be signed")
    key = _lookup_key(keys, auth.credential)
    if isinstance(key, AuthFailure):
        return key
    if "x-acs-accesskey-id" in headers and headers["x-acs-accesskey-id"] != auth.credential:
        return _incomplete("x-acs-accesskey-id differs from the Authorization credential")
    failure = _check_time(headers["x-acs-date"], now, max_skew) or _check_token(
        key, headers.get("x-acs-security-token")
    )
    if failure is not None:
        return failure
    claimed_hash = headers["x-acs-content-sha256"].strip().lower()
    if not _same(claimed_hash, signing.sha256_hex(request.body)):
        return _fail(
            400,
            "SignatureDoesNotMatch",
            f"{_MISMATCH} x-acs-content-sha256 is not the SHA-256 of the request body",
        )
    canonical = signing.canonical_request(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=headers,
        signed_headers=signed,
        content_sha256=claimed_hash,
    )
    string_to_sign = signing.v3_string_to_sign(canonical)
    expected = signing.v3_signature(key.access_key_secret, string_to_sign)
    if not _same(expected, auth.signature.lower()):
        return _mismatch(string_to_sign)
    return _check_nonce(nonces, headers["x-acs-signature-nonce"], now)


# ---------------------------------------------------------------------------------------------
# V1


def _v1_params(
    request: IncomingRequest, headers: Mapping[str, str]
) -> dict[str, str] | AuthFailure:
    """Query and form-body params together, as the gateway merges them for RPC."""
    params = dict(request.query)
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if request.body and content_type in ("", signing.FORM_CONTENT_TYPE):
        try:
            pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return _incomplete("the form body cannot be decoded")
        for name, value in pairs:
            if name in params:
                return _incomplete(f"the parameter {name} is given more than once")
            params[name] = value
    return params


def _verify_v1(
    request: IncomingRequest,
    params: Mapping[str, str],
    keys: Mapping[str, Key],
    now: datetime,
    max_skew: timedelta,
    nonces: NonceCache | None,
) -> AuthFailure | None:
    for name in ("AccessKeyId", "SignatureNonce", "SignatureMethod", "SignatureVersion"):
        if not params.get(name):
            return _incomplete(f"the parameter {name} is required")
    if params["SignatureMethod"] != signing.V1_SIGNATURE_METHOD:
        return _incomplete(f"SignatureMethod must be {signing.V1_SIGNATURE_METHOD}")
    if params["SignatureVersion"] != signing.V1_SIGNATURE_VERSION:
        return _incomplete(f"SignatureVersion must be {signing.V1_SIGNATURE_VERSION}")
    key = _lookup_key(keys, params["AccessKeyId"])
    if isinstance(key, AuthFailure):
        return key
    failure = _check_time(params.get("Timestamp"), now, max_skew) or _check_token(
        key, params.get("SecurityToken")
    )
    if failure is not None:
        return failure
    string_to_sign = signing.v1_string_to_sign(
        request.method, signing.v1_canonicalized_query_string(params)
    )
    expected = signing.v1_signature(key.access_key_secret, string_to_sign)
    if not _same(expected, params["Signature"]):
        return _mismatch(string_to_sign)
    return _check_nonce(nonces, params["SignatureNonce"], now)
