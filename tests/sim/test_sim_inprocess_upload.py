"""The import leg in process: the transport answers AuthorizeFileUpload, and InProcessUploader
posts through the simulator's own OSS logic, no socket."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from runner.dataworks.actions import AUTHORIZE_UPLOAD, DATAWORKS_VERSION, OPENPLATFORM_VERSION
from runner.dataworks.transport import HttpRequest
from runner.dataworks.upload import UploadError, UploadGrant
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport, InProcessUploader
from runner.sim.objects import ObjectStore
from runner.sim.packages import export_package
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState
from tests.sim.uploads import T0, finished_export, import_params

HOST = "openplatform.aliyuncs.com"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _service(faults: Faults | None = None, max_size: int = 10_000_000) -> Service:
    state = DataWorksState(objects=ObjectStore(max_size=max_size, policy_ttl=100.0))
    return Service(state, SimStats(), faults or Faults(), random.Random(0))


async def _send(transport: InProcessTransport, action: str, version: str, **params: str) -> Any:
    query = urlencode({"Action": action, "Version": version, **params})
    answer = await transport.send(HttpRequest("GET", f"https://{HOST}/?{query}", {}), 5.0)
    return answer.status, json.loads(answer.body)


async def _grant(transport: InProcessTransport) -> UploadGrant:
    status, body = await _send(
        transport,
        AUTHORIZE_UPLOAD.name,
        OPENPLATFORM_VERSION,
        Product="dataworks-public",
        RegionId="cn-hangzhou",
    )
    assert status == 200, body
    return UploadGrant(
        body["Bucket"],
        body["Endpoint"],
        body["ObjectKey"],
        body["AccessKeyId"],
        body["EncodedPolicy"],
        body["Signature"],
        body["UseAccelerate"],
        body["RequestId"],
    )


@pytest.mark.anyio
async def test_grant_upload_and_import_without_a_socket(tmp_path: Path) -> None:
    """AuthorizeFileUpload through the transport (Endpoint: the host it was sent to), the file
    posted in chunks by InProcessUploader, then CreateImportMigration accepts its PackageFile."""
    clock = Clock()
    service = _service()
    transport = InProcessTransport(service, now=clock)
    export_id = finished_export(service.state, "e1", T0)
    package = export_package(service.state.migrations[export_id])
    path = tmp_path / "e1.zip"
    path.write_bytes(package)
    grant = await _grant(transport)
    uploader = InProcessUploader(service, now=clock, chunk_size=100)
    sent = await uploader.upload(grant, path, timeout=5.0)
    params = import_params(grant.package_file)
    body = urlencode(params).encode()
    headers = {
        "x-acs-action": "CreateImportMigration",
        "x-acs-version": DATAWORKS_VERSION,
        "content-type": "application/x-www-form-urlencoded",
    }
    answer = await transport.send(HttpRequest("POST", f"https://{HOST}/", headers, body), 5.0)
    created = json.loads(answer.body)
    assert grant.endpoint == HOST
    assert sent == len(package)
    assert uploader.posts == [grant.object_key]
    assert answer.status == 200, created
    record = service.state.migrations[created["Data"]]
    assert record.source_migration_id == export_id
    stats = service.stats.snapshot()
    assert (stats["grants_issued"], stats["uploads_stored"], stats["imports_applied"]) == (1, 1, 1)
    assert stats["requests"]["AuthorizeFileUpload"] == 1


@pytest.mark.anyio
async def test_the_transport_still_refuses_unknown_actions() -> None:
    """Another OpenPlatform action, or AuthorizeFileUpload under DataWorks's version, is 404."""
    transport = InProcessTransport(_service(), now=Clock())
    other = await _send(transport, "DescribeRegions", OPENPLATFORM_VERSION)
    wrong = await _send(transport, AUTHORIZE_UPLOAD.name, DATAWORKS_VERSION)
    assert other[0] == wrong[0] == 404
    assert other[1]["Code"] == "InvalidApi.NotFound"


@pytest.mark.anyio
async def test_uploader_refusals_are_upload_errors(tmp_path: Path) -> None:
    """An expired policy is a refused (403) UploadError, a too large file a 400; neither is
    retryable under the same grant, and nothing is stored."""
    clock = Clock()
    service = _service(max_size=10)
    transport = InProcessTransport(service, now=clock)
    uploader = InProcessUploader(service, now=clock)
    path = tmp_path / "p.zip"
    path.write_bytes(b"x" * 11)
    with pytest.raises(UploadError) as large:
        await uploader.upload(await _grant(transport), path, timeout=5.0)
    path.write_bytes(b"x")
    grant = await _grant(transport)
    clock.now += 101
    with pytest.raises(UploadError) as expired:
        await uploader.upload(grant, path, timeout=5.0)
    assert (large.value.status, large.value.code, large.value.retryable) == (
        400,
        "OSS.EntityTooLarge",
        False,
    )
    assert (expired.value.status, expired.value.code) == (403, "OSS.AccessDenied")
    assert expired.value.refused
    assert not expired.value.retryable
    assert not service.state.objects.objects
    assert service.stats.upload_failures == {"EntityTooLarge": 1, "AccessDenied": 1}


@pytest.mark.anyio
async def test_uploader_reset_is_a_retryable_upload_error(tmp_path: Path) -> None:
    """upload_reset_rate=1 (from the service's faults): a retryable UploadError with no status,
    nothing stored; without the fault the same grant then stores the file."""
    clock = Clock()
    service = _service(Faults(upload_reset_rate=1.0))
    transport = InProcessTransport(service, now=clock)
    path = tmp_path / "p.zip"
    path.write_bytes(b"y" * 5000)
    grant = await _grant(transport)
    with pytest.raises(UploadError) as reset:
        await InProcessUploader(service, now=clock, chunk_size=1000).upload(grant, path, 5.0)
    assert (reset.value.status, reset.value.retryable, reset.value.refused) == (None, True, False)
    assert not service.state.objects.objects
    assert service.stats.faults["upload_reset"] == 1
    calm = InProcessUploader(service, now=clock, faults=Faults())
    assert await calm.upload(grant, path, 5.0) == 5000
    assert (grant.bucket, grant.object_key) in service.state.objects.objects


@pytest.mark.anyio
async def test_uploader_cannot_read_the_file(tmp_path: Path) -> None:
    """A file that cannot be read is a non-retryable UploadError, nothing posted."""
    clock = Clock()
    service = _service()
    grant = await _grant(InProcessTransport(service, now=clock))
    with pytest.raises(UploadError) as missing:
        await InProcessUploader(service, now=clock).upload(grant, tmp_path / "none.zip", 5.0)
    assert not missing.value.retryable
    assert not service.state.objects.objects
