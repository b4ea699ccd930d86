"""The sources of temporary keys besides STS: a credentials URI, ECS instance metadata (IMDSv2
first), an External profile's command, and CloudSSO. Each is one fetch; caching and refreshing is
`runner.dataworks.keys`. Errors name the source and what went wrong, never a value they read.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import anyio

from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.keys import TransientError
from runner.dataworks.sts import key_from
from runner.dataworks.transport import HttpRequest, HttpResponse, Transport, TransportError

ECS_METADATA_URL = "http://100.100.100.200"
TOKEN_PATH = "/latest/api/token"
ROLE_PATH = "/latest/meta-data/ram/security-credentials/"
TOKEN_TTL = "21600"  # seconds an IMDSv2 token lives (the SDK's value)
ECS_TIMEOUT = 1.0  # seconds: the metadata service is on the host, or not there at all
EXTERNAL_TIMEOUT = 60.0
MAX_OUTPUT = 1024 * 1024  # bytes an External command may print


async def _send(
    transport: Transport, request: HttpRequest, timeout: float, *, what: str
) -> HttpResponse:
    try:
        return await transport.send(request, timeout)
    except TransportError as error:
        raise TransientError(f"{what}: {error}") from None


def _status(response: HttpResponse, *, what: str) -> None:
    """Nothing when 200; TransientError for 429 and 5xx; CredentialsError otherwise."""
    if response.status == 200:
        return
    error = TransientError if response.status == 429 or response.status >= 500 else CredentialsError
    raise error(f"{what} answered HTTP {response.status}")


def _json(body: bytes, *, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise CredentialsError(f"{what} answered something that is not JSON") from None


def _successful_key(body: bytes, *, what: str) -> Credentials:
    """The credentials-URI and ECS metadata answer: Code "Success" and the four key fields."""
    document = _json(body, what=what)
    if not isinstance(document, dict) or document.get("Code") != "Success":
        raise CredentialsError(f"{what} answered without Code Success")
    return key_from(document, what=what)


async def fetch_uri(transport: Transport, uri: str, *, what: str, timeout: float) -> Credentials:
    """A plain GET of ALIBABA_CLOUD_CREDENTIALS_URI."""
    request = HttpRequest("GET", uri, {"accept": "application/json"})
    response = await _send(transport, request, timeout, what=what)
    _status(response, what=what)
    return _successful_key(response.body, what=what)


class EcsMetadata:
    """The RAM role key of this ECS instance, from the metadata service: an IMDSv2 token first
    (PUT), then the role name (unless configured) and the key (GET). Without a token the v1
    requests are sent, unless IMDSv1 is disabled."""

    def __init__(
        self,
        transport: Transport,
        *,
        role_name: str | None,
        imdsv1_disabled: bool,
        what: str,
        base_url: str = ECS_METADATA_URL,
        timeout: float = ECS_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._role = role_name
        self._v1_off = imdsv1_disabled
        self._what = what
        self._base = base_url.rstrip("/")
        self._timeout = timeout

    async def fetch(self) -> Credentials:
        token = await self._token()
        role = self._role or (await self._get(ROLE_PATH, token, "role name")).decode().strip()
        if not role or "/" in role or not role.isprintable():
            raise CredentialsError(f"{self._what}: the instance has no RAM role attached")
        body = await self._get(ROLE_PATH + quote(role, safe=""), token, "key")
        return _successful_key(body, what=self._what)

    async def _token(self) -> str | None:
        headers = {"x-aliyun-ecs-metadata-token-ttl-seconds": TOKEN_TTL}
        request = HttpRequest("PUT", self._base + TOKEN_PATH, headers)
        try:
            response = await _send(self._transport, request, self._timeout, what=self._what)
            _status(response, what=f"{self._what} (IMDSv2 token)")
            token = response.body.decode("ascii", "replace").strip()
            if not token or not token.isprintable():
                raise CredentialsError(f"{self._what}: the IMDSv2 token is empty")
            return token
        except CredentialsError:
            if self._v1_off:  # ALIBABA_CLOUD_IMDSV1_DISABLED: no token, no key
                raise
            return None

    async def _get(self, path: str, token: str | None, thing: str) -> bytes:
        response = await self._one_get(path, token)
        if response.status != 200 and token is not None and not self._v1_off:
            response = await self._one_get(path, None)  # as the SDK: try v1 once more
        _status(response, what=f"{self._what} ({thing})")
        return response.body

    async def _one_get(self, path: str, token: str | None) -> HttpResponse:
        headers = {"x-aliyun-ecs-metadata-token": token} if token else {}
        request = HttpRequest("GET", self._base + path, headers)
        return await _send(self._transport, request, self._timeout, what=self._what)


async def run_external(
    command: str, *, what: str, timeout: float = EXTERNAL_TIMEOUT
) -> Credentials:
    """An External profile: run its command (no shell); its output is JSON with access_key_id,
    access_key_secret, and for mode StsToken sts_token and expiration."""
    try:
        argv = shlex.split(command)
    except ValueError:
        raise CredentialsError(f"{what}: process_command cannot be split into words") from None
    if not argv:
        raise CredentialsError(f"{what}: process_command is empty")
    try:
        with anyio.fail_after(timeout):
            done = await anyio.run_process(argv, check=False)
    except TimeoutError:
        raise TransientError(f"{what}: the command did not finish within {timeout:g} s") from None
    except OSError as error:
        reason = type(error).__name__
        raise CredentialsError(f"{what}: the command cannot be run ({reason})") from None
    if done.returncode != 0:
        raise CredentialsError(f"{what}: the command exited with status {done.returncode}")
    if len(done.stdout) > MAX_OUTPUT:
        raise CredentialsError(f"{what}: the command printed more than {MAX_OUTPUT} bytes")
    return external_key(_json(done.stdout, what=what), what=what)


def external_key(document: object, *, what: str) -> Credentials:
    """The key an External command printed."""
    if not isinstance(document, Mapping):
        raise CredentialsError(f"{what}: the command printed no JSON object")
    fields = {
        "AccessKeyId": document.get("access_key_id"),
        "AccessKeySecret": document.get("access_key_secret"),
        "SecurityToken": document.get("sts_token") or "-",
        "Expiration": document.get("expiration") or "2999-01-01T00:00:00Z",
    }
    if document.get("mode") == "StsToken" and not document.get("sts_token"):
        raise CredentialsError(f"{what}: the command printed mode StsToken without sts_token")
    key = key_from(fields, what=what)
    token = key.security_token if document.get("sts_token") else None
    expiration = key.expiration if document.get("expiration") else None
    return Credentials(key.access_key_id, key.access_key_secret, token, what, expiration)


async def fetch_cloud_sso(
    transport: Transport,
    *,
    sign_in_url: str,
    account_id: str,
    access_config: str,
    access_token: str,
    token_expires: float,
    what: str,
    timeout: float,
    now: Callable[[], float],
) -> Credentials:
    """A CloudSSO profile: the access token aliyun-cli got at sign-in buys a key for the
    account and access configuration. The token itself is not renewed here: when it has
    expired, sign in again with aliyun-cli."""
    if not math.isfinite(token_expires) or token_expires <= now():
        raise CredentialsError(
            f"{what}: the CloudSSO sign-in has expired; sign in again with aliyun-cli"
        )
    headers = {
        "accept": "application/json",
        "content-type": "application/json",
        "authorization": f"Bearer {access_token}",
    }
    body = json.dumps({"AccountId": account_id, "AccessConfigurationId": access_config})
    request = HttpRequest("POST", f"{sign_in_url}/cloud-credentials", headers, body.encode())
    response = await _send(transport, request, timeout, what=what)
    _status(response, what=what)
    document = _json(response.body, what=what)
    fields = document.get("CloudCredential") if isinstance(document, dict) else None
    return key_from(fields, what=what)


__all__ = [
    "ECS_METADATA_URL",
    "EcsMetadata",
    "external_key",
    "fetch_cloud_sso",
    "fetch_uri",
    "run_external",
]
