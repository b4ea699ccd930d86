"""STS (product Sts, version 2015-04-01, RPC): AssumeRole and AssumeRoleWithOIDC.

Sent through the run's transport and signed by our own signer (V1 HMAC-SHA1 by default, as the
official credentials library signs them; V3 works too). Without `--endpoint` STS is reached over
https only: `sts.aliyuncs.com`, or `sts.<region>.aliyuncs.com` (`sts-vpc.` with VPC endpoints)
when an STS region is set; with `--endpoint URL`, every call goes to URL, STS included.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from runner.dataworks import signing
from runner.dataworks.answers import parse_answer
from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.endpoints import check_endpoint
from runner.dataworks.keys import TransientError
from runner.dataworks.transport import (
    HttpRequest,
    HttpResponse,
    Transport,
    TransportError,
)
from runner.models import ApiError, ErrorKind
from runner.redact import clean_message

STS_VERSION = "2015-04-01"
STS_HOST = "sts.aliyuncs.com"
EXPIRED_TOKEN = "InvalidSecurityToken.Expired"
MAX_FIELD = 8192  # characters of a key id, secret or token


class StsRefused(CredentialsError):
    """STS answered with an error; `code` is its error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def sts_endpoint(override: str | None, *, region: str | None = None, vpc: bool = False) -> str:
    """The base URL STS is reached at: the --endpoint override, else the public (or VPC)
    https endpoint, regional when an STS region is set."""
    if override:
        return check_endpoint(override)
    prefix = "sts-vpc" if vpc else "sts"
    return f"https://{prefix}.{region}.aliyuncs.com" if region else f"https://{STS_HOST}"


def key_from(fields: object, *, what: str) -> Credentials:
    """The key in an answer's AccessKeyId, AccessKeySecret, SecurityToken and Expiration
    (`%Y-%m-%dT%H:%M:%SZ`, UTC). CredentialsError naming the field that is wrong, never a value."""
    if not isinstance(fields, Mapping):
        raise CredentialsError(f"{what} answered without credentials")
    values: list[str] = []
    for name in ("AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"):
        value = fields.get(name)
        if not (
            isinstance(value, str)
            and 0 < len(value) <= MAX_FIELD
            and value.isascii()
            and value.isprintable()
            and value.strip() == value
        ):
            raise CredentialsError(f"{what} answered without a valid {name}")
        values.append(value)
    key_id, secret, token, expiration = values
    try:
        expires = signing.parse_timestamp(expiration).timestamp()
    except ValueError:
        raise CredentialsError(f"{what} answered an Expiration not in %Y-%m-%dT%H:%M:%SZ") from None
    return Credentials(key_id, secret, token, source=what, expiration=expires)


def read_answer(response: HttpResponse, *, what: str, secrets: tuple[str, ...] = ()) -> Any:
    """The JSON body of a success answer; a refusal raised as StsRefused (TransientError when it
    may pass: throttled, 5xx), its message cleaned of any secret."""
    try:
        return parse_answer(response, mutating=False)
    except ApiError as error:
        message = clean_message(error.message, secrets)
        text = f"{what} refused: {error.code}" + (f" ({message})" if message else "")
        if error.kind is ErrorKind.RETRYABLE and not error.code.startswith("Malformed"):
            raise TransientError(text) from None
        raise StsRefused(text, error.code) from None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_nonce() -> str:
    return secrets.token_hex(16)


class Sts:
    """The two STS calls, over a transport, to one base URL."""

    def __init__(
        self,
        transport: Transport,
        base_url: str,
        *,
        timeout: float = 10.0,
        signature_version: signing.SignatureVersion = "v1",
        now: Callable[[], datetime] = _utcnow,
        nonce: Callable[[], str] = _new_nonce,
    ) -> None:
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._host = self._base.split("://", 1)[1]
        self._timeout = timeout
        self._signature_version: signing.SignatureVersion = signature_version
        self._now = now
        self._nonce = nonce

    async def assume_role(
        self,
        caller: Credentials,
        *,
        role_arn: str,
        session_name: str,
        duration: int,
        policy: str | None = None,
        external_id: str | None = None,
        source: str = "",
    ) -> Credentials:
        """A role session's key, asked for with (and signed by) the caller's key. `source`
        names what the role comes from, for messages."""
        what = f"{source}: AssumeRole" if source else "AssumeRole"
        params = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": str(duration),
        }
        if policy:
            params["Policy"] = policy
        if external_id:
            params["ExternalId"] = external_id
        try:
            signed = signing.build_request(
                signature_version=self._signature_version,
                method="POST",
                host=self._host,
                action="AssumeRole",
                api_version=STS_VERSION,
                body_params=params,
                credentials=caller,
                timestamp=signing.timestamp_of(self._now()),
                nonce=self._nonce(),
            )
        except signing.SigningError as error:
            raise CredentialsError(f"{what} cannot be signed ({error})") from None
        url = self._base + signed.path_and_query
        request = HttpRequest(signed.method, url, signed.headers, signed.body)
        hidden = (caller.access_key_secret, caller.security_token or "")
        body = await self._exchange(request, what=what, secrets=hidden)
        return key_from(body.get("Credentials"), what=what)

    async def assume_role_with_oidc(
        self,
        *,
        role_arn: str,
        provider_arn: str,
        token: str,
        session_name: str,
        duration: int,
        policy: str | None = None,
        source: str = "",
    ) -> Credentials:
        """A role session's key for an OIDC token: an anonymous call, no key signs it."""
        what = f"{source}: AssumeRoleWithOIDC" if source else "AssumeRoleWithOIDC"
        query = {
            "Action": "AssumeRoleWithOIDC",
            "Format": "JSON",
            "Version": STS_VERSION,
            "Timestamp": signing.timestamp_of(self._now()),
        }
        params = {
            "RoleArn": role_arn,
            "OIDCProviderArn": provider_arn,
            "OIDCToken": token,
            "RoleSessionName": session_name,
            "DurationSeconds": str(duration),
        }
        if policy:
            params["Policy"] = policy
        headers = {
            "host": self._host,
            "user-agent": signing.USER_AGENT,
            "accept": "application/json",
            "content-type": signing.FORM_CONTENT_TYPE,
        }
        url = f"{self._base}/?{signing.wire_query(query)}"
        body = signing.form_encode(params).encode("ascii")
        request = HttpRequest("POST", url, headers, body)
        answer = await self._exchange(request, what=what, secrets=(token,))
        return key_from(answer.get("Credentials"), what=what)

    async def _exchange(
        self, request: HttpRequest, *, what: str, secrets: tuple[str, ...]
    ) -> dict[str, Any]:
        try:
            response = await self._transport.send(request, self._timeout)
        except TransportError as error:
            raise TransientError(f"{what}: {clean_message(str(error), secrets)}") from None
        body: dict[str, Any] = read_answer(response, what=what, secrets=secrets)
        return body
