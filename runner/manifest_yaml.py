"""YAML nodes with positions: safe composition and typed readers that report FILE:LINE:COL."""

from __future__ import annotations

import contextlib
import difflib
import gc
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # PyYAML built without libyaml: same results, slower
    from yaml import SafeLoader as Loader  # type: ignore[assignment]


class _Loader(Loader):
    """The safe loader with memoised tag resolution for plain scalars: their tag depends on their
    text alone, and a manifest repeats the same keys and values thousands of times."""

    _tags: ClassVar[dict[str, str]] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            tag = self._tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                if len(self._tags) < 4096:
                    self._tags[value] = tag
            return tag
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved


_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = _T + "str", _T + "int", _T + "float", _T + "bool", _T + "null"
TIMESTAMP, MAP, SEQ, MERGE = _T + "timestamp", _T + "map", _T + "seq", _T + "merge"
_KINDS = {
    STR: "a string",
    INT: "an integer",
    FLOAT: "a number",
    BOOL: "a boolean",
    NULL: "null",
    TIMESTAMP: "a timestamp",
    MAP: "a mapping",
    SEQ: "a list",
}
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# incremental_since must fall in [2000-01-01, 2100-01-01): anything else is a typo or a unit mix-up.
SINCE_MIN, SINCE_MAX = 946_684_800_000, 4_102_444_800_000

E = TypeVar("E", bound=StrEnum)
Pair = tuple[Node, Node]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a manifest, at a 1-based position."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


def describe(node: Node) -> str:
    """What a node is, in the words of the messages ("a string", "a list", …)."""
    return _KINDS.get(node.tag) or f"a value tagged {node.tag!r}"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector: a node tree holds no cycles, and the collector rescanning it
    while it grows would cost more than the parse itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Sink:
    """Problems of one file, with the typed readers that report into it."""

    __slots__ = ("file", "problems")

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems

    def add(self, line: int, column: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, column, message))

    def at(self, node: Node, message: str) -> None:
        mark = node.start_mark
        self.problems.append(Problem(self.file, mark.line + 1, mark.column + 1, message))

    def site(self, node: Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def wrong(self, node: Node, what: str, expected: str) -> None:
        if node.tag not in _KINDS:
            self.at(
                node, f"tag {node.tag!r} is not allowed: a manifest uses plain YAML values only"
            )
        else:
            self.at(node, f"{what} must be {expected}, got {describe(node)}")

    # -- loading -----------------------------------------------------------------------------

    def compose(self, path: Path) -> Node | None:
        """The file's node tree, or None after reporting why there is none."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.add(1, 1, f"cannot read the file: {exc.strerror or exc}")
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self._at_offset(data[: exc.start].decode("utf-8", "replace"), "the file is not UTF-8")
            return None
        try:
            # Anchors and aliases can only occur where these characters do; scan events only then.
            if ("&" in text or "*" in text) and self._anchors(text):
                return None
            with gc_paused():
                root = yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = "; ".join(x for x in (exc.context, exc.problem) if x)
            if mark is None:
                self.add(1, 1, f"YAML syntax error: {what}")
            else:
                self.add(mark.line + 1, mark.column + 1, f"YAML syntax error: {what}")
            return None
        except yaml.reader.ReaderError as exc:
            # libyaml counts the offset in UTF-8 bytes of the text it was given.
            before = text.encode()[: exc.position].decode("utf-8", "replace")
            char = chr(exc.character) if isinstance(exc.character, int) else exc.character
            self._at_offset(before, f"character {char!r} is not allowed: {exc.reason}")
            return None
        if root is None:
            self.add(1, 1, "file is empty")
        return root

    def _at_offset(self, before: str, message: str) -> None:
        line = before.count("\n") + 1
        self.add(line, len(before) - (before.rfind("\n") + 1) + 1, message)

    def _anchors(self, text: str) -> bool:
        """Report every anchor and alias; True when there was one. Aliases would let one task
        stand for many and hide what a manifest asks for, so a manifest spells everything out."""
        found = False
        for event in yaml.parse(text, Loader=Loader):
            if isinstance(event, AliasEvent):
                found = True
                self._at_mark(event, f"alias '*{event.anchor}' is not allowed: write the value out")
            elif isinstance(event, NodeEvent) and event.anchor is not None:
                found = True
                self._at_mark(event, f"anchor '&{event.anchor}' is not allowed: write values out")
        return found

    def _at_mark(self, event: NodeEvent, message: str) -> None:
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.add(line, column, message)

    # -- readers: each returns the value, or None after reporting a problem -------------------

    def fields(
        self,
        node: Node,
        allowed: Collection[str],
        what: str,
        hints: Mapping[str, str],
    ) -> dict[str, Pair] | None:
        """The known keys of a mapping; unknown, duplicate and non-string keys are problems."""
        if node.__class__ is not MappingNode or node.tag != MAP:
            self.wrong(node, what, "a mapping")
            return None
        out: dict[str, Pair] = {}
        for pair in node.value:
            key_node = pair[0]
            key = key_node.value
            if key_node.__class__ is ScalarNode and key_node.tag == STR and key in allowed:
                if key not in out:
                    out[key] = pair
                    continue
                first = out[key][0].start_mark
                where = f"{first.line + 1}:{first.column + 1}"
                self.at(key_node, f"duplicate key {key!r} in {what} (first at {where})")
            else:
                self._bad_key(key_node, allowed, what, hints)
        return out

    def _bad_key(
        self, node: Node, allowed: Collection[str], what: str, hints: Mapping[str, str]
    ) -> None:
        if node.tag == MERGE:
            self.at(node, "merge keys ('<<') are not allowed: write the values out")
        elif node.__class__ is not ScalarNode or node.tag != STR:
            self.wrong(node, "a key", "a string")
        elif node.value in hints:
            self.at(node, hints[node.value])
        else:
            close = difflib.get_close_matches(node.value, list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.at(node, f"unknown key {node.value!r} in {what}{hint}")

    def items(self, node: Node, what: str) -> list[Node] | None:
        if node.__class__ is not SequenceNode or node.tag != SEQ:
            self.wrong(node, what, "a list")
            return None
        items: list[Node] = node.value
        return items

    def text(self, node: Node, what: str) -> str | None:
        if node.__class__ is ScalarNode and node.tag == STR:
            value: str = node.value
            return value
        self.wrong(node, what, "a string")
        return None

    def integer(self, node: Node, what: str) -> int | None:
        """A plain decimal integer: YAML 1.1 octal (012), hex, sexagesimal and booleans are
        refused, since an operator writing 012 does not mean 10."""
        if node.__class__ is ScalarNode and node.tag == INT:
            if _DECIMAL.fullmatch(node.value):
                return int(node.value)
            self.at(node, f"{what} must be a plain decimal integer, got {node.value!r}")
            return None
        self.wrong(node, what, "an integer")
        return None

    def number(self, node: Node, what: str) -> float | None:
        if node.__class__ is ScalarNode and node.tag in (INT, FLOAT):
            try:
                value = float(node.value)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                return value
            self.at(node, f"{what} must be a finite number, got {node.value!r}")
            return None
        self.wrong(node, what, "a number")
        return None

    def choice(self, node: Node, what: str, enum: type[E]) -> E | None:
        if node.__class__ is ScalarNode and node.tag == STR:
            try:
                return enum(node.value)
            except ValueError:
                pass
        allowed = ", ".join(member.value for member in enum)
        shown = repr(node.value) if node.__class__ is ScalarNode else describe(node)
        self.at(node, f"{what} must be one of {allowed}, got {shown}")
        return None

    def instant(self, node: Node, what: str) -> int | None:
        """Epoch milliseconds, from an integer or an ISO-8601 instant with a timezone. The text
        is read here, never through YAML's timestamp constructor, which drops the zone."""
        if node.__class__ is not ScalarNode or node.tag not in (INT, STR, TIMESTAMP):
            self.wrong(node, what, "epoch milliseconds or an ISO-8601 instant")
            return None
        raw: str = node.value
        if node.tag == INT:
            value = self.integer(node, what)
            if value is None:
                return None
            if SINCE_MIN // 1000 <= value < SINCE_MAX // 1000:
                self.at(node, f"{what} {value} looks like epoch seconds: it takes milliseconds")
                return None
        else:
            try:
                when = datetime.fromisoformat(raw)
            except ValueError:
                self.at(
                    node,
                    f"{what} must be epoch milliseconds or an ISO-8601 instant such "
                    f"as 2020-05-20T00:00:00Z, got {raw!r}",
                )
                return None
            if when.tzinfo is None:
                self.at(node, f"{what} {raw!r} needs a timezone, such as Z or +08:00")
                return None
            value = (when - _EPOCH) // _MS
        if SINCE_MIN <= value < SINCE_MAX:
            return value
        self.at(node, f"{what} {raw!r} is out of range: it must fall in 2000-2099")
        return None
