"""The rules for defaults, workspaces and tasks: each level over the one above it, names,
incremental_since, imports, and one ExportSpec per task. One workspace at a time."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from runner import manifest_import, manifest_values
from runner.manifest_events import Item, Tree
from runner.manifest_import import Target
from runner.manifest_names import Template, make_name, make_template
from runner.manifest_yaml import Node, Pair, Sink
from runner.models import ExportMode, ExportSpec, ImportSpec, ObjectStatus, TaskKey

_COMMON = (
    "region",
    "export_mode",
    "export_object_status",
    "description",
    "name",
    "incremental_since",
    "profile",
    "import_into",
    "import_name",
)
DEFAULT_KEYS = frozenset(_COMMON)
_WORKSPACE_KEYS = frozenset({"project_id", "label", "tasks", *_COMMON})
_TASK_KEYS = DEFAULT_KEYS - {"region", "profile", "import_into"}
NO_HINTS: dict[str, str] = {}
_TASK_HINTS = {
    key: f"{key!r} belongs to the workspace, not to one of its tasks"
    for key in ("region", "project_id", "label", "tasks", "profile", "import_into")
}
DEFAULT_HINTS = {
    key: f"{key!r} belongs to a workspace, not to defaults" for key in ("project_id", "label")
}


@dataclass(slots=True)
class ImportName:
    """An import_name as written at one level, and whether a workspace with an import took it."""

    node: Node
    template: Template
    used: bool = False


@dataclass(slots=True)
class Since:
    """An incremental_since as written at one level, and whether any INCREMENTAL task took it."""

    node: Node
    ms: int | None
    used: bool = False


class Level(NamedTuple):
    """What a level (defaults, a workspace, a task) sets, over the level above it. A named tuple
    rather than a frozen dataclass: one is made per task, and it is three times as quick to make."""

    region: str | None = None
    export_mode: ExportMode | None = None
    status: ObjectStatus | None = None
    description: str | None = None
    name: Template | None = None
    since: Since | None = None
    bad_region: bool = False  # reported already: say nothing more about it
    bad_mode: bool = False  # reported already: no verdict on incremental_since either
    profile: str | None = None  # the credentials profile the workspace's requests are signed with
    import_into: Target | None = None  # the defaults' (a workspace's own is merged over it)
    import_name: ImportName | None = None


@dataclass(frozen=True, slots=True)
class _Workspace:
    project_id: int | None
    label: str | None
    region: str | None
    placeholders: dict[str | None, str]  # what each placeholder stands for, "" for literal text
    imports: bool = False  # it has an import_into (its own, or the defaults' with a project_id)
    target: ImportSpec | None = None  # its tasks' import but for the name; None when wrong


class Rules:
    """Applies the rules to levels and workspaces of one file, reporting into its sink; the specs
    it makes go to specs, their keys into seen (shared by all files, to find duplicates)."""

    def __init__(
        self,
        sink: Sink,
        seen: dict[tuple[str, int, str], str],
        imports: dict[tuple[str, int, str], str],
    ) -> None:
        self.sink = sink
        self.seen = seen
        self.imports = imports  # like seen, for the import tasks
        self.specs: list[ExportSpec] = []

    def retract(self) -> None:
        """Forget the specs made so far, and their keys."""
        for spec in self.specs:
            del self.seen[spec.key.region, spec.key.project_id, spec.key.name]
            if (target := spec.import_into) is not None:
                del self.imports[target.key.region, target.key.project_id, target.key.name]
        self.specs.clear()

    def defaults(self, node: Node, pairs: list[Pair] | None, tree: Tree | None) -> Level:
        """The defaults' level; tree is the value of its import_into, when a collection."""
        fields = self.sink.fields(node, pairs, DEFAULT_KEYS, "defaults", DEFAULT_HINTS)
        if fields is None:
            return Level()
        level = self._over(fields, Level())
        if (pair := fields.get("import_into")) is not None:
            level = level._replace(import_into=manifest_import.read(self.sink, pair, tree))
        return level

    def _over(self, fields: dict[str, Pair], base: Level) -> Level:
        """The level's own values over base's; a bad value is reported and the base kept."""
        if fields.keys().isdisjoint(DEFAULT_KEYS):
            return base
        sink = self.sink
        region, mode, status = base.region, base.export_mode, base.status
        description, name, since = base.description, base.name, base.since
        bad_region, bad_mode, profile = base.bad_region, base.bad_mode, base.profile
        import_name = base.import_name
        if (pair := fields.get("profile")) is not None:
            text = manifest_values.profile(sink, pair[1], "profile")
            profile = profile if text is None else text
        if (pair := fields.get("region")) is not None:
            region = manifest_values.region(sink, pair[1], "region")
            bad_region = region is None
        if (pair := fields.get("export_mode")) is not None:
            chosen = sink.choice(pair[1], "export_mode", ExportMode)
            mode, bad_mode = (mode, True) if chosen is None else (chosen, False)
        if (pair := fields.get("export_object_status")) is not None:
            status = sink.choice(pair[1], "export_object_status", ObjectStatus) or status
        if (pair := fields.get("description")) is not None:
            text = manifest_values.free_text(sink, pair[1], "description")
            description = description if text is None else text
        if (pair := fields.get("name")) is not None:
            name = make_template(sink, pair[1], "name")
        if (pair := fields.get("incremental_since")) is not None:
            since = Since(pair[0], sink.instant(pair[1], "incremental_since"))
        if (pair := fields.get("import_name")) is not None:
            import_name = ImportName(pair[1], make_template(sink, pair[1], "import_name"))
        return Level(
            region,
            mode,
            status,
            description,
            name,
            since,
            bad_region,
            bad_mode,
            profile,
            base.import_into,
            import_name,
        )

    def workspace(
        self,
        node: Node,
        pairs: list[Pair] | None,
        tasks: Iterable[Item] | None,
        defaults: Level,
        tree: Tree | None,
    ) -> None:
        """One workspace: its own keys, then each of its tasks (tasks gives the items of its
        tasks list when that is a list; tree the value of its import_into, when a collection)."""
        sink = self.sink
        fields = sink.fields(node, pairs, _WORKSPACE_KEYS, "workspace", NO_HINTS)
        if fields is None:
            return
        project_id = label = None
        if (pair := fields.get("project_id")) is None:
            sink.at(node, "workspace is missing required key 'project_id'")
        else:
            project_id = manifest_values.project_id(sink, pair[1], "project_id")
        if (pair := fields.get("label")) is not None and (
            label := sink.text(pair[1], "label")
        ) is not None:
            label = sys.intern(label)
        level = self._over(fields, defaults)
        if level.region is None and not level.bad_region:
            sink.at(node, "workspace has no region: set region here or in defaults")
        placeholders = {None: "", "project_id": str(project_id), "label": label or ""}
        placeholders["region"] = level.region or ""
        imports, target = self._import_into(fields, level, tree)
        if imports and defaults.import_name is not None:
            defaults.import_name.used = True
        workspace = _Workspace(project_id, label, level.region, placeholders, imports, target)
        if (pair := fields.get("tasks")) is None:
            self._emit(workspace, level, node, None)
        elif tasks is None:
            sink.wrong(pair[1], "tasks", "a list")
        else:
            empty = True
            for task, task_pairs in tasks:
                empty = False
                own = sink.fields(task, task_pairs, _TASK_KEYS, "task", _TASK_HINTS)
                if own is not None:
                    task_level = self._over(own, level)
                    self._emit(workspace, task_level, task, own)
                    if task_level.since is not level.since:
                        self.check_used(task_level.since, "this task is not INCREMENTAL")
                    if not imports and task_level.import_name is not level.import_name:
                        self._no_import(task_level.import_name, "this task's workspace")
            if empty:
                sink.at(pair[1], "tasks is empty: omit it for one task from the defaults")
        if level.since is not defaults.since:
            self.check_used(level.since, "no INCREMENTAL task of this workspace uses it")
        if level.import_name is not defaults.import_name and not imports:
            self._no_import(level.import_name, "this workspace")

    def _import_into(
        self, fields: dict[str, Pair], level: Level, tree: Tree | None
    ) -> tuple[bool, ImportSpec | None]:
        """Whether the workspace has an import, and what its tasks share of it (see
        manifest_import.resolve)."""
        pair = fields.get("import_into")
        if pair is None and level.import_into is None:
            return False, None
        own = None if pair is None else manifest_import.read(self.sink, pair, tree)
        return manifest_import.resolve(
            self.sink, level.import_into, own, level.region, level.profile
        )

    def _no_import(self, import_name: ImportName | None, what: str) -> None:
        if import_name is not None:
            self.sink.at(
                import_name.node,
                f"import_name needs an import, but {what} has no import_into "
                "(its own, or one with a project_id in defaults)",
            )

    def check_used(self, since: Since | None, tail: str) -> None:
        if since is not None and since.ms is not None and not since.used:
            self.sink.at(
                since.node, f"incremental_since only applies to INCREMENTAL exports; {tail}"
            )

    def check_import_name_used(self, import_name: ImportName | None) -> None:
        """defaults' import_name: a problem when no workspace of the file has an import."""
        if import_name is not None and not import_name.used:
            self.sink.at(
                import_name.node,
                "import_name only applies to imports; no workspace in this file has import_into",
            )

    def _emit(self, ws: _Workspace, level: Level, site: Node, own: dict[str, Pair] | None) -> None:
        """One task: its name, its mode and since, its import, then a spec unless its key or its
        import's is taken. own: the task's own keys (None for a workspace's one task)."""
        sink = self.sink
        name = make_name(sink, ws, level.name, site, None if own is None else own.get("name"))
        mode = level.export_mode or ExportMode.FULL
        since = None
        if level.bad_mode:
            if level.since is not None:
                level.since.used = True
        elif mode is ExportMode.INCREMENTAL:
            if level.since is None:
                sink.at(
                    site,
                    "export_mode INCREMENTAL needs incremental_since (epoch "
                    "milliseconds or an ISO-8601 instant)",
                )
            else:
                level.since.used = True
                since = level.since.ms
        shared = ws.target
        target = None if shared is None else self._import(ws, level, site, own, name)
        if name is None or ws.project_id is None or ws.region is None:
            return
        seen_key = (ws.region, ws.project_id, name)
        if (first := self.seen.get(seen_key)) is not None:
            sink.at(site, f"task {TaskKey(*seen_key)} is already defined at {first}")
            return
        source = sink.site(site)
        if shared is not None and not self._take(target, site, source):
            return
        self.seen[seen_key] = source
        key = TaskKey(ws.region, ws.project_id, name)
        self.specs.append(
            ExportSpec(
                key,
                mode,
                level.status,
                level.description,
                since,
                ws.label,
                source,
                level.profile,
                target,
            )
        )

    def _take(self, target: ImportSpec | None, site: Node, source: str) -> bool:
        """Note the import task as the task's at source, unless it is another's already or its
        name was reported as wrong."""
        if target is None:
            return False
        key = target.key
        if (first := self.imports.get((key.region, key.project_id, key.name))) is not None:
            self.sink.at(site, f"import task {key} is already the import of the task at {first}")
            return False
        self.imports[key.region, key.project_id, key.name] = source
        return True

    def _import(
        self,
        ws: _Workspace,
        level: Level,
        site: Node,
        own: dict[str, Pair] | None,
        name: str | None,
    ) -> ImportSpec | None:
        """The task's import, named by its import_name or else after the export task."""
        assert ws.target is not None
        if level.import_name is None:
            return None if name is None else manifest_import.named(ws.target, name)
        pair = None if own is None else own.get("import_name")
        import_name = make_name(
            self.sink, ws, level.import_name.template, site, pair, "import_name"
        )
        return None if import_name is None else manifest_import.named(ws.target, import_name)
