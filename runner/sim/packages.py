"""The export packages the simulator makes, and reading one back when it is uploaded for import.

A package is a small, deterministic zip holding `manifest.json`: the export's MigrationId,
ProjectId, Name and export settings. `/download/<id>.zip` serves it; CreateImportMigration
accepts an uploaded object only when its manifest names an export of this simulator that ended
EXPORT_SUCCESS.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

from runner.sim.records import MigrationRecord

MANIFEST = "manifest.json"
MAX_MANIFEST = 1024 * 1024  # bytes read from an uploaded manifest at most
# what reading a damaged, encrypted or foreign zip may raise
_UNREADABLE = (
    zipfile.BadZipFile,
    KeyError,
    ValueError,
    OSError,
    EOFError,
    RecursionError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
)


@dataclass(frozen=True, slots=True)
class PackageManifest:
    """What an uploaded package says it was exported from."""

    migration_id: int
    project_id: int
    name: str


def manifest_of(record: MigrationRecord) -> dict[str, Any]:
    return {
        "MigrationId": record.migration_id,
        "ProjectId": record.project_id,
        "Name": record.name,
        "ExportMode": record.export_mode,
        "ExportObjectStatus": record.export_object_status,
        "IncrementalSince": record.incremental_since,
    }


def export_package(record: MigrationRecord) -> bytes:
    """The package of an export, byte for byte as `/download/<id>.zip` serves it."""
    return zip_package(manifest_of(record))


def zip_package(manifest: dict[str, Any]) -> bytes:
    """A small, deterministic package holding `manifest`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as package:
        info = zipfile.ZipInfo(MANIFEST, date_time=(2020, 5, 18, 0, 0, 0))
        package.writestr(info, json.dumps(manifest, indent=2, sort_keys=True))
    return buffer.getvalue()


def read_manifest(file: IO[bytes]) -> PackageManifest | None:
    """The manifest of a package the simulator made; None for anything else (not a zip, no
    manifest, an oversized or malformed one). Reads the zip's directory and the manifest only."""
    try:
        with zipfile.ZipFile(file) as package:
            info = package.getinfo(MANIFEST)
            if info.file_size > MAX_MANIFEST:
                return None
            with package.open(info) as member:
                raw = member.read(MAX_MANIFEST + 1)
        data = json.loads(raw)
    except _UNREADABLE:
        return None
    if not isinstance(data, dict):
        return None
    migration_id, project_id, name = (
        _int(data, "MigrationId"),
        _int(data, "ProjectId"),
        data.get("Name"),
    )
    if migration_id is None or project_id is None or not isinstance(name, str):
        return None
    return PackageManifest(migration_id, project_id, name)


def _int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
