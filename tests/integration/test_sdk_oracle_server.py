"""Our client against a simulator whose signature check is the official SDK's own signing code.

The simulator is served in-process on 127.0.0.1 with its checker replaced by one built on
`tests.sdk_oracle` (alibabacloud_tea_openapi's Utils), so what is accepted here is what the SDK
computes, not what our signer thinks. Then every signed part of a real request is changed, one at a
time, and the changed copy must be refused and not applied.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

pytest.importorskip("alibabacloud_tea_openapi")

from runner.commands.common import ExitCode
from runner.commands.run import RunRequest, run
from runner.dataworks import signing
from runner.dataworks.client import DataWorksClient, SignatureVersion
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.transport import FunctionTransport, HttpRequest, HttpResponse
from runner.manifest import load_manifests
from runner.models import ExportSpec
from runner.sim.app import STATS, SimConfig, build_app
from runner.sim.auth import AuthFailure, IncomingRequest
from runner.sim.server import serve
from tests.integration.conftest import write_manifest
from tests.sdk_oracle import sdk_verify_v1, sdk_verify_v3

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

AK = "oracle-access-key"
SECRET = "oracle-secret-T4nq8"
TOKEN = "oracle-sts-token/with+odd=chars"
CREDENTIAL = re.compile(r"Credential=([^,\s]+)")
REFUSED = "SignatureDoesNotMatch"
ROUTING = "InvalidApi.NotFound"  # the gateway refuses an unknown version before any signature check

VARIANTS = [
    pytest.param("v3", None, id="v3"),
    pytest.param("v3", TOKEN, id="v3-sts"),
    pytest.param("v1", None, id="v1"),
    pytest.param("v1", TOKEN, id="v1-sts"),
]


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))


@dataclass
class SdkChecker:
    """The simulator's checker, decided by the official SDK's signing code; counts its verdicts."""

    secrets: dict[str, str]
    accepted: int = 0
    refused: int = 0

    def verify(self, request: IncomingRequest) -> bool:
        authorization = request.headers.get("authorization", "")
        if authorization:
            found = CREDENTIAL.search(authorization)
            secret = self.secrets.get(found.group(1)) if found else None
            return secret is not None and sdk_verify_v3(
                request.method, request.path, request.query, request.headers, request.body, secret
            )
        params = {**request.query, **_form(request.body)}
        secret = self.secrets.get(params.get("AccessKeyId", ""))
        return secret is not None and sdk_verify_v1(request.method, params, secret)

    def __call__(self, request: IncomingRequest) -> AuthFailure | None:
        if self.verify(request):
            self.accepted += 1
            return None
        self.refused += 1
        return AuthFailure(400, REFUSED, "refused by the official SDK's signing code")


@pytest.fixture
def checker() -> SdkChecker:
    return SdkChecker({AK: SECRET})


@pytest.fixture
def config(checker: SdkChecker) -> SimConfig:
    return SimConfig(checker=checker)


@pytest.fixture
def app(config: SimConfig) -> web.Application:
    return build_app(config)


def _manifest(tmp_path: Path) -> Path:
    """50 tasks over 3 regions; descriptions with spaces, reserved and non-ASCII characters."""
    path = write_manifest(tmp_path / "oracle.yaml", workspaces=10, per_workspace=5).path
    text = path.read_text().replace(
        "description: integration test", 'description: "quarterly backup: a+b=c & 50% — 季度 ~*"'
    )
    path.write_text(text)
    return path


@pytest.mark.parametrize(("version", "token"), VARIANTS)
async def test_every_request_of_a_run_passes_the_sdk_check(
    tmp_path: Path,
    config: SimConfig,
    app: web.Application,
    checker: SdkChecker,
    version: SignatureVersion,
    token: str | None,
) -> None:
    """A whole run (50 creates) is accepted 100% by the SDK's signature check and all created."""
    manifest = _manifest(tmp_path)
    async with serve(config, app=app) as url:
        request = RunRequest(
            manifests=(str(manifest),),
            journal=tmp_path / "j.db",
            endpoint=url,
            rate=500,
            timeout=5,
            signature_version=version,
            progress=False,
        )
        result = await run(request, credentials=Credentials(AK, SECRET, token))
    stats = app[STATS].snapshot()
    assert result.exit_code is ExitCode.OK
    assert result.states == {"created": 50}
    assert checker.refused == 0
    assert checker.accepted == sum(stats["requests"].values()) >= 50
    assert stats["creates_applied"] == 50


# --- tampering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """One request as the server will receive it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @classmethod
    def of(cls, request: HttpRequest) -> Wire:
        parts = urlsplit(request.url)
        return cls(
            request.method,
            parts.path or "/",
            dict(parse_qsl(parts.query, keep_blank_values=True)),
            {name.lower(): value for name, value in request.headers.items()},
            request.body,
        )

    def incoming(self) -> IncomingRequest:
        return IncomingRequest(self.method, self.path, self.query, self.headers, self.body)

    def with_body(self, params: dict[str, str]) -> Wire:
        body = signing.form_encode(params).encode("ascii")
        headers = dict(self.headers)
        if "x-acs-content-sha256" in headers:  # keep the payload hash honest: the signature must
            headers["x-acs-content-sha256"] = hashlib.sha256(body).hexdigest()  # catch it
        return replace(self, body=body, headers=headers)


def _changed(value: str) -> str:
    return value[:-1] + ("1" if value[-1:] != "1" else "2") if value else "x"


_HEADER_CHANGES = {
    "x-acs-action": "CreateImportMigration",  # another write the simulator would run
    "content-type": "application/x-www-form-urlencoded; charset=utf-8",
}


def tampered(wire: Wire) -> Iterator[tuple[str, Wire, str]]:
    """(what changed, the changed request, the code to expect), for every signed part."""
    yield "method", replace(wire, method="GET"), REFUSED
    for name, value in _form(wire.body).items():
        yield f"body {name}", wire.with_body({**_form(wire.body), name: _changed(value)}), REFUSED
    for name, value in wire.query.items():
        if name != "Signature":
            yield (
                f"query {name}",
                replace(wire, query={**wire.query, name: _changed(value)}),
                REFUSED,
            )
    authorization = wire.headers.get("authorization")
    if authorization is None:
        return  # V1 signs the parameters only: the path is fixed and no header is signed
    yield "path", replace(wire, path="/x"), "404"
    signed = authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    assert {"host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce"} <= set(signed)
    for name in signed:
        value = wire.headers[name]
        if name == "host":
            new = value.replace("127.0.0.1", "localhost")
        elif name == "x-acs-date":  # one second later: still a valid, fresh timestamp
            new = signing.timestamp_of(signing.parse_timestamp(value) + timedelta(seconds=1))
        else:
            new = _HEADER_CHANGES.get(name, _changed(value))
        code = ROUTING if name == "x-acs-version" else REFUSED
        yield f"header {name}", replace(wire, headers={**wire.headers, name: new}), code
    yield (
        "signature",
        replace(wire, headers={**wire.headers, "authorization": _changed(authorization)}),
        REFUSED,
    )


async def _send(session: aiohttp.ClientSession, base: str, wire: Wire) -> tuple[int, Any]:
    query = f"?{signing.wire_query(wire.query)}" if wire.query else ""
    async with session.request(
        wire.method,
        URL(f"{base}{wire.path}{query}", encoded=True),
        headers=wire.headers,
        data=wire.body or None,
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=5),
    ) as response:
        text = await response.text()
        body = await response.json(content_type=None) if text.startswith("{") else text
        return response.status, body


async def _signed_create(
    url: str, spec: ExportSpec, version: SignatureVersion, token: str | None
) -> HttpRequest:
    """The request our client sends for a create, recorded and not sent."""

    async def answer(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, {}, b'{"RequestId":"R","Data":1,"Success":true}')

    transport = FunctionTransport(answer)
    client = DataWorksClient(
        transport, Credentials(AK, SECRET, token), Endpoints(url), signature_version=version
    )
    await client.create_export_migration(spec)
    (request,) = transport.requests
    return request


@pytest.mark.parametrize(("version", "token"), VARIANTS)
async def test_every_signed_part_changed_is_refused_and_not_applied(
    tmp_path: Path,
    config: SimConfig,
    app: web.Application,
    checker: SdkChecker,
    version: SignatureVersion,
    token: str | None,
) -> None:
    """Changing any body param, query param, signed header, the method or the path of a real
    request makes the SDK's check refuse it, and nothing is applied; the unchanged one passes."""
    spec = next(
        s for s in load_manifests([_manifest(tmp_path)]).specs if s.incremental_since is not None
    )
    stats = app[STATS]
    async with (
        serve(config, app=app) as url,
        aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Content-Type")) as session,
    ):
        wire = Wire.of(await _signed_create(url, spec, version, token))
        assert checker.verify(wire.incoming()), "the untouched request must pass"
        variants = list(tampered(wire))
        assert len(variants) >= 5
        for what, changed, code in variants:
            assert not checker.verify(changed.incoming()), what
            refused = checker.refused
            status, body = await _send(session, url, changed)
            assert 400 <= status < 500, (what, status, body)
            if code == "404":
                assert status == 404, what
            else:
                assert isinstance(body, dict), (what, body)
                assert body["Code"] == code, (what, body)
            if code == REFUSED:
                assert checker.refused == refused + 1, what
            assert stats.creates_applied == 0, what
        # the control: the same request, untouched, is accepted and applied exactly once
        status, body = await _send(session, url, wire)
        assert status == 200, body
        assert stats.creates_applied == 1
