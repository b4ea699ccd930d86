"""Signature checks computed by the official SDK's own code (alibabacloud_tea_openapi 0.4.6).

A second oracle, independent of runner.dataworks.signing: tests use it to check our signer and it
can stand in for the simulator's checker. Importing this module needs the SDK installed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

V3_ALGORITHM = "ACS3-HMAC-SHA256"


def _parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    prefix = V3_ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    parts = dict(item.strip().partition("=")[::2] for item in value[len(prefix) :].split(","))
    try:
        return parts["Credential"], parts["SignedHeaders"].split(";"), parts["Signature"]
    except KeyError:
        return None


def sdk_verify_v3(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
) -> bool:
    """True when the SDK's Utils.get_authorization, given what was received, gives the same
    signature as the request's Authorization header (and the body hash header is right)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    parsed = _parse_authorization(lowered.get("authorization", ""))
    if parsed is None:
        return False
    credential, signed, signature = parsed
    if any(name not in lowered for name in signed):
        return False
    payload = hashlib.sha256(body).hexdigest()
    if lowered.get("x-acs-content-sha256") != payload:
        return False
    request = DaraRequest()
    request.method = method
    request.pathname = path
    request.query = dict(query)
    request.headers = {name: lowered[name] for name in signed}
    expected: str = Utils.get_authorization(request, V3_ALGORITHM, payload, credential, secret)
    expected_signature = expected.rsplit("Signature=", 1)[1]
    return hmac.compare_digest(expected_signature, signature)


def sdk_verify_v1(method: str, params: Mapping[str, str], secret: str) -> bool:
    """True when the SDK's Utils.get_rpcsignature over every param but Signature gives the
    request's Signature (params: the decoded query and form body together)."""
    signed = {name: value for name, value in params.items() if name != "Signature"}
    expected: str = Utils.get_rpcsignature(signed, method, secret)
    return hmac.compare_digest(expected, params.get("Signature", ""))
