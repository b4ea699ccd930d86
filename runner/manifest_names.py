"""Names and name templates (a task's name, its import's import_name): each template parsed once
per text, made into a workspace's name per task, and checked, problems with their positions."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Protocol

from runner.manifest_yaml import Node, Pair, Sink

# A guard, not a documented service limit: names longer than this, or with control or other
# invisible characters, are almost certainly a mistake in the manifest.
MAX_NAME_LENGTH = 128
PLACEHOLDERS = ("project_id", "region", "label")
_FORMATTER = string.Formatter()


@dataclass(frozen=True, slots=True)
class Template:
    """A name or name template: literal text and placeholders; parts is None when invalid."""

    text: str
    parts: tuple[tuple[str, str | None], ...] | None
    uses_label: bool = False


# Valid templates by their text: tasks of many workspaces share a few names and templates.
_TEMPLATES: dict[str, Template] = {}
_TEMPLATES_MAX = 4096


class Workspace(Protocol):
    """What a name template is made with: the workspace's own values."""

    @property
    def project_id(self) -> int | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def placeholders(self) -> dict[str | None, str]: ...  # "" for literal text (None)


def make_template(sink: Sink, node: Node, key: str) -> Template:
    """The template node holds, the value of key (name or import_name)."""
    if (text := sink.text(node, key)) is None:
        return Template("", None)
    if (known := _TEMPLATES.get(text)) is not None:
        return known
    if "{" not in text and "}" not in text:
        found = Template(text, ((text, None),))
    else:
        found = _parse(sink, node, text, key)
    if found.parts is not None and len(_TEMPLATES) < _TEMPLATES_MAX:
        _TEMPLATES[text] = found
    return found


def _parse(sink: Sink, node: Node, text: str, key: str) -> Template:
    parts: list[tuple[str, str | None]] = []
    try:
        for literal, field, spec, conversion in _FORMATTER.parse(text):
            if field is not None and (field not in PLACEHOLDERS or spec or conversion):
                bad = "{" + field + (f"!{conversion}" if conversion else "")
                bad += (f":{spec}" if spec else "") + "}"
                return _unstable(sink, node, text, key, f"{bad} is not a stable placeholder")
            parts.append((literal, field))
    except ValueError:
        detail = "its braces do not balance ({{ and }} for braces)"
        return _unstable(sink, node, text, key, detail)
    return Template(text, tuple(parts), uses_label=any(f == "label" for _, f in parts))


def _unstable(sink: Sink, node: Node, text: str, key: str, detail: str) -> Template:
    sink.at(
        node,
        f"{key} template {text!r} is not stable across reruns: {detail}; "
        "only {project_id}, {region} and {label} may appear",
    )
    return Template(text, None)


def make_name(
    sink: Sink,
    ws: Workspace,
    template: Template | None,
    site: Node,
    pair: Pair | None,
    key: str = "name",
) -> str | None:
    """The name template makes for the workspace (key: name or import_name), or None after a
    problem; pair is the task's own key, where a problem with the name is reported (else at
    site, the task)."""
    if template is None:
        sink.at(site, "task has no name: set name here or a name template in defaults")
        return None
    parts = template.parts
    if parts is None:
        return None  # reported where the template is written
    if len(parts) == 1 and parts[0][1] is None:
        made = parts[0][0]
    elif template.uses_label and not ws.label:
        has = "no label" if ws.label is None else "an empty label"
        sink.at(
            site, f"{key} template {template.text!r} uses {{label}}, but this workspace has {has}"
        )
        return None
    elif ws.project_id is None or ws.region is None:
        return None
    else:
        values = ws.placeholders
        made = "".join([literal + values[field] for literal, field in parts])
    if made and len(made) <= MAX_NAME_LENGTH and made.isprintable() and made == made.strip():
        return made
    where = site if pair is None else pair[1]
    what = "task name" if key == "name" else "import name"
    if not made.strip():
        sink.at(where, f"{what} is empty")
    elif len(made) > MAX_NAME_LENGTH:
        sink.at(where, f"{what} is {len(made)} characters long; the limit is {MAX_NAME_LENGTH}")
    else:
        sink.at(where, f"{what} {made!r} has control, invisible or surrounding blank characters")
    return None
