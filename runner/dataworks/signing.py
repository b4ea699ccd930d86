"""Request signing for the Alibaba Cloud OpenAPI: V3 (ACS3-HMAC-SHA256) and V1 (HMAC-SHA1).

Pure functions only: no I/O, no clock, no randomness. The caller supplies the timestamp and the
nonce, so every output is reproducible. The low-level canonicalization functions are shared with
the simulator's signature check, which works from the decoded query, the received headers and the
raw body bytes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from runner import __version__
from runner.dataworks.credentials import Credentials
from runner.dataworks.encoding import TIMESTAMP_FORMAT as TIMESTAMP_FORMAT
from runner.dataworks.encoding import form_encode as form_encode
from runner.dataworks.encoding import parse_timestamp as parse_timestamp
from runner.dataworks.encoding import percent_encode as percent_encode
from runner.dataworks.encoding import timestamp_of as timestamp_of
from runner.dataworks.encoding import wire_query as wire_query

V3_ALGORITHM = "ACS3-HMAC-SHA256"
V1_SIGNATURE_METHOD = "HMAC-SHA1"
V1_SIGNATURE_VERSION = "1.0"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
USER_AGENT = f"runner/{__version__}"

SignatureVersion = Literal["v3", "v1"]
_HEADER_BREAK = re.compile(r"[\r\n\x00]")


class SigningError(ValueError):
    """The request cannot be signed as given: a value is not valid Unicode (a lone surrogate
    cannot be encoded as UTF-8) or would break a header line. Nothing was sent."""


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
class SignedRequest:
    """A request ready for the wire: everything the transport needs, already encoded."""

    method: str
    # "/" or "/?..." already percent-encoded for the wire; with V1 it holds the signature
    path_and_query: str = field(repr=False)
    headers: dict[str, str] = field(repr=False)  # the Authorization header, any STS token
    body: bytes = b""


# ---------------------------------------------------------------------------------------------
# Hashes (the form body, the query and the timestamp are encoded in runner.dataworks.encoding)


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256, as sent in x-acs-content-sha256."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# V3 (ACS3-HMAC-SHA256)


def canonical_query_string(query: Mapping[str, str]) -> str:
    """Decoded query params sorted by name, `pct(name)=pct(value)` joined by '&'."""
    return "&".join(
        f"{percent_encode(name)}={percent_encode(value)}" for name, value in sorted(query.items())
    )


def normalize_signed_headers(names: Iterable[str]) -> list[str]:
    """Signed header names: lowercase, trimmed, de-duplicated, sorted."""
    return sorted({name.strip().lower() for name in names if name.strip()})


def signed_headers_string(names: Iterable[str]) -> str:
    """The SignedHeaders value: normalized names joined by ';'."""
    return ";".join(normalize_signed_headers(names))


def canonical_headers(headers: Mapping[str, str], signed_headers: Iterable[str]) -> str:
    """`name:trimmed-value\\n` for every signed header, sorted by name.

    Header names are matched case-insensitively; a signed header that is absent raises KeyError.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    lines = []
    for name in normalize_signed_headers(signed_headers):
        if name not in lowered:
            raise KeyError(name)
        lines.append(f"{name}:{lowered[name].strip()}\n")
    return "".join(lines)


def canonical_request(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    content_sha256: str,
) -> str:
    """METHOD, URI, query, headers, signed header list and payload hash, one per line."""
    names = normalize_signed_headers(signed_headers)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query_string(query),
            canonical_headers(headers, names),
            ";".join(names),
            content_sha256,
        ]
    )


def v3_string_to_sign(canonical: str) -> str:
    """`ACS3-HMAC-SHA256\\n` + hex SHA-256 of the canonical request."""
    return f"{V3_ALGORITHM}\n{sha256_hex(canonical.encode('utf-8'))}"


def v3_signature(secret: str, string_to_sign: str) -> str:
    """Lowercase hex HMAC-SHA256 keyed with the secret as is."""
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()


def v3_authorization(access_key_id: str, signed_headers: Iterable[str], signature: str) -> str:
    """The Authorization header value (no spaces after the commas)."""
    return (
        f"{V3_ALGORITHM} Credential={access_key_id},"
        f"SignedHeaders={signed_headers_string(signed_headers)},Signature={signature}"
    )


# ---------------------------------------------------------------------------------------------
# V1 (HMAC-SHA1, SignatureVersion=1.0)


def v1_canonicalized_query_string(params: Mapping[str, str]) -> str:
    """All params but Signature, sorted by name, `pct(name)=pct(value)` joined by '&'."""
    return "&".join(
        f"{percent_encode(name)}={percent_encode(value)}"
        for name, value in sorted(params.items())
        if name != "Signature"
    )


def v1_string_to_sign(method: str, canonicalized: str) -> str:
    """`METHOD&%2F&` + the canonicalized query string percent-encoded once more."""
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonicalized)}"


def v1_signature(secret: str, string_to_sign: str) -> str:
    """Base64 HMAC-SHA1 keyed with the secret followed by '&'."""
    key = (secret + "&").encode("utf-8")
    digest = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# ---------------------------------------------------------------------------------------------
# The builder


def build_request(
    *,
    signature_version: SignatureVersion,
    method: str,
    host: str,
    action: str,
    api_version: str,
    body_params: Mapping[str, str],
    credentials: Credentials,
    timestamp: str,
    nonce: str,
    query_params: Mapping[str, str] | None = None,
    user_agent: str = USER_AGENT,
    form: str | None = None,
) -> SignedRequest:
    """Sign one RPC request the way the official tea SDK does: body params in a sorted form body,
    query params sorted in the URL, path `/`. `form` is the body params already encoded (what
    form_encode(body_params) gives), when the caller has it. Raises SigningError for input that
    cannot be sent."""
    method = method.upper()
    try:
        if form is None:
            form = form_encode(body_params) if body_params else ""
        body = form.encode("ascii")
        query = dict(sorted(query_params.items())) if query_params else {}
        if signature_version == "v3":
            shape = _v3_template(
                method, host, action, api_version, user_agent, bool(body), credentials
            )
            signed = shape.sign(body, timestamp, nonce, query)
        elif signature_version == "v1":
            parts = _Parts(method, host, action, api_version, query, dict(body_params), body)
            signed = _build_v1(parts, credentials, timestamp, nonce, user_agent)
        else:
            raise ValueError(f"unknown signature version {signature_version!r}")
    except UnicodeEncodeError as exc:
        raise SigningError(f"a request value is not valid Unicode ({exc.reason})") from None
    # a V3 template's own headers were checked when it was made: only the date and nonce vary
    # (the hashes and the signature are hex)
    if signature_version == "v3":
        broken = bool(_HEADER_BREAK.search(timestamp) or _HEADER_BREAK.search(nonce))
    else:
        broken = any(_HEADER_BREAK.search(value) for value in signed.headers.values())
    if broken:
        raise SigningError("a header value holds a line break or a NUL")
    return signed


@dataclass(frozen=True, slots=True)
class _Parts:
    method: str
    host: str
    action: str
    api_version: str
    query: dict[str, str]  # sorted
    body_params: dict[str, str]
    body: bytes


def _path_and_query(query: Mapping[str, str]) -> str:
    return f"/?{wire_query(query)}" if query else "/"


# The values that change with every V3 request, in their headers' canonical (sorted) order.
_V3_VARYING = ("x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce")


class HmacSha256:
    """HMAC-SHA256 under one key (RFC 2104), its two padded key blocks hashed once: a message
    costs two copies of a hash state and two short updates, not a new HMAC keyed afresh.
    Shows nothing of its key."""

    __slots__ = ("_inner", "_outer")

    _BLOCK = 64  # SHA-256's block size

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __repr__(self) -> str:
        return "HmacSha256(<key>)"


@dataclass(frozen=True, slots=True)
class _V3Template:
    """V3 requests of one shape (method, host, action, version, user agent, credentials, body or
    not), with all that does not change per request worked out once. Every header is signed, as
    the SDK does; the canonical headers are `pieces` with the payload hash, the date and the
    nonce put between them (what canonical_request builds, in its order)."""

    method: str
    headers: dict[str, str]  # in the SDK's order; the varying values blank
    pieces: tuple[str, str, str, str]
    authorization: str  # up to the signature
    mac: HmacSha256  # keyed with the secret

    def sign(
        self, body: bytes, timestamp: str, nonce: str, query: Mapping[str, str]
    ) -> SignedRequest:
        payload_hash = hashlib.sha256(body).hexdigest()
        head, after_hash, after_date, tail = self.pieces
        canonical = (
            f"{self.method}\n/\n{canonical_query_string(query) if query else ''}\n{head}"
            f"{payload_hash}{after_hash}{timestamp.strip()}{after_date}{nonce.strip()}{tail}"
            f"{payload_hash}"
        )
        string_to_sign = v3_string_to_sign(canonical).encode("utf-8")
        signature = self.mac.hexdigest(string_to_sign)
        headers = self.headers.copy()
        headers["x-acs-date"] = timestamp
        headers["x-acs-signature-nonce"] = nonce
        headers["x-acs-content-sha256"] = payload_hash
        headers["Authorization"] = self.authorization + signature
        return SignedRequest(self.method, _path_and_query(query), headers, body)


@functools.lru_cache(maxsize=256)
def _v3_template(
    method: str,
    host: str,
    action: str,
    api_version: str,
    user_agent: str,
    has_body: bool,
    credentials: Credentials,
) -> _V3Template:
    headers: dict[str, str] = {
        "host": host,
        "x-acs-version": api_version,
        "x-acs-action": action,
        "user-agent": user_agent,
        "x-acs-date": "",
        "x-acs-signature-nonce": "",
        "accept": "application/json",
    }
    if has_body:
        headers["content-type"] = FORM_CONTENT_TYPE
    headers["x-acs-content-sha256"] = ""
    headers["x-acs-credentials-provider"] = credentials.provider
    if credentials.security_token:
        headers["x-acs-accesskey-id"] = credentials.access_key_id
        headers["x-acs-security-token"] = credentials.security_token
    if any(_HEADER_BREAK.search(value) for value in headers.values()):
        raise SigningError("a header value holds a line break or a NUL")
    # The names above are lowercase and trimmed already: the canonical lines are built directly.
    names = sorted(headers)
    signed = ";".join(names)
    lines = [f"{name}:{headers[name].strip()}\n" for name in names]
    # cut the canonical headers just before each varying value, and after its line's end
    cuts = [names.index(name) for name in _V3_VARYING]
    pieces = ["".join(lines[: cuts[0]]) + f"{_V3_VARYING[0]}:"]
    for n, cut in enumerate(cuts):
        last = n + 1 == len(cuts)
        following = f"\n{signed}\n" if last else f"{_V3_VARYING[n + 1]}:"
        pieces.append("\n" + "".join(lines[cut + 1 : None if last else cuts[n + 1]]) + following)
    authorization = (
        f"{V3_ALGORITHM} Credential={credentials.access_key_id},SignedHeaders={signed},Signature="
    )
    mac = HmacSha256(credentials.access_key_secret.encode("utf-8"))
    return _V3Template(
        method, headers, (pieces[0], pieces[1], pieces[2], pieces[3]), authorization, mac
    )


def v1_common_params(
    *,
    action: str,
    api_version: str,
    timestamp: str,
    nonce: str,
    credentials: Credentials,
    query_params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The URL query of a V1 request before its Signature, in the tea SDK's order."""
    params: dict[str, str] = {
        "Action": action,
        "Format": "json",
        "Version": api_version,
        "Timestamp": timestamp,
        "SignatureNonce": nonce,
    }
    params.update(query_params or {})
    if credentials.security_token:
        params["SecurityToken"] = credentials.security_token
    params["SignatureMethod"] = V1_SIGNATURE_METHOD
    params["SignatureVersion"] = V1_SIGNATURE_VERSION
    params["AccessKeyId"] = credentials.access_key_id
    return params


def _build_v1(
    p: _Parts, credentials: Credentials, timestamp: str, nonce: str, user_agent: str
) -> SignedRequest:
    url_params = v1_common_params(
        action=p.action,
        api_version=p.api_version,
        timestamp=timestamp,
        nonce=nonce,
        credentials=credentials,
        query_params=p.query,
    )
    overlap = set(url_params) & set(p.body_params)
    if overlap:
        raise ValueError(f"body params collide with query params: {sorted(overlap)}")
    signed_params = {**url_params, **p.body_params}
    string_to_sign = v1_string_to_sign(p.method, v1_canonicalized_query_string(signed_params))
    url_params["Signature"] = v1_signature(credentials.access_key_secret, string_to_sign)
    headers: dict[str, str] = {  # sent as the tea SDK sends them; V1 signs no header
        "host": p.host,
        "x-acs-version": p.api_version,
        "x-acs-action": p.action,
        "user-agent": user_agent,
    }
    if p.body:
        headers["content-type"] = FORM_CONTENT_TYPE
    headers["x-acs-credentials-provider"] = credentials.provider
    return SignedRequest(p.method, _path_and_query(url_params), headers, p.body)
