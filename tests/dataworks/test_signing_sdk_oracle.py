"""Our signer against the official SDK's own code, on the vectors and on generated inputs."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

pytest.importorskip("alibabacloud_tea_openapi")
pytest.importorskip("alibabacloud_dataworks_public20200518")

from alibabacloud_dataworks_public20200518 import models as dw_models
from alibabacloud_dataworks_public20200518.client import Client
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.core import DaraCore
from darabonba.exceptions import UnretryableException
from darabonba.request import DaraRequest

from runner.dataworks import signing
from runner.dataworks.credentials import Credentials
from tests.dataworks.test_signing import V1, V3, Vector
from tests.sdk_oracle import sdk_verify_v1, sdk_verify_v3

HOST = "dataworks.cn-shanghai.aliyuncs.com"
USER_AGENT = "oracle-agent/1"
SEEDS = range(12)
_POOL = "abcXYZ019 _-.~*+/&=%?#!'()[]{}:;,@$\"<>\\|^`üïé—中文字😀\u00a0\u200b\t"


def _wire_v3(vector: Vector) -> tuple[dict[str, str], dict[str, str], bytes]:
    out = vector["outputs"]
    query = dict(parse_qsl(out["query_string"], keep_blank_values=True))
    return query, dict(out["headers"]), out["body"].encode("ascii")


# ---------------------------------------------------------------------------------------------
# sdk_verify_v3 / sdk_verify_v1 on the golden vectors


@pytest.mark.parametrize("vector", V3, ids=[v["id"] for v in V3])
def test_sdk_verify_v3_accepts_vector(vector: Vector) -> None:
    """The SDK-based checker accepts each V3 vector's wire request as the SDK sent it."""
    query, headers, body = _wire_v3(vector)
    inputs = vector["inputs"]
    assert sdk_verify_v3(inputs["method"], "/", query, headers, body, inputs["access_key_secret"])


@pytest.mark.parametrize("vector", V3, ids=[v["id"] for v in V3])
def test_sdk_verify_v3_rejects_tampering(vector: Vector) -> None:
    """The SDK-based checker rejects a wrong secret, a changed body and a changed signed header."""
    query, headers, body = _wire_v3(vector)
    method, secret = vector["inputs"]["method"], vector["inputs"]["access_key_secret"]
    assert not sdk_verify_v3(method, "/", query, headers, body, secret + "x")
    assert not sdk_verify_v3(method, "/", query, headers, body + b"&x=1", secret)
    for name in headers:
        if name != "Authorization":
            changed = {**headers, name: headers[name] + "0"}
            assert not sdk_verify_v3(method, "/", query, changed, body, secret), name
    for name in query:
        changed_query = {**query, name: query[name] + "0"}
        assert not sdk_verify_v3(method, "/", changed_query, headers, body, secret), name


@pytest.mark.parametrize("vector", V1, ids=[v["id"] for v in V1])
def test_sdk_verify_v1_accepts_vector_and_rejects_tampering(vector: Vector) -> None:
    """The SDK-based V1 check accepts each V1 vector's params and rejects any changed param."""
    out, secret = vector["outputs"], vector["inputs"]["access_key_secret"]
    params = dict(parse_qsl(out["query_string"], keep_blank_values=True))
    params.update(parse_qsl(out["body"], keep_blank_values=True))
    method = vector["inputs"]["method"]
    assert sdk_verify_v1(method, params, secret)
    assert not sdk_verify_v1(method, params, secret + "x")
    for name in params:
        if name != "Signature":
            assert not sdk_verify_v1(method, {**params, name: params[name] + "0"}, secret)


# ---------------------------------------------------------------------------------------------
# Generated inputs


@dataclass(frozen=True, slots=True)
class Case:
    project_id: int
    name: str
    export_mode: str
    export_object_status: str
    incremental_since: int | None
    description: str | None
    credentials: Credentials
    timestamp: str
    nonce: str

    def body_params(self) -> dict[str, str]:
        params = {
            "ProjectId": str(self.project_id),
            "Name": self.name,
            "ExportMode": self.export_mode,
            "ExportObjectStatus": self.export_object_status,
        }
        if self.incremental_since is not None:
            params["IncrementalSince"] = str(self.incremental_since)
        if self.description is not None:
            params["Description"] = self.description
        return params


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(_POOL) for _ in range(rng.randint(low, high)))


def make_case(seed: int) -> Case:
    """Deterministic random inputs: unicode and reserved characters, with or without STS."""
    rng = random.Random(seed)
    token = None
    if seed % 2:
        token = "STS." + "".join(rng.choice("AZaz09+/=") for _ in range(rng.randint(8, 40)))
    credentials = Credentials(
        ("STS." if token else "LTAI") + "".join(rng.choice("abcdefXYZ0189") for _ in range(16)),
        "".join(rng.choice("abcdefXYZ0189+/") for _ in range(30)),
        token,
    )
    return Case(
        project_id=rng.randint(1, 10**9),
        name=_text(rng, 1, 30),
        export_mode=rng.choice(["FULL", "INCREMENTAL"]),
        export_object_status=rng.choice(["SAVED", "SUBMITTED", "DEPLOYED"]),
        incremental_since=rng.choice([None, rng.randint(0, 2 * 10**12)]),
        description=rng.choice([None, _text(rng, 0, 60)]),
        credentials=credentials,
        timestamp=f"20{rng.randint(20, 35)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T0"
        f"{rng.randint(0, 9)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}Z",
        nonce="".join(rng.choice("0123456789abcdef") for _ in range(32)),
    )


def _ours(case: Case, version: signing.SignatureVersion) -> signing.SignedRequest:
    return signing.build_request(
        signature_version=version,
        method="POST",
        host=HOST,
        action="CreateExportMigration",
        api_version="2020-05-18",
        body_params=case.body_params(),
        credentials=case.credentials,
        timestamp=case.timestamp,
        nonce=case.nonce,
        user_agent=USER_AGENT,
    )


class _Captured(Exception):
    """Raised in place of sending, to stop the SDK once it has built the request."""


def _sdk_request(
    case: Case, version: signing.SignatureVersion, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Run the real SDK client with clock, nonce, user-agent and network pinned; return what it
    would have sent."""
    sent: list[Any] = []

    def capture(request: Any, runtime: Any) -> None:
        sent.append(request)
        raise _Captured

    pinned: dict[str, Callable[..., Any]] = {
        "get_timestamp": lambda: case.timestamp,
        "get_nonce": lambda: case.nonce,
        "get_user_agent": lambda *args, **kwargs: USER_AGENT,
    }
    for name, fn in pinned.items():
        monkeypatch.setattr(Utils, name, staticmethod(fn))
    monkeypatch.setattr(DaraCore, "do_action", staticmethod(capture))
    config = Config(
        access_key_id=case.credentials.access_key_id,
        access_key_secret=case.credentials.access_key_secret,
        security_token=case.credentials.security_token,
        endpoint=HOST,
        signature_algorithm="v2" if version == "v1" else None,
    )
    model = dw_models.CreateExportMigrationRequest(
        project_id=case.project_id,
        name=case.name,
        export_mode=case.export_mode,
        export_object_status=case.export_object_status,
        incremental_since=case.incremental_since,
        description=case.description,
    )
    with pytest.raises(UnretryableException):  # the SDK wraps our stop signal
        Client(config).create_export_migration(model)
    assert len(sent) == 1
    return sent[0]


@pytest.mark.parametrize("version", ["v3", "v1"])
@pytest.mark.parametrize("seed", SEEDS)
def test_sdk_client_builds_the_same_request(
    seed: int, version: signing.SignatureVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real SDK client, with time and nonce pinned, puts on the wire what build_request does."""
    case = make_case(seed)
    ours = _ours(case, version)
    theirs = _sdk_request(case, version, monkeypatch)
    assert theirs.method == ours.method
    assert theirs.pathname == urlsplit(ours.path_and_query).path
    our_query = parse_qsl(urlsplit(ours.path_and_query).query, keep_blank_values=True)
    assert list(theirs.query.items()) == our_query
    assert list(theirs.headers.items()) == list(ours.headers.items())
    assert theirs.body.encode("utf-8") == ours.body


@pytest.mark.parametrize("seed", SEEDS)
def test_sdk_signing_functions_agree(seed: int) -> None:
    """Utils.get_authorization, get_rpcsignature and to_form reproduce our V3/V1 output."""
    case = make_case(seed)
    assert Utils.to_form(case.body_params()).encode("utf-8") == _ours(case, "v3").body
    v3 = _ours(case, "v3")
    request = DaraRequest()
    request.method = v3.method
    request.pathname = "/"
    request.headers = {k: v for k, v in v3.headers.items() if k != "Authorization"}
    payload = signing.sha256_hex(v3.body)
    authorization = Utils.get_authorization(
        request,
        "ACS3-HMAC-SHA256",
        payload,
        case.credentials.access_key_id,
        case.credentials.access_key_secret,
    )
    assert authorization == v3.headers["Authorization"]
    assert sdk_verify_v3("POST", "/", {}, v3.headers, v3.body, case.credentials.access_key_secret)
    v1 = _ours(case, "v1")
    params = dict(parse_qsl(urlsplit(v1.path_and_query).query, keep_blank_values=True))
    params.update(parse_qsl(v1.body.decode("ascii"), keep_blank_values=True))
    assert sdk_verify_v1("POST", params, case.credentials.access_key_secret)
