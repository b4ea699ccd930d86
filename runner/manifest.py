"""Manifests (version 1): YAML files in, frozen ExportSpecs out, every problem at FILE:LINE:COL.

Files are composed into YAML nodes (safe loading, positions kept) and walked here; no YAML
constructor ever runs. Defaults apply within their own file; settings and tasks are merged across
files. All problems of all files are collected and raised together as one ManifestError.
"""

from __future__ import annotations

import re
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import Node

from runner.manifest_yaml import Pair, Problem, Sink, gc_paused
from runner.models import ExportMode, ExportSpec, Manifest, ObjectStatus, Settings, TaskKey

__all__ = ["ManifestError", "Problem", "expand_paths", "load_manifests"]

SUPPORTED_VERSION = 1
MIN_PROJECT_ID = 2  # the smallest ProjectId DataWorks accepts
MAX_PROJECT_ID = 2**63 - 1
# A guard, not a documented service limit: names longer than this, or with control or other
# invisible characters, are almost certainly a mistake in the manifest.
MAX_NAME_LENGTH = 128
PLACEHOLDERS = ("project_id", "region", "label")
# Region ids go into endpoint host names, so only their plain form is accepted (cn-shanghai,
# ap-southeast-1, cn-shanghai-finance-1).
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)+")
_FORMATTER = string.Formatter()

_COMMON = (
    "region",
    "export_mode",
    "export_object_status",
    "description",
    "name",
    "incremental_since",
)
_TOP_KEYS = frozenset({"version", "settings", "defaults", "workspaces"})
_SETTINGS_KEYS = frozenset({"rate", "concurrency"})
_DEFAULT_KEYS = frozenset(_COMMON)
_WORKSPACE_KEYS = frozenset({"project_id", "label", "tasks", *_COMMON})
_TASK_KEYS = _DEFAULT_KEYS - {"region"}
_NO_HINTS: dict[str, str] = {}
_TASK_HINTS = {
    key: f"{key!r} belongs to the workspace, not to one of its tasks"
    for key in ("region", "project_id", "label", "tasks")
}
_DEFAULT_HINTS = {
    key: f"{key!r} belongs to a workspace, not to defaults" for key in ("project_id", "label")
}


class ManifestError(Exception):
    """Every problem found in every manifest file, sorted by file, line and column."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.column)))
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True, slots=True)
class _Template:
    """A name or name template: literal text and placeholders; parts is None when invalid."""

    text: str
    parts: tuple[tuple[str, str | None], ...] | None
    uses_label: bool = False


@dataclass(slots=True)
class _Since:
    """An incremental_since as written at one level, and whether any INCREMENTAL task took it."""

    node: Node
    ms: int | None
    used: bool = False


@dataclass(frozen=True, slots=True)
class _Level:
    """What a level (defaults, a workspace, a task) sets, over the level above it."""

    region: str | None = None
    export_mode: ExportMode | None = None
    status: ObjectStatus | None = None
    description: str | None = None
    name: _Template | None = None
    since: _Since | None = None
    bad_region: bool = False  # reported already: say nothing more about it
    bad_mode: bool = False  # reported already: no verdict on incremental_since either


@dataclass(frozen=True, slots=True)
class _Workspace:
    project_id: int | None
    label: str | None
    region: str | None


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the *.yaml / *.yml files directly inside folders (not recursive),
    sorted by name; a path given twice is read once. Raises ManifestError for missing paths."""
    problems: list[Problem] = []
    files = _expand(paths, problems)
    if problems:
        raise ManifestError(problems)
    return files


def load_manifests(paths: Sequence[str | Path]) -> Manifest:
    """Load and validate manifests; raises ManifestError with all problems of all files."""
    problems: list[Problem] = []
    if not paths:
        raise ManifestError([Problem("-", 1, 1, "no manifest given")])
    loader = _Loader(problems)
    with gc_paused():
        for path in _expand(paths, problems):
            loader.load(path)
    if problems:
        raise ManifestError(problems)
    return Manifest(specs=tuple(loader.specs), settings=loader.merged_settings())


def _expand(paths: Sequence[str | Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            found = [p for p in found if p.is_file()]
            if not found:
                problems.append(Problem(str(path), 1, 1, "folder has no .yaml or .yml files"))
        elif path.is_file():
            found = [path]
        elif path.exists():  # a FIFO or a device would block or never end
            problems.append(Problem(str(path), 1, 1, "not a regular file"))
            continue
        else:
            problems.append(Problem(str(path), 1, 1, "no such file or folder"))
            continue
        for file in found:
            if (real := file.resolve()) not in seen:
                seen.add(real)
                files.append(file)
    return files


class _Loader:
    """Walks each file's nodes; keeps what spans files: tasks seen, specs, settings."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.specs: list[ExportSpec] = []
        self.seen: dict[TaskKey, str] = {}
        self.settings: dict[str, tuple[float | int, str, str]] = {}  # value, as written, where
        self.sink = Sink("", problems)

    def merged_settings(self) -> Settings:
        rate = self.settings.get("rate")
        concurrency = self.settings.get("concurrency")
        return Settings(
            rate=None if rate is None else float(rate[0]),
            concurrency=None if concurrency is None else int(concurrency[0]),
        )

    def load(self, path: Path) -> None:
        sink = self.sink = Sink(str(path), self.problems)
        root = sink.compose(path)
        if root is None:
            return
        top = sink.fields(root, _TOP_KEYS, "the manifest", _NO_HINTS)
        if top is None:
            return
        if "version" not in top:
            sink.at(
                root,
                f"missing required key 'version' (this runner reads version {SUPPORTED_VERSION})",
            )
        elif not self._version(top["version"][1]):
            return  # another format: checking it against version 1 rules would only mislead
        if "settings" in top:
            self._settings(top["settings"][1])
        defaults = _Level()
        if "defaults" in top:
            defaults = self._level(top["defaults"][1], defaults, "defaults", _DEFAULT_KEYS)
        if "workspaces" not in top:
            sink.at(root, "missing required key 'workspaces'")
            return
        workspaces = sink.items(top["workspaces"][1], "workspaces")
        for node in workspaces or ():
            self._workspace(node, defaults)
        self._check_used(defaults.since, "no INCREMENTAL task in this file uses it")

    def _version(self, node: Node) -> bool:
        version = self.sink.integer(node, "version")
        if version is not None and version != SUPPORTED_VERSION:
            self.sink.at(
                node,
                f"unsupported manifest version {version} (this runner reads "
                f"version {SUPPORTED_VERSION})",
            )
            return False
        return True

    def _settings(self, node: Node) -> None:
        sink = self.sink
        fields = sink.fields(node, _SETTINGS_KEYS, "settings", _NO_HINTS)
        for key, (_, value_node) in (fields or {}).items():
            value: float | int | None
            if key == "rate":
                value = sink.number(value_node, "settings.rate")
            else:
                value = sink.integer(value_node, "settings.concurrency")
            if value is None:
                continue
            if value <= 0:
                sink.at(value_node, f"settings.{key} must be positive, got {value_node.value}")
                continue
            if key not in self.settings:
                self.settings[key] = (value, value_node.value, sink.site(value_node))
            elif self.settings[key][0] != value:
                _, first, where = self.settings[key]
                sink.at(
                    value_node, f"settings.{key} is {value_node.value} here but {first} at {where}"
                )

    def _level(self, node: Node, base: _Level, what: str, allowed: frozenset[str]) -> _Level:
        hints = _DEFAULT_HINTS if what == "defaults" else _NO_HINTS
        fields = self.sink.fields(node, allowed, what, hints)
        return base if fields is None else self._over(fields, base)

    def _over(self, fields: dict[str, Pair], base: _Level) -> _Level:
        """The level's own values over base's; a bad value is reported and the base kept."""
        if not fields.keys() & _DEFAULT_KEYS:
            return base
        sink = self.sink
        region, mode, status = base.region, base.export_mode, base.status
        description, name, since = base.description, base.name, base.since
        bad_region, bad_mode = base.bad_region, base.bad_mode
        if (pair := fields.get("region")) is not None:
            region = sink.text(pair[1], "region")
            if region is not None and not _REGION.fullmatch(region):
                sink.at(pair[1], f"region {region!r} is not a region id such as cn-shanghai")
                region = None
            region = None if region is None else sys.intern(region)
            bad_region = region is None
        if (pair := fields.get("export_mode")) is not None:
            chosen = sink.choice(pair[1], "export_mode", ExportMode)
            mode, bad_mode = (mode, True) if chosen is None else (chosen, False)
        if (pair := fields.get("export_object_status")) is not None:
            status = sink.choice(pair[1], "export_object_status", ObjectStatus) or status
        if (pair := fields.get("description")) is not None:
            text = sink.text(pair[1], "description")
            if text is not None and any(c < " " and c not in "\t\n" for c in text):
                sink.at(pair[1], "description has control characters")
                text = None
            description = description if text is None else sys.intern(text)
        if (pair := fields.get("name")) is not None:
            text = sink.text(pair[1], "name")
            name = _Template("", None) if text is None else self._template(pair[1], text)
        if (pair := fields.get("incremental_since")) is not None:
            since = _Since(pair[0], sink.instant(pair[1], "incremental_since"))
        return _Level(region, mode, status, description, name, since, bad_region, bad_mode)

    def _template(self, node: Node, text: str) -> _Template:
        if "{" not in text and "}" not in text:
            return _Template(text, ((text, None),))
        parts: list[tuple[str, str | None]] = []
        try:
            for literal, field, spec, conversion in _FORMATTER.parse(text):
                if field is not None and (field not in PLACEHOLDERS or spec or conversion):
                    bad = "{" + field + (f"!{conversion}" if conversion else "")
                    bad += (f":{spec}" if spec else "") + "}"
                    return self._unstable(node, text, f"{bad} is not a stable placeholder")
                parts.append((literal, field))
        except ValueError:
            return self._unstable(node, text, "its braces do not balance ({{ and }} for braces)")
        return _Template(text, tuple(parts), uses_label=any(f == "label" for _, f in parts))

    def _unstable(self, node: Node, text: str, detail: str) -> _Template:
        self.sink.at(
            node,
            f"name template {text!r} is not stable across reruns: {detail}; "
            "only {project_id}, {region} and {label} may appear",
        )
        return _Template(text, None)

    def _workspace(self, node: Node, defaults: _Level) -> None:
        sink = self.sink
        fields = sink.fields(node, _WORKSPACE_KEYS, "workspace", _NO_HINTS)
        if fields is None:
            return
        project_id = label = None
        if (pair := fields.get("project_id")) is None:
            sink.at(node, "workspace is missing required key 'project_id'")
        elif (project_id := sink.integer(pair[1], "project_id")) is not None and not (
            MIN_PROJECT_ID <= project_id <= MAX_PROJECT_ID
        ):
            sink.at(
                pair[1],
                f"project_id must be at least {MIN_PROJECT_ID} (and fit in 64 "
                f"bits), got {project_id}",
            )
            project_id = None
        if (pair := fields.get("label")) is not None and (
            label := sink.text(pair[1], "label")
        ) is not None:
            label = sys.intern(label)
        level = self._over(fields, defaults)
        if level.region is None and not level.bad_region:
            sink.at(node, "workspace has no region: set region here or in defaults")
        workspace = _Workspace(project_id, label, level.region)
        if (pair := fields.get("tasks")) is None:
            self._emit(workspace, level, node, None)
        elif (tasks := sink.items(pair[1], "tasks")) is not None:
            if not tasks:
                sink.at(pair[1], "tasks is empty: omit it for one task from the defaults")
            for task in tasks:
                own = sink.fields(task, _TASK_KEYS, "task", _TASK_HINTS)
                if own is not None:
                    task_level = self._over(own, level)
                    self._emit(workspace, task_level, task, own.get("name"))
                    if task_level.since is not level.since:
                        self._check_used(task_level.since, "this task is not INCREMENTAL")
        if level.since is not defaults.since:
            self._check_used(level.since, "no INCREMENTAL task of this workspace uses it")

    def _check_used(self, since: _Since | None, tail: str) -> None:
        if since is not None and since.ms is not None and not since.used:
            self.sink.at(
                since.node, f"incremental_since only applies to INCREMENTAL exports; {tail}"
            )

    def _emit(self, ws: _Workspace, level: _Level, site: Node, name_pair: Pair | None) -> None:
        """One task: its name, its mode and since, then a spec unless the key is taken."""
        sink = self.sink
        name = self._name(ws, level.name, site, name_pair)
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
        if name is None or ws.project_id is None or ws.region is None:
            return
        key = TaskKey(ws.region, ws.project_id, name)
        source = sink.site(site)
        if (first := self.seen.get(key)) is not None:
            sink.at(site, f"task {key} is already defined at {first}")
            return
        self.seen[key] = source
        self.specs.append(
            ExportSpec(key, mode, level.status, level.description, since, ws.label, source)
        )

    def _name(
        self, ws: _Workspace, template: _Template | None, site: Node, name_pair: Pair | None
    ) -> str | None:
        if template is None:
            self.sink.at(site, "task has no name: set name here or a name template in defaults")
            return None
        parts = template.parts
        if parts is None:
            return None  # reported where the template is written
        if len(parts) == 1 and parts[0][1] is None:
            name = parts[0][0]
        elif template.uses_label and ws.label is None:
            self.sink.at(
                site,
                f"name template {template.text!r} uses {{label}}, but this workspace has no label",
            )
            return None
        elif ws.project_id is None or ws.region is None:
            return None
        else:
            values = {"project_id": str(ws.project_id), "region": ws.region, "label": ws.label}
            name = "".join(literal + (values[f] or "" if f else "") for literal, f in parts)
        where = site if name_pair is None else name_pair[1]
        if not name.strip():
            self.sink.at(where, "task name is empty")
        elif len(name) > MAX_NAME_LENGTH:
            self.sink.at(
                where, f"task name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
            )
        elif not name.isprintable() or name != name.strip():
            self.sink.at(
                where, f"task name {name!r} has control, invisible or surrounding blank characters"
            )
        else:
            return name
        return None
