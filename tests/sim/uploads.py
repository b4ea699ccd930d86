"""Helpers for the import-leg tests: a finished export and its package stored as if uploaded."""

from __future__ import annotations

import hashlib

from runner.sim.objects import StoredObject
from runner.sim.packages import PackageManifest, export_package
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
