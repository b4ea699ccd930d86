"""The simulator's import leg over HTTP: CreateImportMigration on an uploaded package, the
import's statuses over the clock, ListMigrations by MigrationType, and the import stats."""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from collections.abc import Callable

import pytest

from runner.sim.faults import Faults, draw_import_end
from runner.sim.packages import zip_package
from tests.sim.uploads import ImportSim, import_params, import_sim

DETAILED = {"RequestId", "Data", "Success", "HttpStatusCode", "ErrorCode", "ErrorMessage"}
STEPS = ["IMPORT_PREPARE", "IMPORT_OBJECTS", "IMPORT_COMMIT"]


def _ask(migration_id: int, project: str = "23456") -> dict[str, str]:
    return {"ProjectId": project, "MigrationId": str(migration_id)}


def _listing(migration_type: str, project: str = "23456") -> dict[str, str]:
    return {"ProjectId": project, "MigrationType": migration_type}


async def _start(sim: ImportSim, migration_id: int, project: str = "23456") -> None:
    started = await sim.call("StartMigration", _ask(migration_id, project))
    assert started.body["Data"] is True


async def _status(sim: ImportSim, migration_id: int) -> tuple[str, str]:
    """(GetMigrationSummary's Status, the ListMigrations item's Status)."""
    summary = (await sim.call("GetMigrationSummary", _ask(migration_id))).body["Data"]["Status"]
    listing = await sim.call("ListMigrations", _listing("IMPORT"))
    (item,) = [m for m in listing.body["Data"]["Migrations"] if m["Id"] == migration_id]
    return summary, item["Status"]


def _zip(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr(name, text)
    return buffer.getvalue()


async def _import_of(sim: ImportSim, content: bytes) -> tuple[int, str, str]:
    """Upload `content` and ask for its import: (status, Code, Message)."""
    grant = await sim.grant()
    assert (await sim.post(grant, content)).status == 201
    answer = await sim.call("CreateImportMigration", import_params(grant.package_file))
    return answer.status, answer.body.get("Code", ""), answer.body.get("Message", "")


# -- CreateImportMigration -------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_uploaded_package_is_imported() -> None:
    """Upload then CreateImportMigration: the detailed body, and the import remembers the
    export its package came from and the package's sha256."""
    async with import_sim() as sim:
        export_id = await sim.finished_export()
        package = await sim.download(export_id)
        grant = await sim.grant()
        assert (await sim.post(grant, package)).status == 201
        answer = await sim.call("CreateImportMigration", import_params(grant.package_file))
        record = sim.state.migrations[answer.body["Data"]]
        assert sim.stats.imports_applied == 1
    assert answer.status == 200
    assert set(answer.body) == DETAILED
    assert (answer.body["Success"], answer.body["HttpStatusCode"]) == (True, 200)
    assert (record.migration_type, record.project_id, record.name) == ("IMPORT", 23456, "i1")
    assert record.source_migration_id == export_id
    assert record.package_sha256 == hashlib.sha256(package).hexdigest()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "damage",
    [
        lambda f: "f",
        lambda f: f.replace("http://", "https://"),
        lambda f: f.replace(".127.0.0.1:", ".localhost:"),
        lambda f: f + "x",
        lambda f: f.replace("runner-sim-cn-shanghai", "runner-sim-cn-beijing"),
        lambda f: f.rsplit("/", 1)[0],
    ],
    ids=["not-a-url", "https", "other-endpoint", "other-key", "other-bucket", "no-key"],
)
async def test_a_package_file_that_names_no_upload_is_refused(
    damage: Callable[[str], str],
) -> None:
    """PackageFile must be exactly http://{Bucket}.{Endpoint}/{ObjectKey} of a stored upload."""
    async with import_sim() as sim:
        _, package_file = await sim.uploaded_package()
        answer = await sim.call("CreateImportMigration", import_params(damage(package_file)))
        assert sim.stats.imports_applied == 0
    assert (answer.status, answer.body["Code"]) == (400, "Invalid.Param")
    assert "PackageFile" in answer.body["Message"]
    assert "does not name an uploaded object" in answer.body["Message"]


@pytest.mark.anyio
async def test_an_upload_that_is_not_a_package_is_refused() -> None:
    """Stored, but not a zip whose manifest names a successful export of this simulator by its
    id, project and name: refused; the right manifest is accepted."""
    async with import_sim() as sim:
        export_id = await sim.finished_export()
        right = {"MigrationId": export_id, "ProjectId": 12345, "Name": "e1"}
        cases = {
            "not a zip": b"just some bytes",
            "empty zip": b"PK\x05\x06" + bytes(18),
            "no manifest": _zip("other.json", json.dumps(right)),
            "manifest not an object": _zip("manifest.json", "[1]"),
            "manifest not JSON": _zip("manifest.json", "{"),
            "unknown export": zip_package({**right, "MigrationId": 99}),
            "other name": zip_package({**right, "Name": "e2"}),
            "other project": zip_package({**right, "ProjectId": 777}),
            "id as text": zip_package({**right, "MigrationId": str(export_id)}),
        }
        answers = {label: await _import_of(sim, content) for label, content in cases.items()}
        good = await _import_of(sim, zip_package(right))
    for label, (status, code, message) in answers.items():
        assert (status, code) == (400, "Invalid.Param"), label
        assert "not a package of a successful export" in message, label
    assert good[0] == 200


@pytest.mark.anyio
async def test_a_package_of_an_unfinished_or_failed_export_is_refused() -> None:
    """The export must have ended EXPORT_SUCCESS: failed, or still running, it is refused."""
    async with import_sim(faults=Faults(export_failure_rate=1.0)) as sim:
        failed = await sim.finished_export("bad")
        params = {"ProjectId": "12345", "Name": "r", "ExportMode": "FULL"}
        running = (await sim.call("CreateExportMigration", params)).body["Data"]
        await _start(sim, running, "12345")
        outcomes = []
        for migration_id in (failed, running):
            name = sim.state.migrations[migration_id].name
            manifest = {"MigrationId": migration_id, "ProjectId": 12345, "Name": name}
            outcomes.append(await _import_of(sim, zip_package(manifest)))
    assert [(status, code) for status, code, _ in outcomes] == [(400, "Invalid.Param")] * 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name", ["CommitRule", "CalculateEngineMap", "ResourceGroupMap", "WorkspaceMap"]
)
@pytest.mark.parametrize(
    ("value", "accepted"), [('{"a":{"b":"c"}}', True), ("[1]", False), ("{x", False)]
)
async def test_json_parameters_must_be_objects(name: str, value: str, accepted: bool) -> None:
    """CommitRule and the three maps, when given, must be JSON objects (else InvalidParameter)."""
    async with import_sim() as sim:
        _, package_file = await sim.uploaded_package()
        params = {**import_params(package_file), name: value}
        answer = await sim.call("CreateImportMigration", params)
    if accepted:
        assert answer.status == 200
    else:
        assert (answer.status, answer.body["Code"]) == (400, "InvalidParameter")
        assert name in answer.body["Message"]


@pytest.mark.anyio
async def test_a_taken_import_name_is_refused() -> None:
    """A second import with the same name in the project is Invalid.Param 'already exists';
    another project has its own names."""
    async with import_sim() as sim:
        _, package_file = await sim.uploaded_package()
        await sim.create_import(package_file)
        again = await sim.call("CreateImportMigration", import_params(package_file))
        await sim.create_import(package_file, project="34567")
        assert (sim.stats.imports_applied, sim.stats.duplicate_imports) == (2, 0)
    assert (again.status, again.body["Code"]) == (400, "Invalid.Param")
    assert again.body["Message"] == "The import task name 'i1' already exists in project 23456."


@pytest.mark.anyio
async def test_duplicate_imports_are_made_and_counted_when_allowed() -> None:
    """With duplicate names allowed, the copy is made and counted in duplicate_imports."""
    async with import_sim(unique_names=False) as sim:
        _, package_file = await sim.uploaded_package()
        for _ in range(2):
            await sim.create_import(package_file)
        snapshot = sim.stats.snapshot()
    assert (snapshot["imports_applied"], snapshot["duplicate_imports"]) == (2, 1)
    assert snapshot["duplicates_created"] == 1
    assert [i["name"] for i in snapshot["imports"]] == ["i1", "i1"]


# -- the import's lifecycle ------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_import_runs_for_the_import_duration_then_succeeds() -> None:
    """INIT, then IMPORTING/RUNNING for --import-duration seconds, then IMPORT_SUCCESS/SUCCESS;
    a second start answers Data false."""
    async with import_sim(export_duration=10.0, import_duration=30.0) as sim:
        _, package_file = await sim.uploaded_package()
        mid = await sim.create_import(package_file)
        seen = [await _status(sim, mid)]
        await _start(sim, mid)
        seen.append(await _status(sim, mid))
        sim.clock.now += 29.9
        seen.append(await _status(sim, mid))
        steps = (await sim.call("GetMigrationProcess", _ask(mid))).body["Data"]
        sim.clock.now += 0.1
        seen.append(await _status(sim, mid))
        again = await sim.call("StartMigration", _ask(mid))
    assert seen == [
        ("INIT", "INIT"),
        ("IMPORTING", "RUNNING"),
        ("IMPORTING", "RUNNING"),
        ("IMPORT_SUCCESS", "SUCCESS"),
    ]
    assert [step["TaskName"] for step in steps] == STEPS
    assert steps[-1]["TaskStatus"] == "RUNNING"
    assert again.body["Data"] is False


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("faults", "summary", "message"),
    [
        (Faults(import_failure_rate=1.0), "IMPORT_ERROR", "could not be imported"),
        (Faults(import_partial_rate=1.0), "PARTIAL_SUCCESS", "Some objects"),
    ],
)
async def test_import_failure_and_partial_rates(faults: Faults, summary: str, message: str) -> None:
    """An import drawn to fail ends IMPORT_ERROR, one drawn partial PARTIAL_SUCCESS; both are
    FAILURE in ListMigrations with a Message, and their last step FAILURE."""
    async with import_sim(faults=faults) as sim:
        _, package_file = await sim.uploaded_package()
        mid = await sim.create_import(package_file)
        await _start(sim, mid)
        sim.clock.now += 20.0
        statuses = await _status(sim, mid)
        listing = await sim.call("ListMigrations", _listing("IMPORT"))
        steps = (await sim.call("GetMigrationProcess", _ask(mid))).body["Data"]
        made = sim.stats.snapshot()["imports"]
    assert statuses == (summary, "FAILURE")
    assert message in listing.body["Data"]["Migrations"][0]["Message"]
    assert steps[-1]["TaskStatus"] == "FAILURE"
    assert made[0]["status"] == summary


def test_import_ends_are_drawn_in_proportion() -> None:
    """import_failure_rate and import_partial_rate split the draws in proportion; their sum
    may not pass 1."""
    faults = Faults(import_failure_rate=0.3, import_partial_rate=0.2)
    rng = random.Random(5)
    ends = [draw_import_end(faults, rng) for _ in range(4000)]
    assert 0.26 < ends.count("IMPORT_ERROR") / 4000 < 0.34
    assert 0.17 < ends.count("PARTIAL_SUCCESS") / 4000 < 0.23
    assert draw_import_end(Faults(), rng) is None
    with pytest.raises(ValueError, match="import_failure_rate"):
        Faults(import_failure_rate=0.6, import_partial_rate=0.5)


@pytest.mark.anyio
async def test_the_export_failure_rate_leaves_imports_alone() -> None:
    """export_failure_rate is the exports' draw: an import still ends as its own rates say."""
    async with import_sim(faults=Faults(export_failure_rate=1.0)) as sim:
        export_id = await sim.finished_export()
        sim.state.migrations[export_id].will_fail = False  # this one export did succeed
        grant = await sim.grant()
        await sim.post(grant, await sim.download(export_id))
        mid = await sim.create_import(grant.package_file)
        await _start(sim, mid)
        sim.clock.now += 20.0
        statuses = await _status(sim, mid)
    assert statuses == ("IMPORT_SUCCESS", "SUCCESS")


# -- ListMigrations by type, and the stats ---------------------------------------------------


@pytest.mark.anyio
async def test_list_migrations_filters_on_the_migration_type() -> None:
    """IMPORT lists the imports only, EXPORT the exports only, each with its own TotalCount."""
    async with import_sim() as sim:
        export_id, package_file = await sim.uploaded_package(project="23456")
        mid = await sim.create_import(package_file)
        imports = (await sim.call("ListMigrations", _listing("IMPORT"))).body["Data"]
        exports = (await sim.call("ListMigrations", _listing("EXPORT"))).body["Data"]
    assert (imports["TotalCount"], exports["TotalCount"]) == (1, 1)
    (item,) = imports["Migrations"]
    assert (item["Id"], item["MigrationType"], item["PackageType"]) == (
        mid,
        "IMPORT",
        "DATAWORKS_MODEL",
    )
    assert item["DownloadUrl"] == ""
    assert [(m["Id"], m["MigrationType"]) for m in exports["Migrations"]] == [(export_id, "EXPORT")]


@pytest.mark.anyio
async def test_stats_list_every_import_with_its_source_export() -> None:
    """/_sim/stats counts grants, uploads and imports, and lists each import with the export
    whose package it was made from and its status (INIT, then the status it ends in)."""
    async with import_sim(faults=Faults(import_failure_rate=1.0)) as sim:
        first, package_a = await sim.uploaded_package("a")
        second, package_b = await sim.uploaded_package("b")
        a = await sim.create_import(package_a, "ia")
        b = await sim.create_import(package_b, "ib")
        await _start(sim, b)
        async with sim.client.get("/_sim/stats") as resp:
            snapshot = await resp.json()
    assert (snapshot["grants_issued"], snapshot["uploads_stored"]) == (2, 2)
    assert snapshot["upload_bytes"] > 0
    assert snapshot["upload_failures"] == {}
    assert (snapshot["imports_applied"], snapshot["duplicate_imports"]) == (2, 0)
    row = {"project_id": 23456, "created_by": "anonymous"}  # the key that signed it (none here)
    assert snapshot["imports"] == [
        {**row, "name": "ia", "migration_id": a, "source_migration_id": first, "status": "INIT"},
        {
            **row,
            "name": "ib",
            "migration_id": b,
            "source_migration_id": second,
            "status": "IMPORT_ERROR",
        },
    ]
