"""Helpers for the import-leg tests: a finished export and its package stored as if uploaded,
and a simulator over HTTP with the calls the import leg makes."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from runner.dataworks.actions import AUTHORIZE_UPLOAD, DATAWORKS_VERSION, OPENPLATFORM_VERSION
from runner.dataworks.upload import UploadGrant
from runner.sim.app import STATE, STATS, Checker, SimConfig, allow_all, build_app
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.objects import StoredObject
from runner.sim.openplatform import PRODUCT
from runner.sim.packages import PackageManifest, export_package
from runner.sim.service import SimStats
from runner.sim.state import DataWorksState

ENDPOINT = "127.0.0.1:8080"
BUCKET = "runner-sim-cn-shanghai"


def finished_export(state: DataWorksState, name: str, now: float, project: int = 12345) -> int:
    """An export started at `now` - its duration - 1: EXPORT_SUCCESS at `now`."""
    began = now - state.duration - 1
    params = {"ProjectId": str(project), "Name": name, "ExportMode": "FULL"}
    migration_id = state.create_export_migration(params, began, "ak")
    state.start_migration({"ProjectId": str(project), "MigrationId": str(migration_id)}, began)
    return migration_id


def store_package(state: DataWorksState, export_id: int, key: str = "import/k.zip") -> str:
    """Put the export's package in the object store as an upload would; its PackageFile."""
    package = export_package(state.migrations[export_id])
    record = state.migrations[export_id]
    state.objects.buckets.add(BUCKET)
    state.objects.put(
        StoredObject(
            bucket=BUCKET,
            endpoint=ENDPOINT,
            key=key,
            size=len(package),
            sha256=hashlib.sha256(package).hexdigest(),
            md5=hashlib.md5(package, usedforsecurity=False).hexdigest(),
            manifest=PackageManifest(export_id, record.project_id, record.name),
            stored_at=0.0,
        )
    )
    return f"http://{BUCKET}.{ENDPOINT}/{key}"


# -- a simulator over HTTP, for the import leg -------------------------------------------------

T0 = 1_700_000_000.0
KEY = Key("sim-ak", "sim-secret")
REGION = "cn-shanghai"
CREATE_EXPORT = {"ProjectId": "12345", "Name": "e1", "ExportMode": "FULL"}


class EpochClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def no_sleep(seconds: float) -> None:
    """The injected sleep: returns at once."""


@dataclass
class Reply:
    status: int
    body: Any  # JSON, or the text of an XML answer
    headers: Mapping[str, str]


@dataclass
class ImportSim:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    clock: EpochClock

    @property
    def stats(self) -> SimStats:
        return self.app[STATS]

    @property
    def state(self) -> DataWorksState:
        return self.app[STATE]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client.port}"

    async def call(self, action: str, params: Mapping[str, str] | None = None) -> Reply:
        """An unsigned DataWorks POST (the permissive checker lets it through)."""
        headers = {
            "x-acs-action": action,
            "x-acs-version": DATAWORKS_VERSION,
            "content-type": "application/x-www-form-urlencoded",
        }
        async with self.client.post("/", data=urlencode(dict(params or {})), headers=headers) as r:
            return Reply(r.status, await r.json(), CIMultiDict(r.headers))

    async def authorize(self, params: Mapping[str, str] | None = None) -> Reply:
        """AuthorizeFileUpload as the SDK sends it: GET, parameters in the query."""
        query = {
            "Action": AUTHORIZE_UPLOAD.name,
            "Version": OPENPLATFORM_VERSION,
            **(params if params is not None else {"Product": PRODUCT, "RegionId": REGION}),
        }
        async with self.client.get("/?" + urlencode(query)) as r:
            return Reply(r.status, await r.json(), CIMultiDict(r.headers))

    async def grant(self) -> UploadGrant:
        body = (await self.authorize()).body
        return UploadGrant(
            bucket=body["Bucket"],
            endpoint=body["Endpoint"],
            object_key=body["ObjectKey"],
            access_key_id=body["AccessKeyId"],
            encoded_policy=body["EncodedPolicy"],
            signature=body["Signature"],
        )

    async def post(
        self,
        grant: UploadGrant,
        content: bytes | IO[bytes],
        *,
        fields: Mapping[str, str] | None = None,
        host: str | None = None,
        after_file: Mapping[str, str] | None = None,
    ) -> Reply:
        """An OSS PostObject to the simulator with `Host: {Bucket}.{Endpoint}`; `fields`
        replace the grant's form fields (a value of "" leaves the field out)."""
        form = aiohttp.FormData()
        for name, value in {**dict(grant.form()), **(fields or {})}.items():
            if value != "":
                form.add_field(name, value)
        form.add_field("file", content, filename="package.zip", content_type="application/zip")
        for name, value in (after_file or {}).items():
            form.add_field(name, value)
        headers = {"Host": host or grant.host}
        async with self.client.post("/", data=form, headers=headers) as r:
            return Reply(r.status, await r.text(), CIMultiDict(r.headers))

    async def create_import(
        self, package_file: str, name: str = "i1", project: str = "23456"
    ) -> int:
        """CreateImportMigration that must be accepted: the import's id."""
        answer = await self.call(
            "CreateImportMigration", import_params(package_file, name, project)
        )
        assert answer.status == 200, answer.body
        return int(answer.body["Data"])

    async def finished_export(self, name: str = "e1", project: str = "12345") -> int:
        """An export created, started and run to its end on the clock."""
        params = {**CREATE_EXPORT, "ProjectId": project, "Name": name}
        migration_id = int((await self.call("CreateExportMigration", params)).body["Data"])
        await self.call("StartMigration", {"ProjectId": project, "MigrationId": str(migration_id)})
        self.clock.now += self.state.duration
        return migration_id

    async def download(self, export_id: int, project: str = "12345") -> bytes:
        """The export's package, fetched from its DownloadUrl."""
        ask = {"ProjectId": project, "MigrationId": str(export_id)}
        url = urlsplit((await self.call("GetMigrationSummary", ask)).body["Data"]["DownloadUrl"])
        async with self.client.get(f"{url.path}?{url.query}") as r:
            assert r.status == 200
            return await r.read()

    async def uploaded_package(self, name: str = "e1", project: str = "12345") -> tuple[int, str]:
        """A finished export's package, downloaded and uploaded: (export id, PackageFile)."""
        export_id = await self.finished_export(name, project)
        grant = await self.grant()
        answer = await self.post(grant, await self.download(export_id, project))
        assert answer.status == 201, answer.body
        return export_id, grant.package_file


def import_params(package_file: str, name: str = "i1", project: str = "23456") -> dict[str, str]:
    return {
        "ProjectId": project,
        "Name": name,
        "PackageType": "DATAWORKS_MODEL",
        "PackageFile": package_file,
    }


def oss_error(text: str) -> tuple[str, str]:
    """(Code, Message) of an OSS XML error; its RequestId must be there too."""
    root = ElementTree.fromstring(text)
    assert root.tag == "Error"
    assert root.findtext("RequestId")
    return root.findtext("Code") or "", root.findtext("Message") or ""


@contextlib.asynccontextmanager
async def import_sim(
    *,
    faults: Faults | None = None,
    checker: Checker | None = allow_all,
    seed: int = 0,
    export_duration: float = 10.0,
    import_duration: float = 20.0,
    upload_max_bytes: int = 1024 * 1024,
    unique_names: bool = True,
    spool_dir: str | None = None,
) -> AsyncIterator[ImportSim]:
    clock = EpochClock()
    config = SimConfig(
        keys={KEY.access_key_id: KEY},
        faults=faults or Faults(),
        seed=seed,
        clock=clock,
        sleep=no_sleep,
        export_duration=export_duration,
        import_duration=import_duration,
        upload_max_bytes=upload_max_bytes,
        checker=checker,
        unique_names=unique_names,
        spool_dir=spool_dir,
    )
    app = build_app(config)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield ImportSim(client, app, clock)
