"""The journal's import leg: the target registered from the manifest, kept once an import was
sent, the import ops, and where each task stands along the chain (stages, next step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.journal import (
    Journal,
    MarkCreated,
    MarkDownloaded,
    MarkExported,
    MarkImportCreated,
    MarkImported,
    MarkImportFailed,
    MarkImportInFlight,
    MarkImporting,
    MarkInFlight,
    MarkStarted,
    MarkUploaded,
    Op,
    TaskRow,
)
from runner.models import ExportSpec, ImportSpec, TaskKey, TaskState
from runner.plan import decide
from runner.reports import import_state
from runner.stages import Step, next_step, reached, stage_counts

KEY = TaskKey("cn-shanghai", 710001, "a")
TARGET = TaskKey("cn-hangzhou", 810001, "a")
SPEC = ExportSpec(KEY, import_into=ImportSpec(TARGET, commit_rule='{"fileAutoCommit":true}'))


def journal_with(path: Path, spec: ExportSpec, *ops: Op) -> TaskRow:
    with Journal.open(path) as journal:
        journal.register([spec], default_profile="main")
        journal.apply(list(ops))
        row = journal.get(spec.key)
    assert row is not None
    return row


def exported(spec: ExportSpec) -> tuple[Op, ...]:
    """The ops that take a task from pending to downloaded."""
    key = spec.key
    return (
        MarkInFlight(key, spec.fingerprint()),
        MarkCreated(key, 5001, "r1"),
        MarkStarted(key, "r2"),
        MarkExported(key, "https://oss/x.zip", "r3"),
        MarkDownloaded(key, f"/p/{key.name}-5001.zip"),
    )


EXPORTED = exported(SPEC)


def test_register_keeps_the_target_and_its_parameters(tmp_path: Path) -> None:
    """A task with import_into is registered with its target, the target's profile (the run's
    default when the manifest names none) and the CreateImportMigration parameters as JSON."""
    row = journal_with(tmp_path / "j.db", SPEC)
    assert row.imports is not None
    assert row.imports.target == TARGET
    assert row.imports.profile == "main"
    assert json.loads(row.imports.params) == {
        "ProjectId": "810001",
        "Name": "a",
        "PackageType": "DATAWORKS_MODEL",
        "CommitRule": '{"fileAutoCommit":true}',
    }
    assert (row.imports.package_file, row.imports.migration_id, row.imports.sent) == (
        None,
        None,
        False,
    )


def test_a_task_without_import_into_has_no_import_leg(tmp_path: Path) -> None:
    """No import_into: no import row, no import state."""
    row = journal_with(tmp_path / "j.db", ExportSpec(KEY))
    assert row.imports is None
    assert import_state(row) is None


def test_a_changed_target_is_taken_until_an_import_is_sent(tmp_path: Path) -> None:
    """A rerun with another target updates the row while no import was sent; once one was sent,
    the journal keeps the target it was sent to."""
    path = tmp_path / "j.db"
    journal_with(path, SPEC, *EXPORTED)
    moved = ExportSpec(KEY, import_into=ImportSpec(TaskKey("cn-beijing", 910001, "a")))
    row = journal_with(path, moved)
    assert row.imports is not None
    assert row.imports.target.project_id == 910001
    journal_with(path, moved, MarkUploaded(KEY, "http://b.e/k"), MarkImportInFlight(KEY))
    row = journal_with(path, SPEC)
    assert row.imports is not None
    assert row.imports.target.project_id == 910001
    assert row.imports.sent


def test_an_import_created_and_failed_starts_again_under_another_import_name(
    tmp_path: Path,
) -> None:
    """An import created and then failed keeps its name taken in the target; the same
    manifest leaves it failed, and one that gives it another import_name takes the task back
    to exported (its saved package kept, the import's id, package file and error cleared), so
    that the next --import uploads and imports it under the new name."""
    path = tmp_path / "j.db"
    failed = (
        MarkUploaded(KEY, "http://b.e/k"),
        MarkImportInFlight(KEY),
        MarkImportCreated(KEY, 7001, "r4"),
        MarkImportFailed(KEY, "ImportFailed", "the import failed", "r5"),
    )
    row = journal_with(path, SPEC, *EXPORTED, *failed)
    assert row.state is TaskState.IMPORT_FAILED
    row = journal_with(path, SPEC)  # the same manifest: nothing moves
    assert (row.state, row.error_code) == (TaskState.IMPORT_FAILED, "ImportFailed")
    renamed = ExportSpec(KEY, import_into=ImportSpec(TaskKey("cn-hangzhou", 810001, "a-v2")))
    row = journal_with(path, renamed)
    assert row.state is TaskState.EXPORTED
    assert row.package_path == "/p/a-5001.zip"
    assert (row.error_code, row.error_message) == (None, None)
    assert row.imports is not None
    assert row.imports.target.name == "a-v2"
    assert (row.imports.sent, row.imports.migration_id, row.imports.package_file) == (
        False,
        None,
        None,
    )
    assert next_step(renamed, row) is Step.UPLOAD


def test_the_import_ops_walk_the_import_states(tmp_path: Path) -> None:
    """Uploaded, in flight, created, importing, imported: each op moves the row on and keeps
    what the step learnt (the package file, the import's id)."""
    path = tmp_path / "j.db"
    row = journal_with(path, SPEC, *EXPORTED, MarkUploaded(KEY, "http://b.e/k"))
    assert (row.state, import_state(row)) == (TaskState.UPLOADED, "uploaded")
    row = journal_with(path, SPEC, MarkImportInFlight(KEY))
    assert (row.state, import_state(row)) == (TaskState.UPLOADED, "in_flight")
    row = journal_with(path, SPEC, MarkImportCreated(KEY, 7001, "r4"))
    assert row.imports is not None
    assert (row.state, row.imports.migration_id) == (TaskState.IMPORT_CREATED, 7001)
    row = journal_with(path, SPEC, MarkImporting(KEY, "r5"))
    assert row.state is TaskState.IMPORTING
    row = journal_with(path, SPEC, MarkImported(KEY, "r6"))
    assert (row.state, row.migration_id, row.package_path) == (
        TaskState.IMPORTED,
        5001,
        "/p/a-5001.zip",
    )
    assert [s.value for s in reached(row)] == [
        "created",
        "started",
        "exported",
        "downloaded",
        "uploaded",
        "import_created",
        "import_started",
        "imported",
    ]
    assert next_step(SPEC, row) is Step.NONE


def test_next_steps_follow_the_chain(tmp_path: Path) -> None:
    """The next step of a task is the first stage it has not reached: download, upload, create,
    start and wait for the import; a failed import that was never created is uploaded again."""
    path = tmp_path / "j.db"
    assert next_step(SPEC, None) is Step.CREATE
    row = journal_with(path, SPEC, *EXPORTED[:4])
    assert next_step(SPEC, row) is Step.DOWNLOAD
    row = journal_with(path, SPEC, EXPORTED[4])
    assert next_step(SPEC, row) is Step.UPLOAD
    assert next_step(ExportSpec(KEY), row) is Step.NONE  # no import target: done
    row = journal_with(path, SPEC, MarkImportFailed(KEY, "OSS.EntityTooLarge", "too big", None))
    assert next_step(SPEC, row) is Step.UPLOAD
    row = journal_with(path, SPEC, MarkUploaded(KEY, "http://b.e/k"))
    assert next_step(SPEC, row) is Step.CREATE_IMPORT
    row = journal_with(path, SPEC, MarkImportCreated(KEY, 7001, None))
    assert next_step(SPEC, row) is Step.START_IMPORT
    row = journal_with(path, SPEC, MarkImporting(KEY, None))
    assert next_step(SPEC, row) is Step.WAIT_IMPORT
    row = journal_with(path, SPEC, MarkImportFailed(KEY, "ImportFailed", "ended", None))
    assert next_step(SPEC, row) is Step.NONE  # created, then failed: an operator's call


def test_an_import_failure_never_makes_the_export_again(tmp_path: Path) -> None:
    """A task whose import failed is skipped by the create plan: its export is made."""
    row = journal_with(
        tmp_path / "j.db", SPEC, *EXPORTED, MarkImportFailed(KEY, "ImportFailed", "x", None)
    )
    action = decide(SPEC, row, default_profile="main")
    assert action.kind.value == "skip"


def test_stage_counts_count_every_stage_got_through(tmp_path: Path) -> None:
    """report's stages: a task counts in every stage it got through."""
    row = journal_with(tmp_path / "j.db", SPEC, *EXPORTED)
    counts = stage_counts([row])
    assert counts["downloaded"] == 1
    assert counts["uploaded"] == 0


MIGRATION = """\
version: 1
defaults: {region: cn-shanghai, import_into: {region: cn-hangzhou}}
workspaces:
  - project_id: 710001
    import_into: {project_id: 810001}
    tasks: [{name: a}, {name: b}, {name: c}]
"""


def test_plan_shows_each_tasks_next_step_and_their_totals(tmp_path: Path) -> None:
    """`runner plan --format json` gives each task its next step along the chain and totals
    per step: a new task is created, a downloaded one uploaded, an uploaded one imported."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MIGRATION)
    path = tmp_path / "j.db"
    target = ImportSpec(TaskKey("cn-hangzhou", 810001, "b"))
    b = ExportSpec(TaskKey("cn-shanghai", 710001, "b"), import_into=target)
    c_key = TaskKey("cn-shanghai", 710001, "c")
    c = ExportSpec(c_key, import_into=ImportSpec(TaskKey("cn-hangzhou", 810001, "c")))
    journal_with(path, b, *exported(b))  # downloaded
    journal_with(path, c, *exported(c), MarkUploaded(c_key, "http://b.e/k"))
    result = CliRunner().invoke(
        cli, ["plan", str(manifest), "--journal", str(path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    steps = {task["name"]: task["next_step"] for task in plan["tasks"]}
    assert steps == {"a": "create", "b": "upload", "c": "create_import"}
    assert plan["next_steps"]["create"] == 1
    assert plan["next_steps"]["upload"] == 1
    assert plan["next_steps"]["create_import"] == 1


def test_tasks_with_and_without_targets_register_alike_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks with and without an import target, mixed over several chunks, are all registered
    pending with their profile and fingerprint; a target dropped from the manifest before any
    import was sent is dropped from the row too."""
    import runner.journal_apply

    monkeypatch.setattr(runner.journal_apply, "REGISTER_CHUNK", 3)
    specs = [
        ExportSpec(
            TaskKey("cn-shanghai", 710001, f"t{n}"),
            profile="other" if n % 4 == 0 else None,
            import_into=ImportSpec(TaskKey("cn-hangzhou", 810001, f"t{n}")) if n % 2 else None,
        )
        for n in range(10)
    ]
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        journal.register(specs, default_profile="main")
        rows = {row.key: row for row in journal.iter_rows()}
    assert len(rows) == 10
    for spec in specs:
        row = rows[spec.key]
        assert row.state is TaskState.PENDING
        assert row.fingerprint == spec.fingerprint()
        assert row.profile == (spec.profile or "main")
        assert (row.imports is not None) == (spec.import_into is not None)
    with Journal.open(path) as journal:
        journal.register([ExportSpec(specs[1].key)], default_profile="main")
        assert journal.get(specs[1].key).imports is None  # type: ignore[union-attr]
