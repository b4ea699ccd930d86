"""Manifests with an import leg: import_into (at defaults and per workspace, merged key by key)
and import_name, the ImportSpec each task gets, and every problem at its position."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from runner import manifest_import, manifest_yaml
from runner.manifest import HELD_TASKS, ManifestError, Problem, load_manifests
from runner.manifest_events import Tree
from runner.manifest_yaml import Pair, Sink
from runner.models import ExportSpec, ImportSpec, PackageType, TaskKey

ISSUE = """\
version: 1
defaults:
  import_into:
    package_type: DATAWORKS_MODEL
    commit_rule: {resourceAutoCommit: false, fileAutoCommit: true}
workspaces:
  - project_id: 710001
    region: cn-shanghai
    import_into: {project_id: 810001, region: cn-hangzhou, profile: target-account}
    tasks: [{name: a}, {name: b}]
"""
# One workspace with an import; the body of each case goes under it.
WS = """\
version: 1
workspaces:
  - project_id: 710001
    region: cn-shanghai
    name: a
"""


def write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(*paths: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(list(paths))
    return [str(p) for p in caught.value.problems]


def imports(path: Path) -> dict[str, ImportSpec | None]:
    return {str(s.key): s.import_into for s in load_manifests([path]).specs}


def only(path: Path) -> Problem:
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    found = caught.value.problems
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test runs with libyaml's parser, and again with PyYAML's own."""
    if request.param == "pure-python":
        monkeypatch.setattr(manifest_yaml, "Loader", yaml.SafeLoader)


# -- what a task gets ---------------------------------------------------------------------------


@pytest.mark.usefixtures("parser")
def test_the_issue_example_merges_defaults_under_the_workspace(tmp_path: Path) -> None:
    """The defaults' keys and the workspace's merge; each task imports under its own name."""
    found = imports(write(tmp_path, ISSUE))
    rule = '{"fileAutoCommit":true,"resourceAutoCommit":false}'
    assert found == {
        "cn-shanghai/710001/a": ImportSpec(
            TaskKey("cn-hangzhou", 810001, "a"),
            PackageType.DATAWORKS_MODEL,
            commit_rule=rule,
            profile="target-account",
        ),
        "cn-shanghai/710001/b": ImportSpec(
            TaskKey("cn-hangzhou", 810001, "b"),
            PackageType.DATAWORKS_MODEL,
            commit_rule=rule,
            profile="target-account",
        ),
    }


def test_every_key_is_kept_as_sent(tmp_path: Path) -> None:
    """Every import_into key lands in the ImportSpec, the maps as compact JSON, keys sorted."""
    path = write(
        tmp_path,
        WS
        + """\
    import_into:
      project_id: 810001
      region: cn-hangzhou
      profile: target
      package_type: DATAWORKS_V3
      commit_rule: {ignoreLock: true, fileAutoDeploy: no, resourceAutoCommit: yes}
      calculate_engine_map:
        ODPS: {src_b: dst_b, src_a: dst_a}
        HOLOGRES: {h: "1"}
        EMR: {}
      resource_group_map:
        SCHEDULER_RESOURCE_GROUP: {s: t}
        DI_RESOURCE_GROUP: {"di 1": "di 2"}
      workspace_map: {dev_: prod_, "中": "文"}
      description: moved by runner
""",
    )
    (spec,) = load_manifests([path]).specs
    assert spec.import_into == ImportSpec(
        TaskKey("cn-hangzhou", 810001, "a"),
        PackageType.DATAWORKS_V3,
        commit_rule='{"fileAutoDeploy":false,"ignoreLock":true,"resourceAutoCommit":true}',
        calculate_engine_map=(
            '{"EMR":{},"HOLOGRES":{"h":"1"},"ODPS":{"src_a":"dst_a","src_b":"dst_b"}}'
        ),
        resource_group_map=(
            '{"DI_RESOURCE_GROUP":{"di 1":"di 2"},"SCHEDULER_RESOURCE_GROUP":{"s":"t"}}'
        ),
        workspace_map='{"dev_":"prod_","\\u4e2d":"\\u6587"}',
        description="moved by runner",
        profile="target",
    )
    assert json.loads(spec.import_into.workspace_map or "") == {"dev_": "prod_", "中": "文"}


def test_the_json_text_does_not_depend_on_the_order_written(tmp_path: Path) -> None:
    """The same maps written in another order, block or flow, give the very same text."""
    a = write(
        tmp_path,
        WS
        + "    import_into:\n      project_id: 810001\n"
        + "      commit_rule: {ignoreLock: true, fileAutoCommit: false}\n"
        + "      calculate_engine_map: {ODPS: {b: c, a: d}, EMR: {x: y}}\n",
        "a.yaml",
    )
    b = write(
        tmp_path,
        WS
        + "    import_into:\n      calculate_engine_map:\n        EMR:\n          x: y\n"
        + "        ODPS:\n          a: d\n          b: c\n"
        + "      commit_rule:\n        fileAutoCommit: false\n        ignoreLock: true\n"
        + "      project_id: 810001\n",
        "b.yaml",
    )
    assert imports(a) == imports(b)
    (target,) = imports(a).values()
    assert target is not None
    assert target.calculate_engine_map == '{"EMR":{"x":"y"},"ODPS":{"a":"d","b":"c"}}'
    assert target.commit_rule == '{"fileAutoCommit":false,"ignoreLock":true}'


def test_region_and_profile_default_to_the_source_workspace(tmp_path: Path) -> None:
    """Without region or profile, the target takes the source workspace's (or none)."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: {region: cn-beijing, profile: src-account, name: t}
        workspaces:
          - {project_id: 101, import_into: {project_id: 201}}
          - {project_id: 102, region: cn-hangzhou, profile: other, import_into: {project_id: 202}}
          - {project_id: 103, import_into: {project_id: 203, region: cn-shanghai, profile: dst}}
        """,
    )
    found = imports(path)
    assert {k: (v.key.region, v.profile) for k, v in found.items() if v} == {
        "cn-beijing/101/t": ("cn-beijing", "src-account"),
        "cn-hangzhou/102/t": ("cn-hangzhou", "other"),
        "cn-beijing/103/t": ("cn-shanghai", "dst"),
    }
    path.write_text(ISSUE.replace(", profile: target-account", ""))
    assert {v.profile for v in imports(path).values() if v} == {None}


def test_a_workspace_key_replaces_the_defaults_key_whole(tmp_path: Path) -> None:
    """Merged key by key: a workspace's commit_rule replaces the defaults' one, other keys stay."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults:
          region: cn-shanghai
          import_into:
            package_type: DATAWORKS_V2
            description: from defaults
            commit_rule: {resourceAutoCommit: true, fileAutoCommit: true}
        workspaces:
          - project_id: 101
            name: t
            import_into: {project_id: 201, commit_rule: {ignoreLock: true}}
        """,
    )
    (target,) = imports(path).values()
    assert target is not None
    assert (target.package_type, target.description) == (PackageType.DATAWORKS_V2, "from defaults")
    assert target.commit_rule == '{"ignoreLock":true}'


def test_defaults_with_a_project_id_import_every_workspace(tmp_path: Path) -> None:
    """import_into at defaults with a project_id gives every workspace an import."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults:
          region: cn-shanghai
          name: "backup-{project_id}"
          import_into: {project_id: 900, region: cn-hangzhou}
        workspaces:
          - {project_id: 101}
          - {project_id: 102, import_into: {description: second}}
        """,
    )
    found = imports(path)
    assert {k: v.key if v else None for k, v in found.items()} == {
        "cn-shanghai/101/backup-101": TaskKey("cn-hangzhou", 900, "backup-101"),
        "cn-shanghai/102/backup-102": TaskKey("cn-hangzhou", 900, "backup-102"),
    }
    assert [v.description if v else None for v in found.values()] == [None, "second"]


def test_defaults_without_a_project_id_import_only_workspaces_that_ask(tmp_path: Path) -> None:
    """Defaults without a project_id only share keys: a workspace without its own has no import."""
    path = write(
        tmp_path,
        ISSUE + "  - {project_id: 710002, region: cn-shanghai, name: c}\n",
    )
    found = imports(path)
    assert found["cn-shanghai/710002/c"] is None
    assert found["cn-shanghai/710001/a"] is not None


def test_no_import_anywhere_is_none(tmp_path: Path) -> None:
    """A manifest that names no import gives tasks without one."""
    assert imports(write(tmp_path, WS)) == {"cn-shanghai/710001/a": None}


@pytest.mark.usefixtures("parser")
def test_import_name_at_every_level(tmp_path: Path) -> None:
    """import_name templates: task beats workspace beats defaults; else the export's name."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults:
          region: cn-shanghai
          import_name: "imp-{project_id}-{region}"
          import_into: {project_id: 900}
        workspaces:
          - project_id: 101
            label: sales
            tasks:
              - name: a
              - {name: b, import_name: "{label}-b"}
              - {name: c, import_name: literal-c}
          - project_id: 102
            import_name: "ws-{label}"
            label: ops
            name: d
          - project_id: 103
            name: e
            import_into: {project_id: 901}
            import_name: "{{e}}"
        """,
    )
    names = {k: v.key.name if v else None for k, v in imports(path).items()}
    assert names == {
        "cn-shanghai/101/a": "imp-101-cn-shanghai",
        "cn-shanghai/101/b": "sales-b",
        "cn-shanghai/101/c": "literal-c",
        "cn-shanghai/102/d": "ws-ops",
        "cn-shanghai/103/e": "{e}",
    }


def test_the_export_fingerprint_does_not_see_the_import(tmp_path: Path) -> None:
    """ExportSpec.fingerprint and request_params are the same with and without import_into."""
    plain = write(tmp_path, WS, "plain.yaml")
    with_import = write(
        tmp_path, WS + "    import_into: {project_id: 810001, commit_rule: {ignoreLock: true}}\n"
    )
    (before,) = load_manifests([plain]).specs
    (after,) = load_manifests([with_import]).specs
    assert after.import_into is not None
    assert after.fingerprint() == before.fingerprint()
    assert after.request_params() == before.request_params()
    assert ExportSpec(before.key, source=before.source) == before


@pytest.mark.usefixtures("parser")
def test_defaults_written_after_the_workspaces_apply_to_them(tmp_path: Path) -> None:
    """import_into and import_name at defaults apply wherever defaults is written, problems once."""
    path = write(
        tmp_path,
        """\
        version: 1
        workspaces:
          - {project_id: 101, name: a, import_into: {region: cn-hangzhou}}
          - {project_id: 102, name: b}
        defaults:
          region: cn-shanghai
          import_name: "i-{project_id}"
          import_into: {project_id: 900, package_type: DATAWORKS_V2}
        """,
    )
    found = imports(path)
    assert [(v.key, v.package_type) for v in found.values() if v] == [
        (TaskKey("cn-hangzhou", 900, "i-101"), PackageType.DATAWORKS_V2),
        (TaskKey("cn-shanghai", 900, "i-102"), PackageType.DATAWORKS_V2),
    ]
    path.write_text(path.read_text().replace("{region: cn-hangzhou}", "{regoin: cn-hangzhou}"))
    assert problems(path) == [
        f"{path}:3:46: unknown key 'regoin' in import_into; did you mean 'region'?"
    ]


@pytest.mark.usefixtures("parser")
def test_a_long_task_list_before_the_import_into(tmp_path: Path) -> None:
    """import_into written after a tasks list too long to hold applies to all its tasks."""
    lines = ["version: 1", "workspaces:", "  - tasks:"]
    lines += [f"      - {{name: t{i}}}" for i in range(HELD_TASKS + 1)]
    lines += ["    project_id: 7", "    region: cn-beijing", "    import_into: {project_id: 8}"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    specs = load_manifests([path]).specs
    assert len(specs) == HELD_TASKS + 1
    assert all(s.import_into and s.import_into.key.project_id == 8 for s in specs)
    assert specs[-1].import_into == ImportSpec(TaskKey("cn-beijing", 8, f"t{HELD_TASKS}"))


def test_the_defaults_import_into_is_read_once_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defaults' import_into is read and checked once, not once per workspace or task."""
    calls: list[int] = []
    read = manifest_import.read

    def counting(sink: Sink, pair: Pair, tree: Tree | None) -> manifest_import.Target:
        calls.append(1)
        return read(sink, pair, tree)

    monkeypatch.setattr(manifest_import, "read", counting)
    lines = ["version: 1", "defaults:", "  region: cn-shanghai"]
    lines += ["  import_into: {project_id: 900, commit_rule: {ignoreLock: true}}", "workspaces:"]
    lines.insert(3, '  import_name: "{project_id}-{label}"')
    lines += [f"  - {{project_id: {100 + i}, label: a, name: t}}" for i in range(100)]
    specs = load_manifests([write(tmp_path, "\n".join(lines) + "\n")]).specs
    assert len(specs) == 100
    assert len({id(s.import_into.commit_rule) for s in specs if s.import_into}) == 1
    assert len(calls) == 1


# -- problems -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        (
            "    import_into: {region: cn-hangzhou}\n",
            6,
            18,
            "import_into is missing required key 'project_id' (set it here or in defaults)",
        ),
        ("    import_into: {}\n", 6, 18, "import_into is missing required key 'project_id'"),
        ("    import_into: 810001\n", 6, 18, "import_into must be a mapping, got an integer"),
        ("    import_into: [810001]\n", 6, 18, "import_into must be a mapping, got a list"),
        ("    import_into: !x {}\n", 6, 18, "tag '!x' is not allowed"),
        (
            "    import_into: {project_id: 1}\n",
            6,
            31,
            "import_into.project_id must be at least 2 (and fit in 64 bits), got 1",
        ),
        (
            '    import_into: {project_id: "810001"}\n',
            6,
            31,
            "import_into.project_id must be an integer, got a string",
        ),
        (
            "    import_into: {project_id: 8, region: Hangzhou}\n",
            6,
            42,
            "import_into.region 'Hangzhou' is not a region id such as cn-shanghai",
        ),
        (
            '    import_into: {project_id: 8, profile: "a b"}\n',
            6,
            43,
            "import_into.profile 'a b' is not a profile name (letters, digits, ._@+-)",
        ),
        (
            "    import_into: {project_id: 8, package_type: DATAWORKS}\n",
            6,
            48,
            "import_into.package_type must be one of DATAWORKS_MODEL, DATAWORKS_V2, "
            "DATAWORKS_V3, got 'DATAWORKS'",
        ),
        (
            "    import_into: {project_id: 8, projectId: 9}\n",
            6,
            34,
            "unknown key 'projectId' in import_into; did you mean 'project_id'?",
        ),
        (
            "    import_into: {project_id: 8, name: x}\n",
            6,
            34,
            "the import task's name is not set in import_into: it is the export task's name, "
            "or import_name (where name may be written)",
        ),
        (
            "    import_into: {project_id: 8, project_id: 9}\n",
            6,
            34,
            "duplicate key 'project_id' in import_into (first at 6:19)",
        ),
        (
            "    import_into: {project_id: 8, commit_rule: [ignoreLock]}\n",
            6,
            47,
            "import_into.commit_rule must be a mapping, got a list",
        ),
        (
            "    import_into: {project_id: 8, commit_rule: {ignoreLock: 1}}\n",
            6,
            60,
            "import_into.commit_rule.ignoreLock must be a boolean, got an integer",
        ),
        (
            '    import_into: {project_id: 8, commit_rule: {ignoreLock: "true"}}\n',
            6,
            60,
            "import_into.commit_rule.ignoreLock must be a boolean, got a string",
        ),
        (
            "    import_into: {project_id: 8, commit_rule: {resourceautocommit: true}}\n",
            6,
            48,
            "unknown key 'resourceautocommit' in import_into.commit_rule; "
            "did you mean 'resourceAutoCommit'?",
        ),
        (
            "    import_into: {project_id: 8, calculate_engine_map: {MAXCOMPUTE: {}}}\n",
            6,
            57,
            "unknown key 'MAXCOMPUTE' in import_into.calculate_engine_map",
        ),
        (
            "    import_into: {project_id: 8, calculate_engine_map: {ODPS: [a]}}\n",
            6,
            63,
            "import_into.calculate_engine_map.ODPS must be a mapping, got a list",
        ),
        (
            "    import_into: {project_id: 8, calculate_engine_map: {ODPS: {a: 1}}}\n",
            6,
            67,
            "the value of 'a' in import_into.calculate_engine_map.ODPS must be a string, "
            "got an integer",
        ),
        (
            "    import_into: {project_id: 8, calculate_engine_map: {EMR: {a: {b: c}}}}\n",
            6,
            66,
            "the value of 'a' in import_into.calculate_engine_map.EMR must be a string, "
            "got a mapping",
        ),
        (
            "    import_into: {project_id: 8, resource_group_map: {DI_RESOURCE_GROUP: {7: b}}}\n",
            6,
            75,
            "a key must be a string, got an integer",
        ),
        (
            "    import_into: {project_id: 8, resource_group_map: {DI: {}}}\n",
            6,
            55,
            "unknown key 'DI' in import_into.resource_group_map",
        ),
        (
            "    import_into: {project_id: 8, workspace_map: {dev_: 2.5}}\n",
            6,
            56,
            "the value of 'dev_' in import_into.workspace_map must be a string, got a number",
        ),
        (
            "    import_into: {project_id: 8, workspace_map: {a: true}}\n",
            6,
            53,
            "the value of 'a' in import_into.workspace_map must be a string, got a boolean",
        ),
        (
            "    import_into: {project_id: 8, workspace_map: {a: b, a: c}}\n",
            6,
            56,
            "duplicate key 'a' in import_into.workspace_map (first at 6:50)",
        ),
        (
            "    import_into: {project_id: 8, workspace_map: {<<: {a: b}}}\n",
            6,
            50,
            "merge keys ('<<') are not allowed: write the values out",
        ),
        (
            "    import_into: {project_id: 8, workspace_map: dev_}\n",
            6,
            49,
            "import_into.workspace_map must be a mapping, got a string",
        ),
        (
            '    import_into: {project_id: 8, description: "a\\u0001"}\n',
            6,
            47,
            "import_into.description has control characters",
        ),
        (
            "    import_into: {project_id: 8, description: 5}\n",
            6,
            47,
            "import_into.description must be a string, got an integer",
        ),
        (
            "    tasks: [{name: b, import_into: {project_id: 8}}]\n",
            6,
            23,
            "'import_into' belongs to the workspace, not to one of its tasks",
        ),
    ],
)
def test_import_into_problems(
    tmp_path: Path, body: str, line: int, column: int, message: str
) -> None:
    """Every kind of problem in import_into, alone, at its FILE:LINE:COL."""
    problem = only(write(tmp_path, WS + body))
    assert (problem.line, problem.column) == (line, column), str(problem)
    assert problem.message.startswith(message), str(problem)


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        (
            WS + "    import_name: b\n",
            6,
            18,
            "import_name needs an import, but this workspace has no import_into "
            "(its own, or one with a project_id in defaults)",
        ),
        (
            WS.replace("    name: a\n", "") + "    tasks: [{name: a, import_name: b}]\n",
            5,
            36,
            "import_name needs an import, but this task's workspace has no import_into",
        ),
        (
            "version: 1\ndefaults: {import_name: b, import_into: {package_type: DATAWORKS_V2}}\n"
            + WS.removeprefix("version: 1\n"),
            2,
            25,
            "import_name only applies to imports; no workspace in this file has import_into",
        ),
        (
            WS + "    import_into: {project_id: 8}\n    import_name: 'i-{date}'\n",
            7,
            18,
            "import_name template 'i-{date}' is not stable across reruns: {date} is not a "
            "stable placeholder; only {project_id}, {region} and {label} may appear",
        ),
        (
            WS + "    import_into: {project_id: 8}\n    import_name: 'i-{'\n",
            7,
            18,
            "import_name template 'i-{' is not stable across reruns: its braces do not balance",
        ),
        (
            WS + "    import_into: {project_id: 8}\n    import_name: 'i-{label}'\n",
            3,
            5,
            "import_name template 'i-{label}' uses {label}, but this workspace has no label",
        ),
        (
            WS.replace("    name: a\n", "")
            + "    import_into: {project_id: 8}\n    tasks: [{name: a, import_name: ' '}]\n",
            6,
            36,
            "import name is empty",
        ),
        (
            WS + "    import_into: {project_id: 8}\n    import_name: '{region}" + "x" * 120 + "'\n",
            3,
            5,
            "import name is 131 characters long; the limit is 128",
        ),
        (
            WS + "    import_into: {project_id: 8}\n    import_name: 7\n",
            7,
            18,
            "import_name must be a string, got an integer",
        ),
    ],
)
def test_import_name_problems(
    tmp_path: Path, text: str, line: int, column: int, message: str
) -> None:
    """import_name follows name's rules, and needs an import to name, at its FILE:LINE:COL."""
    problem = only(write(tmp_path, text))
    assert (problem.line, problem.column) == (line, column), str(problem)
    assert problem.message.startswith(message), str(problem)


def test_a_bad_defaults_import_into_is_reported_once_at_defaults(tmp_path: Path) -> None:
    """A bad defaults' import_into is reported once, at defaults, not at each workspace."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults:
          region: cn-shanghai
          import_into: {project_id: -1, package_type: V9}
        workspaces:
          - {project_id: 101, name: a}
          - {project_id: 102, name: a, import_into: {region: cn-beijing}}
          - {project_id: 103, name: a, import_into: {project_id: 4}}
        """,
    )
    assert problems(path) == [
        f"{path}:4:29: import_into.project_id must be at least 2 (and fit in 64 bits), got -1",
        f"{path}:4:47: import_into.package_type must be one of DATAWORKS_MODEL, DATAWORKS_V2, "
        "DATAWORKS_V3, got 'V9'",
    ]


def test_two_tasks_importing_into_one_task_in_one_file(tmp_path: Path) -> None:
    """A second task importing into one (region, project, name) is a problem naming the first."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: {region: cn-shanghai, import_into: {project_id: 900}}
        workspaces:
          - {project_id: 101, name: a}
          - project_id: 102
            tasks:
              - {name: b, import_name: c}
              - {name: a}
        """,
    )
    assert problems(path) == [
        f"{path}:8:9: import task cn-shanghai/900/a is already the import of the task at {path}:4"
    ]


def test_two_tasks_importing_into_one_task_across_files(tmp_path: Path) -> None:
    """The same holds across files, the import's region and project compared, not the source's."""
    a = write(tmp_path, ISSUE, "a.yaml")
    b = write(
        tmp_path,
        """\
        version: 1
        workspaces:
          - project_id: 710009
            region: cn-beijing
            import_into: {project_id: 810001, region: cn-hangzhou}
            tasks: [{name: x, import_name: b}, {name: y, import_name: b}]
        """,
        "b.yaml",
    )
    assert problems(a, b) == [
        f"{b}:6:13: import task cn-hangzhou/810001/b is already the import of the task at {a}:10",
        f"{b}:6:40: import task cn-hangzhou/810001/b is already the import of the task at {a}:10",
    ]


def test_one_import_name_into_other_targets_is_fine(tmp_path: Path) -> None:
    """The same import name into another project or region is another import task."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults: {region: cn-shanghai, name: t, import_name: same}
        workspaces:
          - {project_id: 101, import_into: {project_id: 900}}
          - {project_id: 102, import_into: {project_id: 901}}
          - {project_id: 103, import_into: {project_id: 900, region: cn-beijing}}
        """,
    )
    assert len({v.key for v in imports(path).values() if v}) == 3


def test_all_problems_at_once(tmp_path: Path) -> None:
    """Import problems at every level come at once, in order, with the manifest's others."""
    path = write(
        tmp_path,
        """\
        version: 1
        defaults:
          region: cn-shanghai
          import_into: {package_type: MODEL, bogus: 1}
        workspaces:
          - project_id: 101
            name: a
            import_into: {region: cn-beijing, workspace_map: {a: 1}}
          - project_id: 102
            export_mode: FULLY
            tasks:
              - {name: b, import_name: c}
              - {name: d, import_into: {}}
          - project_id: 103
            import_into: {project_id: 900, commit_rule: {ignoreLock: maybe}}
            name: e
        """,
    )
    assert problems(path) == [
        f"{path}:4:31: import_into.package_type must be one of DATAWORKS_MODEL, DATAWORKS_V2, "
        "DATAWORKS_V3, got 'MODEL'",
        f"{path}:4:38: unknown key 'bogus' in import_into",
        f"{path}:8:18: import_into is missing required key 'project_id' (set it here or in "
        "defaults)",
        f"{path}:8:58: the value of 'a' in import_into.workspace_map must be a string, "
        "got an integer",
        f"{path}:10:18: export_mode must be one of FULL, INCREMENTAL, got 'FULLY'",
        f"{path}:12:32: import_name needs an import, but this task's workspace has no "
        "import_into (its own, or one with a project_id in defaults)",
        f"{path}:13:19: 'import_into' belongs to the workspace, not to one of its tasks",
        f"{path}:15:62: import_into.commit_rule.ignoreLock must be a boolean, got a string",
    ]


def test_the_shipped_import_example() -> None:
    """manifests/import.yaml shows imports across regions, named both ways, and an export only."""
    path = Path(__file__).resolve().parent.parent / "manifests" / "import.yaml"
    found = imports(path)
    assert len(found) == 6
    assert sum(target is None for target in found.values()) == 1
    targets = [target for target in found.values() if target is not None]
    assert {(t.key.region, t.package_type) for t in targets} >= {
        ("cn-hangzhou", PackageType.DATAWORKS_MODEL),
        ("cn-beijing", PackageType.DATAWORKS_V3),
    }
    assert any(t.key.name != k.rsplit("/", 1)[1] for k, t in found.items() if t is not None)
