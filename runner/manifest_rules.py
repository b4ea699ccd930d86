"""The rules for defaults, workspaces and tasks: each level over the one above it, name templates,
names, incremental_since, and one ExportSpec per task. One workspace at a time."""

from __future__ import annotations

import re
import string
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from runner.manifest_events import Item
from runner.manifest_yaml import Node, Pair, Sink
from runner.models import ExportMode, ExportSpec, ObjectStatus, TaskKey

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
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")  # control characters but tab and newline

_COMMON = (
    "region",
    "export_mode",
    "export_object_status",
    "description",
    "name",
    "incremental_since",
    "profile",
)
DEFAULT_KEYS = frozenset(_COMMON)
_WORKSPACE_KEYS = frozenset({"project_id", "label", "tasks", *_COMMON})
_TASK_KEYS = DEFAULT_KEYS - {"region", "profile"}
NO_HINTS: dict[str, str] = {}
_TASK_HINTS = {
    key: f"{key!r} belongs to the workspace, not to one of its tasks"
    for key in ("region", "project_id", "label", "tasks", "profile")
}
# A credentials profile's name (aliyun-cli or credentials.ini): printable, no blanks.
_PROFILE = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
DEFAULT_HINTS = {
    key: f"{key!r} belongs to a workspace, not to defaults" for key in ("project_id", "label")
}


@dataclass(frozen=True, slots=True)
class _Template:
    """A name or name template: literal text and placeholders; parts is None when invalid."""

    text: str
    parts: tuple[tuple[str, str | None], ...] | None
    uses_label: bool = False


# Valid templates by their text: tasks of many workspaces share a few names and templates.
_TEMPLATES: dict[str, _Template] = {}
_TEMPLATES_MAX = 4096


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
    name: _Template | None = None
    since: Since | None = None
    bad_region: bool = False  # reported already: say nothing more about it
    bad_mode: bool = False  # reported already: no verdict on incremental_since either
    profile: str | None = None  # the credentials profile the workspace's requests are signed with


@dataclass(frozen=True, slots=True)
class _Workspace:
    project_id: int | None
    label: str | None
    region: str | None
    placeholders: dict[str | None, str]  # what each placeholder stands for, "" for literal text


class Rules:
    """Applies the rules to levels and workspaces of one file, reporting into its sink; the specs
    it makes go to specs, their keys into seen (shared by all files, to find duplicates)."""

    def __init__(self, sink: Sink, seen: dict[tuple[str, int, str], str]) -> None:
        self.sink = sink
        self.seen = seen
        self.specs: list[ExportSpec] = []

    def retract(self) -> None:
        """Forget the specs made so far, and their keys."""
        for spec in self.specs:
            del self.seen[spec.key.region, spec.key.project_id, spec.key.name]
        self.specs.clear()

    def defaults(self, node: Node, pairs: list[Pair] | None) -> Level:
        fields = self.sink.fields(node, pairs, DEFAULT_KEYS, "defaults", DEFAULT_HINTS)
        return Level() if fields is None else self._over(fields, Level())

    def _over(self, fields: dict[str, Pair], base: Level) -> Level:
        """The level's own values over base's; a bad value is reported and the base kept."""
        if fields.keys().isdisjoint(DEFAULT_KEYS):
            return base
        sink = self.sink
        region, mode, status = base.region, base.export_mode, base.status
        description, name, since = base.description, base.name, base.since
        bad_region, bad_mode, profile = base.bad_region, base.bad_mode, base.profile
        if (pair := fields.get("profile")) is not None:
            text = sink.text(pair[1], "profile")
            if text is not None and not _PROFILE.fullmatch(text):
                sink.at(pair[1], f"profile {text!r} is not a profile name (letters, digits, ._@+-)")
                text = None
            profile = profile if text is None else sys.intern(text)
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
            if text is not None and _CONTROL.search(text):
                sink.at(pair[1], "description has control characters")
                text = None
            description = description if text is None else sys.intern(text)
        if (pair := fields.get("name")) is not None:
            text = sink.text(pair[1], "name")
            name = _Template("", None) if text is None else self._template(pair[1], text)
        if (pair := fields.get("incremental_since")) is not None:
            since = Since(pair[0], sink.instant(pair[1], "incremental_since"))
        return Level(region, mode, status, description, name, since, bad_region, bad_mode, profile)

    def _template(self, node: Node, text: str) -> _Template:
        if (known := _TEMPLATES.get(text)) is not None:
            return known
        if "{" not in text and "}" not in text:
            template = _Template(text, ((text, None),))
        else:
            template = self._parse_template(node, text)
        if template.parts is not None and len(_TEMPLATES) < _TEMPLATES_MAX:
            _TEMPLATES[text] = template
        return template

    def _parse_template(self, node: Node, text: str) -> _Template:
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

    def workspace(
        self, node: Node, pairs: list[Pair] | None, tasks: Iterable[Item] | None, defaults: Level
    ) -> None:
        """One workspace: its own keys, then each of its tasks (tasks gives the items of its
        tasks list when that is a list)."""
        sink = self.sink
        fields = sink.fields(node, pairs, _WORKSPACE_KEYS, "workspace", NO_HINTS)
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
        placeholders = {None: "", "project_id": str(project_id), "label": label or ""}
        placeholders["region"] = level.region or ""
        workspace = _Workspace(project_id, label, level.region, placeholders)
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
                    self._emit(workspace, task_level, task, own.get("name"))
                    if task_level.since is not level.since:
                        self.check_used(task_level.since, "this task is not INCREMENTAL")
            if empty:
                sink.at(pair[1], "tasks is empty: omit it for one task from the defaults")
        if level.since is not defaults.since:
            self.check_used(level.since, "no INCREMENTAL task of this workspace uses it")

    def check_used(self, since: Since | None, tail: str) -> None:
        if since is not None and since.ms is not None and not since.used:
            self.sink.at(
                since.node, f"incremental_since only applies to INCREMENTAL exports; {tail}"
            )

    def _emit(self, ws: _Workspace, level: Level, site: Node, name_pair: Pair | None) -> None:
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
        seen_key = (ws.region, ws.project_id, name)
        if (first := self.seen.get(seen_key)) is not None:
            sink.at(site, f"task {TaskKey(*seen_key)} is already defined at {first}")
            return
        self.seen[seen_key] = source = sink.site(site)
        key = TaskKey(ws.region, ws.project_id, name)
        self.specs.append(
            ExportSpec(
                key, mode, level.status, level.description, since, ws.label, source, level.profile
            )
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
            values = ws.placeholders
            name = "".join([literal + values[field] for literal, field in parts])
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
