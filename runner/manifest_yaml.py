"""YAML values with positions: nodes known by the events that start them, tags resolved lazily,
and typed readers that report FILE:LINE:COL."""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import math
import re
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeAlias, TypeVar

from yaml.events import CollectionStartEvent, MappingStartEvent, ScalarEvent
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # PyYAML built without libyaml: same results, slower
    from yaml import SafeLoader as Loader  # type: ignore[assignment]

__all__ = ["Loader", "Node", "Pair", "Problem", "Sink", "describe", "gc_paused", "tag"]

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
MAX_DIGITS = 19  # 2**63 - 1, the largest id, has 19

E = TypeVar("E", bound=StrEnum)

Node: TypeAlias = ScalarEvent | CollectionStartEvent
"""A node, known by the event that starts it: a scalar's event holds its text; a collection's
contents are read by the walker, or skipped. No node tree is ever built."""
Pair: TypeAlias = tuple[Node, Node]

_RESOLVER = Resolver()
# A plain scalar's tag depends on its text alone, and a manifest repeats the same keys and values
# thousands of times: remember the tag of the first few thousand texts.
_PLAIN_TAGS: dict[str, str] = {}
_PLAIN_TAGS_MAX = 4096


def tag(node: Node) -> str:
    """The node's tag, resolved as PyYAML's composer resolves it."""
    explicit = node.tag
    if explicit is not None and explicit != "!":
        return explicit
    if type(node) is ScalarEvent:
        if not node.implicit[0]:
            return STR  # quoted, or tagged '!': never resolved from the text
        found = _PLAIN_TAGS.get(node.value)
        if found is None:
            found = _RESOLVER.resolve(ScalarNode, node.value, node.implicit)  # type: ignore[no-untyped-call]
            if len(_PLAIN_TAGS) < _PLAIN_TAGS_MAX:
                _PLAIN_TAGS[node.value] = found
        return found
    return MAP if type(node) is MappingStartEvent else SEQ


@functools.cache
def _members(enum: type[E]) -> dict[str, E]:
    return {member.value: member for member in enum}


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
    found = tag(node)
    return _KINDS.get(found) or f"a value tagged {found!r}"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector: the loader makes no cycles, and the collector rescanning the
    specs while they pile up would cost more than the parse itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Sink:
    """Problems of one file, with the typed readers that report into it."""

    __slots__ = ("file", "now_ms", "problems")

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self.now_ms = int(time.time() * 1000)  # instants after this are in the future

    def add(self, line: int, column: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, column, message))

    def at(self, node: Node, message: str) -> None:
        mark = node.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.problems.append(Problem(self.file, line, column, message))

    def site(self, node: Node) -> str:
        mark = node.start_mark
        return f"{self.file}:{mark.line + 1 if mark is not None else 1}"

    def wrong(self, node: Node, what: str, expected: str) -> None:
        if tag(node) not in _KINDS:
            self.at(
                node, f"tag {tag(node)!r} is not allowed: a manifest uses plain YAML values only"
            )
        else:
            self.at(node, f"{what} must be {expected}, got {describe(node)}")

    # -- keys ----------------------------------------------------------------------------------

    def fields(
        self,
        node: Node,
        pairs: list[Pair] | None,
        allowed: Collection[str],
        what: str,
        hints: Mapping[str, str],
    ) -> dict[str, Pair] | None:
        """The known keys of a mapping (pairs is None when node is not one); unknown, duplicate
        and non-string keys are problems."""
        if pairs is None:
            self.wrong(node, what, "a mapping")
            return None
        out: dict[str, Pair] = {}
        for pair in pairs:
            node = pair[0]
            if type(node) is ScalarEvent and (key := node.value) in allowed and tag(node) == STR:
                if key not in out:
                    out[key] = pair
                else:
                    self.duplicate(node, key, out[key][0], what)
            else:
                self.key(node, allowed, what, hints)
        return out

    def key(
        self, node: Node, allowed: Collection[str], what: str, hints: Mapping[str, str]
    ) -> str | None:
        """The key's text when it is one of allowed; otherwise None, after reporting it."""
        if type(node) is ScalarEvent and node.value in allowed and tag(node) == STR:
            return node.value
        if tag(node) == MERGE:
            self.at(node, "merge keys ('<<') are not allowed: write the values out")
        elif type(node) is not ScalarEvent or tag(node) != STR:
            self.wrong(node, "a key", "a string")
        elif node.value in hints:
            self.at(node, hints[node.value])
        else:
            close = difflib.get_close_matches(node.value, list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.at(node, f"unknown key {node.value!r} in {what}{hint}")
        return None

    def duplicate(self, node: Node, key: str, first: Node, what: str) -> None:
        mark = first.start_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "1:1"
        self.at(node, f"duplicate key {key!r} in {what} (first at {where})")

    # -- values: each returns the value, or None after reporting a problem -------------------

    def text(self, node: Node, what: str) -> str | None:
        if type(node) is ScalarEvent and tag(node) == STR:
            return node.value
        self.wrong(node, what, "a string")
        return None

    def integer(self, node: Node, what: str) -> int | None:
        """A plain decimal integer: YAML 1.1 octal (012), hex, sexagesimal and booleans are
        refused, since an operator writing 012 does not mean 10."""
        if type(node) is ScalarEvent and tag(node) == INT:
            digits = len(node.value.lstrip("+-"))
            if digits > MAX_DIGITS:  # checked before int(), which refuses ~4,300 digits and up
                self.at(node, f"{what} has {digits} digits: at most {MAX_DIGITS} fit an id")
                return None
            if _DECIMAL.fullmatch(node.value):
                return int(node.value)
            self.at(node, f"{what} must be a plain decimal integer, got {node.value!r}")
            return None
        self.wrong(node, what, "an integer")
        return None

    def number(self, node: Node, what: str) -> float | None:
        if type(node) is ScalarEvent and tag(node) in (INT, FLOAT):
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

    def boolean(self, node: Node, what: str) -> bool | None:
        """true or false (YAML 1.1's yes/no and on/off too: they resolve to booleans)."""
        if type(node) is ScalarEvent and tag(node) == BOOL:
            return node.value.lower() in ("true", "yes", "on")
        self.wrong(node, what, "a boolean")
        return None

    def choice(self, node: Node, what: str, enum: type[E]) -> E | None:
        if type(node) is ScalarEvent and tag(node) == STR:
            members: dict[str, E] = _members(enum)
            if (member := members.get(node.value)) is not None:
                return member
        allowed = ", ".join(member.value for member in enum)
        shown = repr(node.value) if type(node) is ScalarEvent else describe(node)
        self.at(node, f"{what} must be one of {allowed}, got {shown}")
        return None

    def instant(self, node: Node, what: str) -> int | None:
        """Epoch milliseconds, from an integer or an ISO-8601 instant with a timezone. The text
        is read here, never through YAML's timestamp constructor, which drops the zone."""
        if type(node) is not ScalarEvent or tag(node) not in (INT, STR, TIMESTAMP):
            self.wrong(node, what, "epoch milliseconds or an ISO-8601 instant")
            return None
        raw = node.value
        if tag(node) == INT:
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
        if not SINCE_MIN <= value < SINCE_MAX:
            self.at(node, f"{what} {raw!r} is out of range: it must fall in 2000-2099")
            return None
        if value > self.now_ms:
            self.at(node, f"{what} {raw!r} is in the future: an export has nothing to take yet")
            return None
        return value
