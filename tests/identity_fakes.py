"""A fake cloud for the identity tests, answered in this process through `FunctionTransport`:
STS (the simulator's own, behind its real signature check), ECS instance metadata, a
credentials URI and CloudSSO. Nothing opens a socket; time is a wall clock the test moves."""

from __future__ import annotations

import collections
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from runner.dataworks.transport import ConnectError, HttpRequest, HttpResponse
from runner.sim import auth
from runner.sim.auth import IncomingRequest, Key, NonceCache
from runner.sim.faults import Faults
from runner.sim.service import SimStats
from runner.sim.sts import CREDENTIALS_PATH, Issuer, StsService

T0 = 1_800_000_000.0
METADATA_HOST = "100.100.100.200"
SSO_HOST = "signin.sso.example.com"
BASE_KEY = Key("base-id", "base-SECRET-Zk3")


class Wall:
    """Epoch seconds that move only when the test says so; sleeping moves them."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def json_answer(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


@dataclass
class Metadata:
    """What the fake ECS metadata service does."""

    role: str | None = "ecs-role"  # None: no role attached
    v2: bool = True  # answers the IMDSv2 token PUT
    token: str = "imds-token-1"
    reachable: bool = True


@dataclass
class FakeCloud:
    """The handler of a FunctionTransport: routes by host and path, records every request."""

    wall: Wall
    ttl: float = 3600.0
    base_keys: tuple[Key, ...] = (BASE_KEY,)
    metadata: Metadata = field(default_factory=Metadata)
    sso_token: str = "sso-ACCESS-token"
    requests: list[HttpRequest] = field(default_factory=list)
    refuse_sts: tuple[int, str, str] | None = None  # (status, code, message) for every STS call

    def __post_init__(self) -> None:
        self.stats = SimStats()
        self.issuer = Issuer(Faults(sts_ttl=self.ttl), random.Random(7), self.stats)
        keys = collections.ChainMap(self.issuer.keys, {k.access_key_id: k for k in self.base_keys})
        nonces = NonceCache()

        def verify(request: IncomingRequest) -> auth.AuthFailure | None:
            now = datetime.fromtimestamp(self.wall(), UTC)
            return auth.verify(request, keys, now, nonces=nonces)

        checker = self.issuer.guard(verify, self.wall)
        self.sts = StsService(self.issuer, self.stats, checker, self.wall)

    def of(self, host: str) -> list[HttpRequest]:
        return [r for r in self.requests if urlsplit(r.url).netloc == host]

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        parts = urlsplit(request.url)
        if parts.hostname == METADATA_HOST:
            return self._metadata(request, parts.path)
        if parts.path == CREDENTIALS_PATH:
            return json_answer(200, self.sts.credentials_uri())
        if parts.hostname == SSO_HOST:
            return self._sso(request)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in request.headers.items()}
        action = headers.get("x-acs-action") or query.get("Action", "")
        if self.refuse_sts is not None:
            status, code, message = self.refuse_sts
            return json_answer(status, {"RequestId": "R", "Code": code, "Message": message})
        incoming = IncomingRequest(request.method, parts.path or "/", query, headers, request.body)
        answer = self.sts.handle(incoming, action, "RID-1", parts.netloc)
        return json_answer(answer.status, answer.body)

    def _metadata(self, request: HttpRequest, path: str) -> HttpResponse:
        meta = self.metadata
        if not meta.reachable:
            raise ConnectError(f"ClientConnectorError: cannot connect to {METADATA_HOST}")
        if request.method == "PUT" and path == "/latest/api/token":
            if not meta.v2:
                return HttpResponse(403, {}, b"")
            return HttpResponse(200, {}, meta.token.encode())
        sent = request.headers.get("x-aliyun-ecs-metadata-token")
        if meta.v2 and sent not in (None, meta.token):
            return HttpResponse(401, {}, b"")
        prefix = "/latest/meta-data/ram/security-credentials/"
        if path == prefix:
            return HttpResponse(200, {}, (meta.role or "").encode())
        if meta.role is not None and path == prefix + meta.role:
            return json_answer(200, self.sts.credentials_uri())
        return HttpResponse(404, {}, b"")

    def _sso(self, request: HttpRequest) -> HttpResponse:
        if request.headers.get("authorization") != f"Bearer {self.sso_token}":
            return json_answer(401, {"Code": "InvalidToken"})
        document = json.loads(request.body)
        assert set(document) == {"AccountId", "AccessConfigurationId"}
        body = self.sts.credentials_uri()
        fields = ("AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration")
        return json_answer(200, {"CloudCredential": {k: body[k] for k in fields}})
