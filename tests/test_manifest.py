"""Manifest loading: the format, every rule, and the positions of every problem."""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

from runner import manifest_yaml
from runner.manifest import ManifestError, Problem, expand_paths, load_manifests
from runner.models import ExportMode, ObjectStatus, Settings, TaskKey

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
ONE_WS = "version: 1\nworkspaces:\n  - project_id: 10001\n    region: cn-shanghai\n"


def write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(*paths: Path | str) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(list(paths))
    return list(caught.value.problems)


def only(path: Path) -> Problem:
    found = problems(path)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def assert_problem(path: Path, line: int, column: int, fragment: str) -> None:
    problem = only(path)
    assert (problem.file, problem.line, problem.column) == (str(path), line, column), str(problem)
    assert fragment in problem.message, str(problem)


# -- the format ------------------------------------------------------------------------------


def test_design_example_loads(tmp_path: Path) -> None:
    """The example from the design loads into the specs it describes."""
    path = write(
        tmp_path,
        """\
        version: 1
        settings:
          rate: 20
          concurrency: 16
        defaults:
          region: cn-shanghai
          export_mode: FULL
          export_object_status: SAVED
          description: quarterly backup
          name: "backup-{project_id}"
        workspaces:
          - project_id: 12345
            label: sales-prod
            region: cn-hangzhou
            tasks:
              - name: sales_full
              - name: sales_incr
                export_mode: INCREMENTAL
                incremental_since: 2020-05-20T00:00:00Z
          - project_id: 23456
        """,
    )
    manifest = load_manifests([path])
    assert manifest.settings == Settings(rate=20.0, concurrency=16)
    full, incr, default = manifest.specs
    assert full.key == TaskKey("cn-hangzhou", 12345, "sales_full")
    assert (full.export_mode, full.export_object_status) == (ExportMode.FULL, ObjectStatus.SAVED)
    assert (full.description, full.label, full.incremental_since) == (
        "quarterly backup",
        "sales-prod",
        None,
    )
    assert full.source == f"{path}:16"
    assert incr.export_mode is ExportMode.INCREMENTAL
    assert incr.incremental_since == 1_589_932_800_000
    assert default.key == TaskKey("cn-shanghai", 23456, "backup-23456")
    assert (default.label, default.source) == (None, f"{path}:20")


def test_overrides_at_every_level(tmp_path: Path) -> None:
    """A task's values beat its workspace's, which beat the defaults."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: {region: cn-beijing, export_object_status: SAVED, description: d}
        workspaces:
          - project_id: 7
            export_object_status: SUBMITTED
            description: w
            tasks:
              - name: a
              - name: b
                export_object_status: DEPLOYED
                description: t
        """,
    )
    a, b = load_manifests([path]).specs
    assert (a.export_object_status, a.description) == (ObjectStatus.SUBMITTED, "w")
    assert (b.export_object_status, b.description) == (ObjectStatus.DEPLOYED, "t")


def test_name_template_placeholders(tmp_path: Path) -> None:
    """{project_id}, {region} and {label} expand; a literal brace needs doubling."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: {name: "x-{region}-{project_id}-{label}-{{y}}", region: ap-southeast-1}
        workspaces:
          - {project_id: 5, label: lab}
          - project_id: 6
            label: other
            tasks: [{name: "t-{label}"}]
        """,
    )
    names = [spec.key.name for spec in load_manifests([path]).specs]
    assert names == ["x-ap-southeast-1-5-lab-{y}", "t-other"]


def test_settings_are_optional_and_no_export_object_status_means_none(tmp_path: Path) -> None:
    """Without settings and statuses, the manifest leaves them unset."""
    path = write(tmp_path, ONE_WS + "    name: t\n")
    manifest = load_manifests([path])
    assert manifest.settings == Settings()
    assert manifest.specs[0].export_object_status is None


# -- version, settings, structure ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("workspaces: []\n", 1, 1, "missing required key 'version'"),
        ("version: 2\nworkspaces: 3\n", 1, 10, "unsupported manifest version 2"),
        ('version: "1"\nworkspaces: []\n', 1, 10, "version must be an integer, got a string"),
        ("version: 1\n", 1, 1, "missing required key 'workspaces'"),
        ("version: 1\nworkspaces: {a: 1}\n", 2, 13, "workspaces must be a list, got a mapping"),
        ("- 1\n", 1, 1, "the manifest must be a mapping, got a list"),
        ("version: 1\nworkspaces: []\ndefaults: [a]\n", 3, 11, "defaults must be a mapping"),
        ("version: 1\nworkspaces: [3]\n", 2, 14, "workspace must be a mapping, got an integer"),
        ("version: 1\nworkspaces: []\nsettings: {rate: 0}\n", 3, 18, "rate must be positive"),
        ("version: 1\nworkspaces: []\nsettings: {rate: -2.5}\n", 3, 18, "must be positive"),
        ("version: 1\nworkspaces: []\nsettings: {rate: fast}\n", 3, 18, "must be a number"),
        ("version: 1\nworkspaces: []\nsettings: {rate: .inf}\n", 3, 18, "finite number"),
        (
            "version: 1\nworkspaces: []\nsettings: {concurrency: 2.5}\n",
            3,
            25,
            "settings.concurrency must be an integer, got a number",
        ),
        (
            "version: 1\nworkspaces: []\nsettings: {concurrency: true}\n",
            3,
            25,
            "settings.concurrency must be an integer, got a boolean",
        ),
        ("version: 1\nworkspaces: []\nsettings: {concurrency: 0}\n", 3, 25, "must be positive"),
    ],
)
def test_structure_problems(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    """Version, settings and the top-level shape are checked with positions."""
    assert_problem(write(tmp_path, text), line, column, fragment)


def test_other_version_stops_at_the_version(tmp_path: Path) -> None:
    """A file of another version reports only that, not version-1 complaints."""
    path = write(tmp_path, "version: 2\nworkspaces: [{bogus: 1}]\n")
    assert [p.message for p in problems(path)] == [
        "unsupported manifest version 2 (this runner reads version 1)"
    ]


def test_settings_merge_across_files(tmp_path: Path) -> None:
    """Settings from several files merge; the same value twice is fine."""
    a = write(tmp_path, "version: 1\nsettings: {rate: 20}\nworkspaces: []\n", "a.yaml")
    text = "version: 1\nsettings:\n  rate: 20.0\n  concurrency: 4\nworkspaces: []\n"
    b = write(tmp_path, text, "b.yaml")
    assert load_manifests([a, b]).settings == Settings(rate=20.0, concurrency=4)


def test_settings_conflict_across_files(tmp_path: Path) -> None:
    """Two files asking for different settings is a problem at the second, naming the first."""
    a = write(tmp_path, "version: 1\nsettings: {rate: 20}\nworkspaces: []\n", "a.yaml")
    b = write(tmp_path, "version: 1\nsettings:\n  rate: 30\nworkspaces: []\n", "b.yaml")
    assert [str(p) for p in problems(a, b)] == [
        f"{b}:3:9: settings.rate is 30 here but 20 at {a}:2"
    ]


# -- workspaces and keys ------------------------------------------------------------------------

WS = "version: 1\nworkspaces:\n  - "  # the first workspace key is at 3:5
R = "\n    region: cn-shanghai\n"
P2 = "project_id: 2" + R  # lines 3-4
P2N = P2 + "    name: t\n"  # lines 3-5; the next key is on line 6
TASKS = P2 + "    tasks:\n      - name: a\n"  # lines 3-6; the next task key is on line 7


@pytest.mark.parametrize(
    ("body", "line", "column", "fragment"),
    [
        ("region: cn-shanghai\n    name: t\n", 3, 5, "missing required key 'project_id'"),
        ("project_id: 1" + R + "    name: t\n", 3, 17, "at least 2"),
        ("project_id: 0" + R + "    name: t\n", 3, 17, "at least 2"),
        ("project_id: abc" + R + "    name: t\n", 3, 17, "got a string"),
        ("project_id: true" + R + "    name: t\n", 3, 17, "got a boolean"),
        ("project_id: 1.5" + R + "    name: t\n", 3, 17, "got a number"),
        ("project_id: 012" + R + "    name: t\n", 3, 17, "decimal integer"),
        ("project_id: 0x1F" + R + "    name: t\n", 3, 17, "decimal integer"),
        ("project_id: 2\n    name: t\n", 3, 5, "workspace has no region"),
        ("project_id: 2\n    region: CN_Shanghai\n    name: t\n", 4, 13, "not a region id"),
        ("project_id: 2\n    region: [a]\n    name: t\n", 4, 13, "region must be a string"),
        (P2, 3, 5, "task has no name"),
        (P2N + "    label: 3\n", 6, 12, "label must be a string, got an integer"),
        (P2N + "    description:\n", 6, 17, "description must be a string, got null"),
        (P2N + "    export_mode: full\n", 6, 18, "must be one of FULL, INCREMENTAL, got 'full'"),
        (P2N + "    export_object_status: [x]\n", 6, 27, "SAVED, SUBMITTED, DEPLOYED, got a list"),
        (
            P2N + "    regoin: x\n",
            6,
            5,
            "unknown key 'regoin' in workspace; did you mean 'region'?",
        ),
        (P2N + "    zzz: x\n", 6, 5, "unknown key 'zzz' in workspace"),
        (
            P2N + "    region: cn-beijing\n",
            6,
            5,
            "duplicate key 'region' in workspace (first at 4:5)",
        ),
        (P2N + "    7: x\n", 6, 5, "a key must be a string, got an integer"),
        (P2 + "    tasks: []\n", 5, 12, "tasks is empty"),
        (P2 + "    tasks: {name: a}\n", 5, 12, "tasks must be a list"),
        (TASKS + "        region: cn-beijing\n", 7, 9, "'region' belongs to the workspace"),
        (TASKS + "        descripton: x\n", 7, 9, "did you mean 'description'?"),
        (TASKS + "      - {}\n", 7, 9, "task has no name"),
        (TASKS + "      - [name]\n", 7, 9, "task must be a mapping, got a list"),
    ],
)
def test_workspace_problems(
    tmp_path: Path, body: str, line: int, column: int, fragment: str
) -> None:
    """Workspace and task keys: required, typed, known, unique, each at its position."""
    assert_problem(write(tmp_path, WS + body), line, column, fragment)


def test_defaults_hints_and_suggestions(tmp_path: Path) -> None:
    """Keys in the wrong place get a hint; misspelt ones a suggestion."""
    text = (
        "version: 1\ndefaults:\n  project_id: 3\n  exprt_mode: FULL\nworkspaces: []\nsetings: {}\n"
    )
    path = write(tmp_path, text)
    assert [str(p) for p in problems(path)] == [
        f"{path}:3:3: 'project_id' belongs to a workspace, not to defaults",
        f"{path}:4:3: unknown key 'exprt_mode' in defaults; did you mean 'export_mode'?",
        f"{path}:6:1: unknown key 'setings' in the manifest; did you mean 'settings'?",
    ]


# -- YAML-level problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("", 1, 1, "file is empty"),
        ("# only a comment\n\n", 1, 1, "file is empty"),
        ("version: 1\nworkspaces: [1\n", 3, 1, "YAML syntax error"),
        ("version: 1\n  workspaces: []\n", 2, 13, "YAML syntax error: mapping values"),
        ("version: 1\nworkspaces: []\n---\nversion: 1\n", 3, 1, "expected a single document"),
        (
            "version: 1\nworkspaces: !!set {a}\n",
            2,
            13,
            "tag 'tag:yaml.org,2002:set' is not allowed",
        ),
        (
            "version: 1\nworkspaces: []\ndefaults: {description: !env X}\n",
            3,
            25,
            "tag '!env' is not allowed",
        ),
        (
            "version: 1\nworkspaces: []\ndefaults: !custom {}\n",
            3,
            11,
            "tag '!custom' is not allowed",
        ),
        ("version: 1\nworkspaces: []\n<<: {a: 1}\n", 3, 1, "merge keys ('<<') are not allowed"),
        (
            'version: 1\nworkspaces: []\ndefaults: {description: "a\x07"}\n',
            3,
            27,
            "character '\\x07' is not allowed",
        ),
    ],
)
def test_yaml_problems(tmp_path: Path, text: str, line: int, column: int, fragment: str) -> None:
    """Empty files, syntax errors, extra documents, tags and merge keys are reported in place."""
    assert_problem(write(tmp_path, text), line, column, fragment)


def test_anchors_and_aliases_are_refused(tmp_path: Path) -> None:
    """Every anchor and alias is a problem, and the file is not walked further."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: &d {region: cn-shanghai}
        workspaces:
          - project_id: 5
            tasks: [{name: x, bogus: 1}]
            description: *d
        """,
    )
    assert [str(p) for p in problems(path)] == [
        f"{path}:2:11: anchor '&d' is not allowed: write values out",
        f"{path}:6:18: alias '*d' is not allowed: write the value out",
    ]


def test_star_and_ampersand_in_text_are_fine(tmp_path: Path) -> None:
    """'&' and '*' inside values are text, not anchors."""
    path = write(tmp_path, ONE_WS + '    name: t\n    description: "R&D * 2" \n')
    assert load_manifests([path]).specs[0].description == "R&D * 2"


def test_pure_python_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml the pure-Python loader gives the same specs and positions."""
    monkeypatch.setattr(manifest_yaml, "Loader", yaml.SafeLoader)
    assert load_manifests([MANIFESTS]) == _with_c_loader(MANIFESTS)
    path = write(tmp_path, ONE_WS + "    name: t\n    export_mode: x\n    a: &a 1\n")
    assert [(p.line, p.column) for p in problems(path)] == [(7, 8)]
    path.write_text(ONE_WS + "    name: t\n    export_mode: x\n")
    assert_problem(path, 6, 18, "must be one of FULL, INCREMENTAL")


def _with_c_loader(path: Path) -> object:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_yaml, "Loader", yaml.CSafeLoader)
        return load_manifests([path])


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a problem at the first bad byte."""
    path = tmp_path / "m.yaml"
    path.write_bytes(b"version: 1\nworkspaces: []\n# caf\xe9\n")
    assert_problem(path, 3, 6, "not UTF-8")


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "b-{date}",
        "b-{n}",
        "b-{}",
        "b-{0}",
        "b-{project_id:05d}",
        "b-{region!r}",
        "b-{project_id",
        "b-}",
        "b-{label.x}",
    ],
)
def test_unstable_templates(tmp_path: Path, template: str) -> None:
    """Anything but the three plain placeholders would not give the same name on a rerun."""
    path = write(tmp_path, f'version: 1\ndefaults:\n  name: "{template}"\n' + ONE_WS[11:])
    assert_problem(path, 3, 9, "not stable across reruns")


def test_label_placeholder_needs_a_label(tmp_path: Path) -> None:
    """{label} in a template used by a workspace without a label is a problem there."""
    path = write(tmp_path, 'version: 1\ndefaults: {name: "x-{label}"}\n' + ONE_WS[11:])
    assert_problem(path, 4, 5, "uses {label}, but this workspace has no label")


def test_label_placeholder_needs_a_label_that_is_not_empty(tmp_path: Path) -> None:
    """An empty label is no label: `{label}-{project_id}` would make a name like `-10001`."""
    workspace = ONE_WS[11:].replace("project_id: 10001", 'project_id: 10001\n    label: ""')
    path = write(tmp_path, 'version: 1\ndefaults: {name: "{label}-{project_id}"}\n' + workspace)
    assert_problem(path, 4, 5, "uses {label}, but this workspace has an empty label")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ('""', "task name is empty"),
        ('"  "', "task name is empty"),
        ("a" * 129, "129 characters long; the limit is 128"),
        ('"a\\tb"', "control, invisible or surrounding blank"),
        ('" a"', "control, invisible or surrounding blank"),
    ],
)
def test_bad_names(tmp_path: Path, name: str, fragment: str) -> None:
    """Names must be non-empty, at most 128 characters, printable and unpadded."""
    assert_problem(write(tmp_path, ONE_WS + f"    tasks:\n      - name: {name}\n"), 6, 15, fragment)


def test_long_name_from_template_is_reported_at_the_workspace(tmp_path: Path) -> None:
    """A name that a template makes too long is reported where the task is."""
    text = f'version: 1\ndefaults: {{name: "{"x" * 125}-{{project_id}}"}}\n' + ONE_WS[11:]
    assert_problem(write(tmp_path, text), 4, 5, "131 characters long")


# -- incremental_since --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-05-20T00:00:00Z", 1_589_932_800_000),
        ("2020-05-20T08:00:00+08:00", 1_589_932_800_000),
        ('"2020-05-20T00:00:00.250Z"', 1_589_932_800_250),
        ("2020-05-20 00:00:00Z", 1_589_932_800_000),
        ("1589932800000", 1_589_932_800_000),
    ],
)
def test_incremental_since_forms(tmp_path: Path, value: str, expected: int) -> None:
    """Epoch milliseconds and ISO-8601 instants with a zone all become epoch milliseconds."""
    body = f"    export_mode: INCREMENTAL\n    incremental_since: {value}\n    name: t\n"
    assert load_manifests([write(tmp_path, ONE_WS + body)]).specs[0].incremental_since == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2020-05-20T00:00:00", "needs a timezone"),
        ("2020-05-20", "needs a timezone"),
        ('"2020-05-20T00:00:00"', "needs a timezone"),
        ("yesterday", "must be epoch milliseconds or an ISO-8601 instant"),
        ("1.5e+12", "must be epoch milliseconds or an ISO-8601 instant, got a number"),
        ("-5", "out of range"),
        ("99999999999999", "out of range"),
        ("1589932800", "looks like epoch seconds"),
        ("1999-12-31T23:59:59Z", "out of range"),
        ("true", "got a boolean"),
    ],
)
def test_bad_incremental_since(tmp_path: Path, value: str, fragment: str) -> None:
    """Naive times, junk, seconds and absurd values are refused at the value."""
    body = f"    export_mode: INCREMENTAL\n    incremental_since: {value}\n    name: t\n"
    assert_problem(write(tmp_path, ONE_WS + body), 6, 24, fragment)


def test_incremental_needs_since_at_the_task(tmp_path: Path) -> None:
    """INCREMENTAL without incremental_since is reported at the task."""
    body = "    tasks:\n      - name: a\n      - name: b\n        export_mode: INCREMENTAL\n"
    assert_problem(write(tmp_path, ONE_WS + body), 7, 9, "INCREMENTAL needs incremental_since")


def test_incremental_needs_since_at_the_workspace(tmp_path: Path) -> None:
    """Without a tasks list, the workspace is the task and carries the problem."""
    body = "    export_mode: INCREMENTAL\n    name: t\n"
    assert_problem(write(tmp_path, ONE_WS + body), 3, 5, "INCREMENTAL needs incremental_since")


def test_since_from_defaults_applies_only_to_incremental_tasks(tmp_path: Path) -> None:
    """A default incremental_since reaches INCREMENTAL tasks; FULL ones send none."""
    text = "version: 1\ndefaults: {incremental_since: 1589932800000}\n" + ONE_WS[11:]
    text += "    tasks:\n      - name: a\n      - {name: b, export_mode: INCREMENTAL}\n"
    a, b = load_manifests([write(tmp_path, text)]).specs
    assert (a.incremental_since, b.incremental_since) == (None, 1_589_932_800_000)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        (
            ONE_WS + "    tasks:\n      - name: a\n        incremental_since: 1589932800000\n",
            7,
            9,
            "this task is not INCREMENTAL",
        ),
        (
            ONE_WS + "    name: t\n    incremental_since: 1589932800000\n",
            6,
            5,
            "no INCREMENTAL task of this workspace uses it",
        ),
        (
            "version: 1\ndefaults: {incremental_since: 1589932800000}\n"
            + ONE_WS[11:]
            + "    name: t\n",
            2,
            12,
            "no INCREMENTAL task in this file uses it",
        ),
    ],
)
def test_since_that_applies_to_nothing(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    """An incremental_since no INCREMENTAL task takes is a problem: it would not take effect."""
    problem = only(write(tmp_path, text))
    assert (problem.line, problem.column) == (line, column)
    assert problem.message.startswith("incremental_since only applies to INCREMENTAL")
    assert fragment in problem.message


def test_bad_mode_gives_no_verdict_on_since(tmp_path: Path) -> None:
    """A misspelt export_mode is one problem, not also a complaint about incremental_since."""
    body = "    name: t\n    export_mode: incremental\n    incremental_since: 1589932800000\n"
    assert_problem(write(tmp_path, ONE_WS + body), 6, 18, "got 'incremental'")


# -- identity across files ----------------------------------------------------------------------


def test_duplicate_task_in_one_file(tmp_path: Path) -> None:
    """The second definition of a task points at the first."""
    body = "    tasks:\n      - name: a\n      - name: b\n      - name: a\n"
    path = write(tmp_path, ONE_WS + body)
    assert_problem(path, 8, 9, f"task cn-shanghai/10001/a is already defined at {path}:6")


def test_duplicate_task_across_files(tmp_path: Path) -> None:
    """A workspace may span files, but a task may not appear twice."""
    a = write(tmp_path, ONE_WS + "    tasks: [{name: a}, {name: b}]\n", "a.yaml")
    b = write(tmp_path, ONE_WS + "    tasks:\n      - name: c\n      - name: b\n", "b.yaml")
    assert [str(p) for p in problems(a, b)] == [
        f"{b}:7:9: task cn-shanghai/10001/b is already defined at {a}:5"
    ]


def test_same_name_in_other_workspaces_and_regions(tmp_path: Path) -> None:
    """The name is unique per (region, project_id) only; a workspace may span files."""
    a = write(tmp_path, ONE_WS + "    name: t\n", "a.yaml")
    text = "version: 1\nworkspaces:\n  - {project_id: 10001, region: cn-beijing, name: t}\n"
    text += "  - {project_id: 10002, region: cn-shanghai, name: t}\n"
    text += "  - {project_id: 10001, region: cn-shanghai, name: u}\n"
    b = write(tmp_path, text, "b.yaml")
    assert len(load_manifests([a, b]).specs) == 4


def test_all_problems_of_all_files_at_once(tmp_path: Path) -> None:
    """Problems from several files come together, sorted by file, line and column."""
    a = write(tmp_path, ONE_WS + "    name: t\n    bogus: 1\n    export_mode: x\n", "a.yaml")
    b = write(tmp_path, "", "b.yaml")
    c = write(tmp_path, "version: 1\nworkspaces:\n  - {project_id: 1, name: t}\n", "c.yaml")
    found = problems(c, tmp_path / "missing.yaml", b, a)
    assert [(Path(p.file).name, p.line, p.column) for p in found] == [
        ("a.yaml", 6, 5),
        ("a.yaml", 7, 18),
        ("b.yaml", 1, 1),
        ("c.yaml", 3, 5),
        ("c.yaml", 3, 18),
        ("missing.yaml", 1, 1),
    ]
    error = ManifestError(found)
    assert str(error).splitlines() == [str(p) for p in found]


def test_problem_text() -> None:
    """A problem prints as FILE:LINE:COL: message."""
    assert str(Problem("m.yaml", 3, 7, "boom")) == "m.yaml:3:7: boom"


# -- paths --------------------------------------------------------------------------------------


def test_expand_paths_folders(tmp_path: Path) -> None:
    """A folder gives its *.yaml and *.yml files (the suffix in any case), sorted, not recursing
    and not hidden ones (macOS's ._ copies); duplicates drop."""
    for name in ("b.yml", "a.yaml", "c.txt", "sub/d.yaml", "._a.yaml", ".e.yml", "f.YAML"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    extra = tmp_path / "c.txt"
    files = expand_paths([tmp_path, tmp_path / "a.yaml", extra])
    assert files == [tmp_path / "a.yaml", tmp_path / "b.yml", tmp_path / "f.YAML", extra]


def test_expand_paths_problems(tmp_path: Path) -> None:
    """A missing path or a folder without manifests is a problem."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError) as caught:
        expand_paths([tmp_path / "nope.yaml", tmp_path / "empty"])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'empty'}:1:1: folder has no .yaml or .yml files",
        f"{tmp_path / 'nope.yaml'}:1:1: no such file or folder",
    ]


def test_load_folder(tmp_path: Path) -> None:
    """Loading a folder loads every manifest in it, in name order."""
    write(tmp_path, ONE_WS + "    name: b\n", "b.yaml")
    write(tmp_path, ONE_WS + "    name: a\n", "a.yml")
    assert [s.key.name for s in load_manifests([tmp_path]).specs] == ["a", "b"]


def test_no_paths() -> None:
    """Loading nothing is a problem, not an empty run."""
    assert [p.message for p in problems()] == ["no manifest given"]


# -- the shipped manifests ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.y*ml")), ids=lambda p: p.name)
def test_shipped_manifests_load(path: Path) -> None:
    """Every manifest in manifests/ loads without a problem."""
    assert load_manifests([path]).specs


def test_shipped_manifests_exist_and_load_together() -> None:
    """The demo manifest has the promised size and spread, and the folder loads as a whole."""
    demo = load_manifests([MANIFESTS / "example.yaml"])
    assert 250 <= len(demo.specs) <= 300
    assert len({(s.key.region, s.key.project_id) for s in demo.specs}) >= 200
    assert len(Counter(s.key.region for s in demo.specs)) >= 3
    assert any(s.export_mode is ExportMode.INCREMENTAL for s in demo.specs)
    assert demo.settings == Settings(rate=20.0, concurrency=16)
    assert load_manifests([MANIFESTS / "minimal.yaml"]).specs


def test_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    """A path that is neither a file nor a folder is a problem, not a hang."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ManifestError) as raised:
        load_manifests([fifo])
    assert str(raised.value.problems[0]) == f"{fifo}:1:1: not a regular file"


def test_control_characters_in_a_description_are_refused(tmp_path: Path) -> None:
    """A NUL or escape character in a description is a positioned problem."""
    path = tmp_path / "m.yaml"
    path.write_text(
        'version: 1\ndefaults:\n  region: cn-shanghai\n  name: "b-{project_id}"\n'
        'workspaces:\n  - project_id: 12\n    description: "a\\0b"\n'
    )
    with pytest.raises(ManifestError) as raised:
        load_manifests([path])
    assert str(raised.value.problems[0]) == f"{path}:7:18: description has control characters"


def test_a_project_id_of_thousands_of_digits_is_a_problem_at_its_place(tmp_path: Path) -> None:
    """Digits are counted before any int() (which refuses ~4,300 digits and up): a position."""
    head = "version: 1\ndefaults: {region: cn-shanghai, name: t}\nworkspaces:\n"
    text = f"{head}  - project_id: {'9' * 5000}\n"
    assert_problem(write(tmp_path, text), 4, 17, "5000 digits")


def test_a_manifest_over_the_size_cap_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than the cap is one problem at 1:1 saying the size and the limit."""
    from runner import manifest as manifest_module

    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 100)
    path = write(tmp_path, "version: 1\n" + "# padding\n" * 20)
    assert_problem(path, 1, 1, "a manifest may be at most")


def test_an_incremental_since_in_the_future_is_a_problem(tmp_path: Path) -> None:
    """An instant after now has nothing to export yet: a problem, with its position."""
    text = textwrap.dedent(
        """\
        version: 1
        defaults: {region: cn-shanghai}
        workspaces:
          - project_id: 101
            tasks:
              - name: a
                export_mode: INCREMENTAL
                incremental_since: 2098-01-01T00:00:00Z
        """
    )
    assert_problem(write(tmp_path, text), 8, 28, "is in the future")
