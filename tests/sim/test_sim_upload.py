"""The simulator's upload leg over HTTP: AuthorizeFileUpload's grant and OSS PostObject."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import tempfile
from datetime import UTC, datetime
from typing import IO, Any
from xml.etree import ElementTree

import aiohttp
import pytest

from runner.dataworks import signing
from runner.dataworks.actions import AUTHORIZE_UPLOAD, OPENPLATFORM_VERSION
from runner.dataworks.credentials import Credentials
from runner.sim import oss
from runner.sim.faults import Faults
from runner.sim.objects import ObjectStore
from runner.sim.openplatform import PRODUCT
from tests.sim.uploads import KEY, REGION, T0, import_sim, oss_error

GRANT_KEYS = {
    "RequestId",
    "Bucket",
    "Endpoint",
    "ObjectKey",
    "AccessKeyId",
    "EncodedPolicy",
    "Signature",
    "UseAccelerate",
}


def _policy(encoded: str) -> dict[str, Any]:
    policy = json.loads(base64.b64decode(encoded))
    assert isinstance(policy, dict)
    return policy


# -- AuthorizeFileUpload ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_grant_has_the_sdk_shape_and_a_signed_policy() -> None:
    """The grant answers the SDK's fields at the top level: the simulator's own address as
    Endpoint, a bucket for the region, and a policy on bucket, key and size, signed HMAC-SHA1."""
    async with import_sim(seed=7, upload_max_bytes=5000) as sim:
        answer = await sim.authorize()
        endpoint = sim.endpoint
        assert sim.stats.grants_issued == 1
        assert sim.stats.requests[AUTHORIZE_UPLOAD.name] == 1
    body = answer.body
    assert answer.status == 200
    assert set(body) == GRANT_KEYS
    assert body["RequestId"] == answer.headers["x-acs-request-id"]
    assert body["Endpoint"] == endpoint
    assert body["Bucket"] == f"runner-sim-{REGION}"
    assert body["UseAccelerate"] is False
    assert body["ObjectKey"].startswith("import/")
    assert body["ObjectKey"].endswith(".zip")
    store = ObjectStore.for_seed(7)
    assert body["AccessKeyId"] == store.access_key_id
    expected = hmac.new(store.secret, body["EncodedPolicy"].encode(), hashlib.sha1).digest()
    assert body["Signature"] == base64.b64encode(expected).decode()
    assert _policy(body["EncodedPolicy"]) == {
        "expiration": datetime.fromtimestamp(T0 + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [
            {"bucket": body["Bucket"]},
            ["eq", "$key", body["ObjectKey"]],
            ["content-length-range", 1, 5000],
        ],
    }


@pytest.mark.anyio
async def test_every_grant_has_its_own_key() -> None:
    """Two grants name two different object keys, and another seed signs with another secret."""
    async with import_sim() as sim:
        first, second = (await sim.authorize()).body, (await sim.authorize()).body
    async with import_sim(seed=1) as other:
        third = (await other.authorize()).body
    assert first["ObjectKey"] != second["ObjectKey"]
    assert first["AccessKeyId"] != third["AccessKeyId"]
    assert first["Signature"] != third["Signature"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "code", "name"),
    [
        ({"RegionId": REGION}, "MissingParameter", "Product"),
        ({"Product": "ecs", "RegionId": REGION}, "InvalidParameter", "Product"),
        ({"Product": PRODUCT}, "MissingParameter", "RegionId"),
        ({"Product": PRODUCT, "RegionId": "cn.shanghai"}, "InvalidParameter", "RegionId"),
    ],
)
async def test_grant_needs_the_product_and_a_region(
    params: dict[str, str], code: str, name: str
) -> None:
    """Product must be dataworks-public and RegionId a region id, else a 400 naming it."""
    async with import_sim() as sim:
        answer = await sim.authorize(params)
        assert sim.stats.grants_issued == 0
    assert answer.status == 400
    assert (answer.body["Code"], name in answer.body["Message"]) == (code, True)


@pytest.mark.anyio
async def test_other_openplatform_actions_are_not_found() -> None:
    """Only AuthorizeFileUpload answers under OpenPlatform's version."""
    async with import_sim() as sim:
        query = f"/?Action=CreateExportMigration&Version={OPENPLATFORM_VERSION}"
        async with sim.client.get(query) as resp:
            body = await resp.json()
    assert (resp.status, body["Code"]) == (404, "InvalidApi.NotFound")


@pytest.mark.anyio
@pytest.mark.parametrize("version", ["v3", "v1"])
async def test_grant_requests_are_signature_checked(version: signing.SignatureVersion) -> None:
    """With the real check, a GET signed V3 or V1 by a known key is granted; unsigned is not."""
    async with import_sim(checker=None) as sim:
        request = signing.build_request(
            signature_version=version,
            method="GET",
            host=sim.endpoint,
            action=AUTHORIZE_UPLOAD.name,
            api_version=OPENPLATFORM_VERSION,
            body_params={},
            query_params={"Product": PRODUCT, "RegionId": REGION},
            credentials=Credentials(KEY.access_key_id, KEY.access_key_secret),
            timestamp=signing.timestamp_of(datetime.fromtimestamp(sim.clock.now, UTC)),
            nonce="f" * 32,
        )
        async with sim.client.get(request.path_and_query, headers=request.headers) as resp:
            signed = await resp.json()
        unsigned = await sim.authorize()
        assert sim.stats.grants_issued == 1
        assert sim.stats.auth_failures == 1
    assert resp.status == 200, signed
    assert signed["Bucket"] == f"runner-sim-{REGION}"
    assert unsigned.status >= 400


@pytest.mark.anyio
async def test_grants_are_throttled_per_key() -> None:
    """qps_limit applies to AuthorizeFileUpload per key, apart from DataWorks's own bucket."""
    async with import_sim(faults=Faults(qps_limit=1)) as sim:
        first = await sim.authorize()
        second = await sim.authorize()
        export = await sim.call("ListMigrations", {"ProjectId": "2", "MigrationType": "EXPORT"})
    assert first.status == 200
    assert (second.status, second.body["Code"]) == (429, "Throttling.User")
    assert export.status == 200


# -- OSS PostObject --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_post_object_stores_the_package_and_answers_201() -> None:
    """A post under a grant answers 201 with a PostResponse; the sim keeps size, sha256 and
    the package's manifest, never the bytes."""
    async with import_sim() as sim:
        export_id = await sim.finished_export()
        package = await sim.download(export_id)
        grant = await sim.grant()
        answer = await sim.post(grant, package)
        stored = sim.state.objects.objects[(grant.bucket, grant.object_key)]
        assert (sim.stats.uploads_stored, sim.stats.upload_bytes) == (1, len(package))
        assert sim.stats.requests["PostObject"] == 1
        endpoint = sim.endpoint
    assert answer.status == 201
    md5 = hashlib.md5(package, usedforsecurity=False).hexdigest().upper()
    root = ElementTree.fromstring(answer.body)
    assert root.tag == "PostResponse"
    assert root.findtext("Bucket") == grant.bucket
    assert root.findtext("Key") == grant.object_key
    assert root.findtext("ETag") == f'"{md5}"' == answer.headers["ETag"]
    assert root.findtext("Location") == grant.package_file
    assert (stored.size, stored.sha256) == (len(package), hashlib.sha256(package).hexdigest())
    assert stored.manifest is not None
    assert (stored.manifest.migration_id, stored.manifest.name) == (export_id, "e1")
    assert stored.endpoint == endpoint


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "expected"), [("", 204), ("200", 200), ("204", 204)])
async def test_success_action_status_picks_the_answer(status: str, expected: int) -> None:
    """Without success_action_status=201 the post answers 204 (or 200 when asked), no body."""
    async with import_sim() as sim:
        grant = await sim.grant()
        answer = await sim.post(grant, b"data", fields={"success_action_status": status})
        assert sim.stats.uploads_stored == 1
    assert (answer.status, answer.body) == (expected, "")


async def _refused(sim_kwargs: dict[str, Any], case: str) -> tuple[int, str, str, int]:
    async with import_sim(**sim_kwargs) as sim:
        grant = await sim.grant()
        content = b"x" * 100
        fields: dict[str, str] = {}
        if case == "signature":
            fields["Signature"] = base64.b64encode(b"0" * 20).decode()
        elif case == "key_id":
            fields["OSSAccessKeyId"] = "LTAIsomeoneelse"
        elif case == "expired":
            sim.clock.now += 3601
        elif case == "key":
            fields["key"] = "import/another.zip"
        elif case == "too_small":
            content = b""
        elif case == "too_large":
            content = b"x" * 1025
        elif case == "forged_policy":
            policy = _policy(grant.encoded_policy)
            policy["conditions"][2][2] = 10**12
            fields["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
        elif case == "missing_policy":
            fields["policy"] = ""
        answer = await sim.post(grant, content, fields=fields)
        assert not sim.state.objects.objects
        assert sim.stats.uploads_stored == 0
        code, message = oss_error(answer.body)
        return answer.status, code, message, sim.stats.upload_failures[code]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "status", "code", "words"),
    [
        ("signature", 403, "SignatureDoesNotMatch", "signature"),
        ("forged_policy", 403, "SignatureDoesNotMatch", "signature"),
        ("key_id", 403, "InvalidAccessKeyId", "Access Key Id"),
        ("expired", 403, "AccessDenied", "Invalid according to Policy: Policy expired."),
        ("key", 403, "AccessDenied", '["eq", "$key"'),
        ("too_small", 400, "EntityTooSmall", "smaller than the minimum"),
        ("too_large", 400, "EntityTooLarge", "exceeds the maximum"),
        ("missing_policy", 400, "InvalidArgument", "policy"),
    ],
)
async def test_post_refusals(case: str, status: int, code: str, words: str) -> None:
    """A bad signature, key id, expired policy, other key or a size out of the policy's range
    is refused with OSS's XML error, and nothing is stored."""
    got = await _refused({"upload_max_bytes": 1024}, case)
    assert got[:2] == (status, code)
    assert words in got[2]
    assert got[3] == 1


@pytest.mark.anyio
async def test_policy_ttl_is_the_fault_setting() -> None:
    """upload_policy_ttl sets how long a grant's policy is accepted."""
    async with import_sim(faults=Faults(upload_policy_ttl=10.0)) as sim:
        grant = await sim.grant()
        sim.clock.now += 10
        in_time = await sim.post(grant, b"a")
        sim.clock.now += 1
        late = await sim.post(grant, b"a")
    assert in_time.status == 201
    assert late.status == 403
    assert oss_error(late.body)[1] == "Invalid according to Policy: Policy expired."


@pytest.mark.anyio
async def test_a_grant_for_one_bucket_does_not_open_another() -> None:
    """Posting a grant's form to another granted bucket is refused by the bucket condition."""
    async with import_sim() as sim:
        grant = await sim.grant()
        await sim.authorize({"Product": PRODUCT, "RegionId": "cn-beijing"})
        answer = await sim.post(grant, b"a", host=f"runner-sim-cn-beijing.{sim.endpoint}")
    assert answer.status == 403
    assert oss_error(answer.body)[0] == "AccessDenied"


@pytest.mark.anyio
async def test_fields_after_the_file_are_ignored() -> None:
    """As OSS does, a field sent after the file does not count: here the missing Signature."""
    async with import_sim() as sim:
        grant = await sim.grant()
        answer = await sim.post(
            grant, b"a", fields={"Signature": ""}, after_file={"Signature": grant.signature}
        )
    assert answer.status == 400
    assert oss_error(answer.body)[0] == "InvalidArgument"


@pytest.mark.anyio
async def test_a_host_that_names_no_granted_bucket_is_an_api_request() -> None:
    """Before any grant, `runner-sim-x.<endpoint>` is not OSS: the API answers (JSON 404)."""
    async with import_sim() as sim:
        headers = {"Host": f"runner-sim-cn-shanghai.{sim.endpoint}"}
        async with sim.client.post("/", data=b"", headers=headers) as resp:
            body = await resp.json()
    assert (resp.status, body["Code"]) == (404, "InvalidApi.NotFound")


@pytest.mark.anyio
async def test_oss_answers_only_a_form_post() -> None:
    """On a granted bucket's host, a GET is 405 and a POST that is not a form 400, in XML."""
    async with import_sim() as sim:
        grant = await sim.grant()
        async with sim.client.get("/", headers={"Host": grant.host}) as resp:
            got = (resp.status, oss_error(await resp.text())[0])
        headers = {"Host": grant.host, "content-type": "application/octet-stream"}
        async with sim.client.post("/", data=b"abc", headers=headers) as resp:
            raw = (resp.status, oss_error(await resp.text())[0])
    assert got == (405, "MethodNotAllowed")
    assert raw == (400, "MalformedPOSTRequest")


@pytest.mark.anyio
async def test_a_form_without_a_file_is_malformed() -> None:
    """A form with every field but no file is refused 400 MalformedPOSTRequest."""
    async with import_sim() as sim:
        grant = await sim.grant()
        form = aiohttp.FormData()
        for name, value in grant.form():
            form.add_field(name, value)
        form.add_field("other", b"x", filename="x.bin")  # a file part, but not `file`
        async with sim.client.post("/", data=form, headers={"Host": grant.host}) as resp:
            status, code = resp.status, oss_error(await resp.text())[0]
    assert (status, code) == (400, "MalformedPOSTRequest")


class _SpyFile:
    """A spool file that remembers the size of every write."""

    def __init__(self, inner: IO[bytes], writes: list[int]) -> None:
        self._inner = inner
        self._writes = writes

    def write(self, data: bytes) -> int:
        self._writes.append(len(data))
        return self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _SpyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


@pytest.mark.anyio
async def test_a_large_upload_is_streamed_to_the_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3 MiB file reaches the spool in chunks of at most oss.CHUNK, and is counted whole."""
    writes: list[int] = []
    real = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> _SpyFile:
        return _SpyFile(real(*args, **kwargs), writes)

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    size = 3 * 1024 * 1024
    async with import_sim(upload_max_bytes=size) as sim:
        grant = await sim.grant()
        answer = await sim.post(grant, io.BytesIO(b"z" * size))
        stored = sim.state.objects.objects[(grant.bucket, grant.object_key)]
    assert answer.status == 201
    assert sum(writes) == stored.size == size
    assert len(writes) > 3
    assert max(writes) <= oss.CHUNK
    assert stored.manifest is None  # not a zip: stored, but no package


@pytest.mark.anyio
async def test_an_oversized_upload_is_counted_not_spooled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the policy's maximum the file is read to its end but no longer written."""
    writes: list[int] = []
    real = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> _SpyFile:
        return _SpyFile(real(*args, **kwargs), writes)

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    async with import_sim(upload_max_bytes=1000) as sim:
        grant = await sim.grant()
        answer = await sim.post(grant, io.BytesIO(b"z" * (2 * 1024 * 1024)))
    assert answer.status == 400
    assert sum(writes) <= 1000


# -- connections lost ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_upload_reset_drops_the_connection_and_stores_nothing() -> None:
    """upload_reset_rate=1: part of the file arrives, the connection is dropped, nothing kept."""
    async with import_sim(faults=Faults(upload_reset_rate=1.0)) as sim:
        grant = await sim.grant()
        with pytest.raises(aiohttp.ClientError):
            await sim.post(grant, io.BytesIO(b"q" * (1024 * 1024)))
        assert not sim.state.objects.objects
        assert (sim.stats.uploads_stored, sim.stats.faults["upload_reset"]) == (0, 1)


@pytest.mark.anyio
async def test_an_interrupted_body_stores_nothing() -> None:
    """A client that goes away mid-file leaves no object and no spool behind."""
    async with import_sim() as sim:
        grant = await sim.grant()
        boundary = "b0undary"
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in grant.form()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        )
        body = head.encode() + b"z" * (300 * 1024)  # the reader looks ahead: give it some
        request = (
            f"POST / HTTP/1.1\r\nHost: {grant.host}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body) + 100_000}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.client.port)
        writer.write(request + body)
        await writer.drain()
        for _ in range(1000):  # until the handler has the file part, without real sleeps
            if sim.stats.requests["PostObject"]:
                break
            await asyncio.sleep(0)
        writer.close()
        await writer.wait_closed()
        for _ in range(1000):  # until the handler has seen the end of the connection
            if sim.stats.upload_failures["Interrupted"]:
                break
            await asyncio.sleep(0)
        assert sim.stats.upload_failures["Interrupted"] == 1
        assert not sim.state.objects.objects
        assert sim.stats.uploads_stored == 0
        del reader
