"""The real CLI runs --import against `runner sim`: 40 tasks in 10 source workspaces exported,
downloaded, uploaded and imported into 10 target workspaces in another region, exactly once,
with and without lost CreateImportMigration answers, and after a lost journal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Cli, Sim, SimFactory

pytestmark = pytest.mark.integration

SOURCES, PER = 10, 4
FIRST_SOURCE, FIRST_TARGET = 61001, 91001
FAST = ("--rate", "400", "--poll-interval", "0.3", "--concurrency", "16")


def write_migration(path: Path) -> Path:
    """10 source workspaces in cn-shanghai, 4 tasks each, each imported into its own target
    workspace in cn-hangzhou under the export task's name."""
    lines = [
        "version: 1",
        "defaults:",
        "  region: cn-shanghai",
        "  export_object_status: DEPLOYED",
        "  import_into:",
        "    region: cn-hangzhou",
        "    commit_rule: {fileAutoCommit: true, resourceAutoCommit: false}",
        "workspaces:",
    ]
    for i in range(SOURCES):
        lines += [
            f"  - project_id: {FIRST_SOURCE + i}",
            f"    import_into: {{project_id: {FIRST_TARGET + i}}}",
            "    tasks: [" + ", ".join(f"{{name: t{t}}}" for t in range(PER)) + "]",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_one_import_per_name_from_its_own_export(cli: Cli, sim: Sim) -> None:
    """Every target holds exactly one import per task name, made from the package of the export
    of that name in its paired source workspace, and every import succeeded."""
    stats = sim.stats()
    imports: list[dict[str, Any]] = stats["imports"]
    assert Counter((i["project_id"], i["name"]) for i in imports) == Counter(
        {(FIRST_TARGET + w, f"t{t}"): 1 for w in range(SOURCES) for t in range(PER)}
    )
    exports = {(row["project_id"], row["name"]): row["migration_id"] for row in cli.status()}
    for made in imports:
        source = made["project_id"] - FIRST_TARGET + FIRST_SOURCE
        assert made["source_migration_id"] == exports[(source, made["name"])]
        assert made["status"] == "IMPORT_SUCCESS"
    assert stats["duplicate_imports"] == 0


@pytest.fixture
def sim(sim_factory: SimFactory) -> Sim:
    return sim_factory("--export-duration", "0.5", "--import-duration", "0.5")


def test_import_run_migrates_every_task_once_and_a_rerun_sends_nothing(
    cli: Cli, sim: Sim, tmp_path: Path
) -> None:
    """`run --import` exits 0 with every task imported, each target holding one import per name
    made from that very export's package; status shows both ids; a rerun sends no request."""
    manifest = write_migration(tmp_path / "migrate.yaml")
    first = cli.run(manifest, sim.url, "--import", *FAST, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "40 imported" in first.stdout
    rows = cli.status()
    assert {row["state"] for row in rows} == {"imported"}
    for row in rows:
        assert row["import_state"] == "imported"
        assert isinstance(row["import_migration_id"], int)
        assert row["import_region"] == "cn-hangzhou"
        assert row["package_file"].startswith("http://runner-sim-cn-hangzhou.")
        assert Path(row["package_path"]).is_file()
    assert (tmp_path / "packages").is_dir()  # the default folder, beside the journal
    assert_one_import_per_name_from_its_own_export(cli, sim)
    stages = cli.report()["stages"]
    assert stages["imported"] == stages["uploaded"] == SOURCES * PER
    seen = sum(sim.stats()["requests"].values())
    second = cli.run(manifest, sim.url, "--import", *FAST, timeout=60)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sum(sim.stats()["requests"].values()) == seen


def test_lost_import_answers_make_no_duplicate_import(
    cli: Cli, sim_factory: SimFactory, tmp_path: Path
) -> None:
    """10% of CreateImportMigration answers lost (the import made, the connection reset), on a
    simulator that accepts duplicate names: reruns until exit 0 leave 0 duplicate imports."""
    sim = sim_factory(
        "--export-duration",
        "0.5",
        "--import-duration",
        "0.5",
        "--allow-duplicate-names",
        "--reset-rate",
        "0.1",
        "--faults-only-on",
        "CreateImportMigration",
        "--seed",
        "11",
    )
    manifest = write_migration(tmp_path / "migrate.yaml")
    codes = []
    for _ in range(4):
        result = cli.run(manifest, sim.url, "--import", *FAST, timeout=120)
        codes.append(result.returncode)
        if result.returncode == 0:
            break
    assert codes[-1] == 0, codes
    assert sim.stats()["faults"].get("reset", 0) > 0  # answers were lost
    assert_one_import_per_name_from_its_own_export(cli, sim)


def test_a_lost_journal_is_taken_up_again_with_adopt_existing_and_nothing_made_twice(
    cli: Cli, sim: Sim, tmp_path: Path
) -> None:
    """After a whole migration the journal is lost: a rerun on a new journal with --import
    --adopt-existing adopts every export and every import it finds by name, creates and uploads
    nothing, and exits 0 with every task imported under the ids the service holds."""
    manifest = write_migration(tmp_path / "migrate.yaml")
    first = cli.run(manifest, sim.url, "--import", *FAST, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    made = {
        (row["project_id"], row["name"]): (row["migration_id"], row["import_migration_id"])
        for row in cli.status()
    }
    before = sim.stats()

    cli.lose_journal()
    again = cli.run(manifest, sim.url, "--import", "--adopt-existing", *FAST, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 created, 40 adopted" in again.stdout
    assert "imports: 0 uploaded, 0 created, 40 adopted" in again.stdout
    after = sim.stats()
    for counter in ("creates_applied", "imports_applied", "uploads_stored", "grants_issued"):
        assert after[counter] == before[counter], counter
    rows = cli.status()
    assert {row["state"] for row in rows} == {"imported"}
    assert {
        (row["project_id"], row["name"]): (row["migration_id"], row["import_migration_id"])
        for row in rows
    } == made
    assert_one_import_per_name_from_its_own_export(cli, sim)
