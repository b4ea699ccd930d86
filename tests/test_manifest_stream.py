"""Manifest loading as a stream: key order does not matter, long task lists, YAML errors found
after the walk, and memory that does not grow with the document."""

from __future__ import annotations

import gc
import textwrap
import tracemalloc
from pathlib import Path

import pytest
import yaml

from runner import manifest_yaml
from runner.manifest import HELD_TASKS, ManifestError, load_manifests
from runner.models import ExportMode, TaskKey


def write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(*paths: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(list(paths))
    return [str(p) for p in caught.value.problems]


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test runs with libyaml's parser, and again with PyYAML's own."""
    if request.param == "pure-python":
        monkeypatch.setattr(manifest_yaml, "Loader", yaml.SafeLoader)


@pytest.mark.usefixtures("parser")
def test_defaults_after_the_workspaces_apply_to_them(tmp_path: Path) -> None:
    """Defaults written below the workspaces apply to them, and problems are reported once."""
    path = write(
        tmp_path,
        """\
        version: 1
        workspaces:
          - {project_id: 5, tasks: [{name: a}, {name: b, bogus: 1}]}
          - {project_id: 6}
        defaults: {region: cn-beijing, name: "d-{project_id}", incremental_since: 1589932800000}
        """,
    )
    assert problems(path) == [
        f"{path}:3:50: unknown key 'bogus' in task",
        f"{path}:5:56: incremental_since only applies to INCREMENTAL exports; "
        "no INCREMENTAL task in this file uses it",
    ]
    path.write_text(path.read_text().replace("bogus: 1", "export_mode: INCREMENTAL"))
    a, b, d = load_manifests([path]).specs
    assert (a.key, b.key, d.key) == (
        TaskKey("cn-beijing", 5, "a"),
        TaskKey("cn-beijing", 5, "b"),
        TaskKey("cn-beijing", 6, "d-6"),
    )
    assert (b.export_mode, b.incremental_since) == (ExportMode.INCREMENTAL, 1_589_932_800_000)


def test_another_version_after_the_workspaces_is_all_that_is_said(tmp_path: Path) -> None:
    """A version other than 1 below the workspaces still silences every version-1 complaint."""
    path = write(tmp_path, "workspaces: [{bogus: 1}]\nsettings: {rate: 0}\nversion: 2\n")
    assert problems(path) == [
        f"{path}:3:10: unsupported manifest version 2 (this runner reads version 1)"
    ]


@pytest.mark.usefixtures("parser")
def test_a_yaml_error_at_the_end_is_the_only_problem(tmp_path: Path) -> None:
    """A syntax error after the workspaces is the file's one problem: what the walk found before
    it, problems and tasks alike, counts for nothing (so no task of it clashes with another)."""
    good = "version: 1\nworkspaces:\n  - {project_id: 5, region: cn-beijing, name: a}\n"
    a = write(tmp_path, good, "a.yaml")
    bad = good.replace("}", ", zz: 1}")
    b = write(tmp_path, bad + "---\nmore: 1\n", "b.yaml")
    assert problems(a, b) == [
        f"{b}:4:1: YAML syntax error: expected a single document in the stream; "
        "but found another document"
    ]
    b.write_text(bad + "defaults: [\n")
    (only,) = problems(b)
    assert only.startswith(f"{b}:5:1: YAML syntax error: while parsing a flow node")


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize("tasks", [HELD_TASKS, HELD_TASKS + 1, 2 * HELD_TASKS])
def test_a_long_task_list_before_its_workspace_keys(tmp_path: Path, tasks: int) -> None:
    """However long a tasks list, the workspace keys written after it apply to all its tasks,
    in order, and its problems keep their positions."""
    lines = ["version: 1", "workspaces:", "  - tasks:"]
    lines += [f"      - {{name: t{i}, export_mode: FULL}}" for i in range(tasks)]
    lines += ["    project_id: 7", "    region: cn-beijing", "    export_mode: INCREMENTAL"]
    lines += ["  - {project_id: 8, region: cn-beijing, name: last}"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    specs = load_manifests([path]).specs
    assert [s.key.name for s in specs] == [f"t{i}" for i in range(tasks)] + ["last"]
    assert {(s.key.project_id, s.key.region, s.export_mode) for s in specs[:-1]} == {
        (7, "cn-beijing", ExportMode.FULL)
    }
    lines[4 + tasks // 2] = "      - {name: t0, export_mode: full}"
    path.write_text("\n".join(lines) + "\n")
    assert problems(path) == [
        f"{path}:{5 + tasks // 2}:9: task cn-beijing/7/t0 is already defined at {path}:4",
        f"{path}:{5 + tasks // 2}:33: export_mode must be one of FULL, INCREMENTAL, got 'full'",
    ]


def _manifest(path: Path, tasks: int, per_workspace: int) -> Path:
    lines = ["version: 1", "defaults: {region: cn-shanghai, export_mode: FULL}", "workspaces:"]
    for first in range(0, tasks, per_workspace):
        lines += [f"  - project_id: {10_001 + first}", "    tasks:"]
        for t in range(first, min(tasks, first + per_workspace)):
            lines.append(f"      - {{name: task-{t:06d}, description: task {t % 50}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _transient_bytes(path: Path) -> int:
    """How far loading path rose above what it returned, as tracemalloc counts it."""
    gc.collect()
    tracemalloc.start()
    try:
        manifest = load_manifests([path])
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del manifest
    return peak - kept


@pytest.mark.parametrize("per_workspace", [50, 10**9], ids=["50-per-workspace", "one-workspace"])
def test_loading_memory_does_not_grow_with_the_document(tmp_path: Path, per_workspace: int) -> None:
    """Ten times the tasks raise the loader's peak, over what it returns, by far less than the
    ~1,800 bytes a task's node tree takes: only the index of the tasks seen, under 100 bytes a
    task, grows. No whole document is held, nor a whole long tasks list."""
    small, large = 500, 5_000
    load_manifests([_manifest(tmp_path / "warm.yaml", 100, per_workspace)])  # the memo tables
    grown = _transient_bytes(_manifest(tmp_path / "large.yaml", large, per_workspace))
    base = _transient_bytes(_manifest(tmp_path / "small.yaml", small, per_workspace))
    assert (grown - base) / (large - small) < 300, (base, grown)
