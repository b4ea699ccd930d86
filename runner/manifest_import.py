"""import_into: where the package of a workspace's exports is imported (CreateImportMigration).

A level's import_into (defaults' once per file, a workspace's once per workspace) is read into a
Target, every problem reported with its position. A workspace's Target is merged over the
defaults' key by key, each key taken whole (a workspace's commit_rule replaces the defaults' one),
and made into the ImportSpec its tasks share but for the import task's name. The maps are kept
as the compact JSON text that is sent, keys sorted, so one manifest always gives the same text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from yaml.events import ScalarEvent

from runner import manifest_values
from runner.manifest_events import Tree
from runner.manifest_yaml import STR, Node, Pair, Sink, tag
from runner.models import ImportSpec, PackageType, TaskKey

IMPORT_KEYS = frozenset(
    {
        "project_id",
        "region",
        "profile",
        "package_type",
        "commit_rule",
        "calculate_engine_map",
        "resource_group_map",
        "workspace_map",
        "description",
    }
)
# CreateImportMigration's CommitRule keys, all booleans (dataworks-api.md §3.2).
COMMIT_RULE_KEYS = frozenset(
    {
        "resourceAutoCommit",
        "resourceAutoDeploy",
        "functionAutoCommit",
        "functionAutoDeploy",
        "tableAutoCommitToDev",
        "tableAutoCommitToProd",
        "ignoreLock",
        "fileAutoCommit",
        "fileAutoDeploy",
    }
)
ENGINES = frozenset({"ODPS", "EMR", "HADOOP_CDH", "HOLOGRES"})  # CalculateEngineMap's keys
RESOURCE_GROUPS = frozenset({"SCHEDULER_RESOURCE_GROUP", "DI_RESOURCE_GROUP"})
_NAME_HINT = (
    "the import task's name is not set in import_into: it is the export task's name, or "
    "import_name (where name may be written)"
)
_HINTS = {"name": _NAME_HINT, "import_name": _NAME_HINT}
_NO_HINTS: dict[str, str] = {}
_WHAT = "import_into"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """An import_into as one level writes it, or as two levels merge: the keys given (whatever
    their values), those whose values were reported as wrong, and the values of the others."""

    node: Node  # the import_into mapping (the workspace's, when merged)
    given: frozenset[str] = frozenset()
    bad: frozenset[str] = frozenset()
    project_id: int | None = None
    region: str | None = None
    profile: str | None = None
    package_type: PackageType | None = None
    commit_rule: str | None = None
    calculate_engine_map: str | None = None
    resource_group_map: str | None = None
    workspace_map: str | None = None
    description: str | None = None


def read(sink: Sink, pair: Pair, tree: Tree | None) -> Target:
    """The import_into of pair (the level's first such key), read from tree, the value of the
    level's first import_into key that held a collection."""
    if tree is None or tree.node is not pair[1]:
        tree = Tree(pair[1])  # a scalar, or a duplicate key: its value is not a mapping
    fields = _fields(sink, tree, IMPORT_KEYS, _WHAT, _HINTS)
    if fields is None:
        return Target(tree.node, bad=IMPORT_KEYS)
    bad: set[str] = set()

    def value(key: str, reader: Callable[[Sink, Tree, str], T | None]) -> T | None:
        if (found := fields.get(key)) is None:
            return None
        if (read := reader(sink, found, f"{_WHAT}.{key}")) is None:
            bad.add(key)
        return read

    target = Target(
        tree.node,
        frozenset(fields),
        frozenset(),
        value("project_id", _scalar(manifest_values.project_id)),
        value("region", _scalar(manifest_values.region)),
        value("profile", _scalar(manifest_values.profile)),
        value("package_type", _package_type),
        value("commit_rule", _commit_rule),
        value("calculate_engine_map", _map_of_maps(ENGINES)),
        value("resource_group_map", _map_of_maps(RESOURCE_GROUPS)),
        value("workspace_map", _workspace_map),
        value("description", _scalar(manifest_values.free_text)),
    )
    return dataclasses.replace(target, bad=frozenset(bad)) if bad else target


def merge(base: Target, own: Target) -> Target:
    """own's keys over base's, key by key; each key's value taken whole."""

    def pick(key: str, mine: T | None, theirs: T | None) -> T | None:
        return mine if key in own.given else theirs

    return Target(
        own.node,
        base.given | own.given,
        own.bad | (base.bad - own.given),
        pick("project_id", own.project_id, base.project_id),
        pick("region", own.region, base.region),
        pick("profile", own.profile, base.profile),
        pick("package_type", own.package_type, base.package_type),
        pick("commit_rule", own.commit_rule, base.commit_rule),
        pick("calculate_engine_map", own.calculate_engine_map, base.calculate_engine_map),
        pick("resource_group_map", own.resource_group_map, base.resource_group_map),
        pick("workspace_map", own.workspace_map, base.workspace_map),
        pick("description", own.description, base.description),
    )


def resolve(
    sink: Sink,
    base: Target | None,
    own: Target | None,
    region: str | None,
    profile: str | None,
) -> tuple[bool, ImportSpec | None]:
    """A workspace's import: whether it has one, and the ImportSpec its tasks share but for the
    name (None when it has none, or when what it has was reported as wrong). base is the
    defaults' import_into, own the workspace's; region and profile are the workspace's own, the
    target's when import_into names none.

    A workspace imports when its own import_into is written, or when the defaults' names a
    project_id: defaults without one only hold what the workspaces' own import_into share."""
    if own is not None:
        target = own if base is None else merge(base, own)
    elif base is not None and (base.project_id is not None or "project_id" in base.bad):
        target = base
    else:
        return False, None
    if target.project_id is None:
        if "project_id" not in target.bad:  # own is not None: the defaults' would not import
            sink.at(
                target.node,
                "import_into is missing required key 'project_id' (set it here or in defaults)",
            )
        return True, None
    if target.bad:
        return True, None
    region = target.region if "region" in target.given else region
    if region is None:
        return True, None  # the workspace has none: reported there
    return True, ImportSpec(
        TaskKey(region, target.project_id, ""),
        target.package_type or PackageType.DATAWORKS_MODEL,
        target.commit_rule,
        target.calculate_engine_map,
        target.resource_group_map,
        target.workspace_map,
        target.description,
        target.profile if "profile" in target.given else profile,
    )


def named(shared: ImportSpec, name: str) -> ImportSpec:
    """The import of one task: shared, as resolve() made it, with the import task's name."""
    return ImportSpec(
        TaskKey(shared.key.region, shared.key.project_id, name),
        shared.package_type,
        shared.commit_rule,
        shared.calculate_engine_map,
        shared.resource_group_map,
        shared.workspace_map,
        shared.description,
        shared.profile,
    )


# -- the readers: each returns the value, or None after reporting a problem ------------------


def _scalar(
    check: Callable[[Sink, Node, str], T | None],
) -> Callable[[Sink, Tree, str], T | None]:
    def reader(sink: Sink, tree: Tree, what: str) -> T | None:
        return check(sink, tree.node, what)

    return reader


def _package_type(sink: Sink, tree: Tree, what: str) -> PackageType | None:
    return sink.choice(tree.node, what, PackageType)


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _commit_rule(sink: Sink, tree: Tree, what: str) -> str | None:
    fields = _fields(sink, tree, COMMIT_RULE_KEYS, what, _NO_HINTS)
    if fields is None:
        return None
    rule = {key: sink.boolean(value.node, f"{what}.{key}") for key, value in fields.items()}
    return None if None in rule.values() else _json(rule)


def _map_of_maps(allowed: Collection[str]) -> Callable[[Sink, Tree, str], str | None]:
    def reader(sink: Sink, tree: Tree, what: str) -> str | None:
        fields = _fields(sink, tree, allowed, what, _NO_HINTS)
        if fields is None:
            return None
        maps = {key: _strings(sink, value, f"{what}.{key}") for key, value in fields.items()}
        if any(inner is None for inner in maps.values()):
            return None
        return _json(maps)

    return reader


def _workspace_map(sink: Sink, tree: Tree, what: str) -> str | None:
    strings = _strings(sink, tree, what)
    return None if strings is None else _json(strings)


def _strings(sink: Sink, tree: Tree, what: str) -> dict[str, str] | None:
    """A mapping of strings to strings, each key once; numbers and booleans are not strings."""
    if tree.pairs is None:
        sink.wrong(tree.node, what, "a mapping")
        return None
    strings: dict[str, str] = {}
    keys: dict[str, Node] = {}
    whole = True
    for key, value in tree.pairs:
        if type(key) is not ScalarEvent or tag(key) != STR:
            sink.key(key, (), what, _NO_HINTS)  # a merge key, or not a string
            whole = False
        elif (name := key.value) in keys:
            sink.duplicate(key, name, keys[name], what)
            whole = False
        else:
            keys[name] = key
            text = sink.text(value.node, f"the value of {name!r} in {what}")
            if text is None:
                whole = False
            else:
                strings[name] = text
    return strings if whole else None


def _fields(
    sink: Sink, tree: Tree, allowed: Collection[str], what: str, hints: Mapping[str, str]
) -> dict[str, Tree] | None:
    """The known keys of tree's mapping, each with its value (see Sink.fields)."""
    pairs = None if tree.pairs is None else [(key, value.node) for key, value in tree.pairs]
    fields = sink.fields(tree.node, pairs, allowed, what, hints)
    if fields is None or tree.pairs is None:
        return None
    values = {id(key): value for key, value in tree.pairs}
    return {name: values[id(key)] for name, (key, _) in fields.items()}
