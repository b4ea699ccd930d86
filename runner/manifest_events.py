"""A manifest file as its one document's events: the decoding check, the anchor scan, YAML errors
as positioned problems, and the few moves the walker makes (take a node, skip it, read a mapping,
stream a list). Nothing here holds more than the node being read, and the file's text is read a
chunk at a time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from runner import manifest_yaml
from runner.manifest_yaml import MAP, SEQ, STR, Node, Pair, Sink, tag

__all__ = ["Events", "Item", "Trail", "Tree", "is_list", "is_mapping", "is_text", "read"]

_CHUNK = 1 << 16  # characters per read of the decoding check
Item: TypeAlias = tuple[Node, list[Pair] | None]  # a list item, and its pairs if it is a mapping
# How many levels of mappings a Tree is read to: enough for import_into's deepest value (its
# calculate_engine_map's ODPS map's strings). Anything deeper is skipped, as wrong as it is.
TREE_DEPTH = 3


class Tree(NamedTuple):
    """A value read whole, a few levels deep: its node and, when it is a plain mapping read, its
    pairs, each value a Tree in turn. pairs is None for anything else: a scalar, a list, another
    tag, a mapping below TREE_DEPTH (their contents were skipped)."""

    node: Node
    pairs: list[tuple[Node, Tree]] | None = None


def is_mapping(node: Node) -> bool:
    return type(node) is MappingStartEvent and (node.tag is None or tag(node) == MAP)


def is_list(node: Node) -> bool:
    return type(node) is SequenceStartEvent and tag(node) == SEQ


def is_text(node: Node, text: str) -> bool:
    """Whether node is the string text (as a key of that name is)."""
    return type(node) is ScalarEvent and node.value == text and tag(node) == STR


class Events:
    """One document's events, read once, front to back. take() hands out the next node's start
    event; the caller then reads that node's contents (mapping, keys, items) or skips them."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[], Any]) -> None:
        self._get = get

    def take(self) -> Node:
        node: Node = self._get()
        return node

    def node(self) -> Node:
        """The next node, its contents (if it is a collection) skipped."""
        node: Node = self._get()
        if type(node) is not ScalarEvent:
            self._skip()
        return node

    def skip(self, node: Node) -> None:
        """Skip the contents of the node just taken."""
        if type(node) is not ScalarEvent:
            self._skip()

    def _skip(self) -> None:
        get = self._get
        depth = 1
        while depth:
            kind = type(get())
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1

    def mapping(self, node: Node) -> list[Pair] | None:
        """The pairs of the node just taken, each key and value whole (as node() takes them),
        when it is a plain mapping; otherwise None, and the node is skipped."""
        if not is_mapping(node):
            self.skip(node)
            return None
        get = self._get
        pairs: list[Pair] = []
        while type(key := get()) is not MappingEndEvent:
            if type(key) is not ScalarEvent:
                self._skip()
            value = get()
            if type(value) is not ScalarEvent:
                self._skip()
            pairs.append((key, value))
        return pairs

    def mapping_with_tree(self, node: Node, deep: str) -> tuple[list[Pair] | None, Tree | None]:
        """Like mapping(), and the value of the first key `deep`, when it is a collection, read
        whole as a Tree as well (None when there is no such key or its value is a scalar)."""
        if not is_mapping(node):
            self.skip(node)
            return None, None
        get = self._get
        pairs: list[Pair] = []
        tree = None
        while type(key := get()) is not MappingEndEvent:
            if type(key) is not ScalarEvent:
                self._skip()
            value = get()
            if type(value) is not ScalarEvent:
                if tree is None and is_text(key, deep):
                    tree = self.tree(value)
                else:
                    self._skip()
            pairs.append((key, value))
        return pairs, tree

    def tree(self, node: Node, depth: int = TREE_DEPTH) -> Tree:
        """The node just taken, read whole down to depth levels of mappings (see Tree)."""
        if depth <= 0 or not is_mapping(node):
            self.skip(node)
            return Tree(node)
        get = self._get
        pairs: list[tuple[Node, Tree]] = []
        while type(key := get()) is not MappingEndEvent:
            if type(key) is not ScalarEvent:
                self._skip()
            value = get()
            pairs.append(
                (key, Tree(value) if type(value) is ScalarEvent else self.tree(value, depth - 1))
            )
        return Tree(node, pairs)

    def mapping_with_list(
        self, node: Node, name: str, most: int, deep: str
    ) -> tuple[list[Pair] | None, list[Item] | None, Node | None, Tree | None]:
        """Like mapping(), but the value of the first key `name`, when it is a plain list, is read
        one level deeper: its items, each with its pairs when it is a plain mapping. A list of
        more than `most` items is skipped instead, and its start returned third (see Trail). The
        value of the first key `deep` is read whole, as mapping_with_tree() reads it, and returned
        last."""
        if not is_mapping(node):
            self.skip(node)
            return None, None, None, None
        get = self._get
        pairs: list[Pair] = []
        items: list[Item] | None = None
        spilled = tree = None
        seen = False
        for key in self.each_key():
            if seen or not is_text(key, name):
                value = get()
                if type(value) is not ScalarEvent:  # rare: a workspace's other values are scalars
                    if tree is None and is_text(key, deep):
                        tree = self.tree(value)
                    else:
                        self._skip()
                pairs.append((key, value))
                continue
            seen = True
            value = self.take()
            if is_list(value):
                items = self._items(most)
                spilled = value if items is None else None
            else:
                self.skip(value)
            pairs.append((key, value))
        return pairs, items, spilled, tree

    def _items(self, most: int) -> list[Item] | None:
        items: list[Item] = []
        for item in self.each_item():
            if len(items) == most:
                self.skip(item)
                self._skip()  # the rest of the list
                return None
            items.append((item, self.mapping(item)))
        return items

    def seek(self, node: Node) -> None:
        """Skip to just after the event that starts node, a node of another reading of the file."""
        kind, index, get = type(node), _index(node), self._get
        while (event := get()) is not None:
            if type(event) is kind and _index(event) == index:
                return
        raise ComposerError(None, None, "the file changed while it was read", None)

    def each_key(self) -> Iterator[Node]:
        """The keys of the mapping just taken, each whole; after each, the caller reads or skips
        its value."""
        get = self._get
        while type(key := get()) is not MappingEndEvent:
            if type(key) is not ScalarEvent:
                self._skip()
            yield key

    def each_item(self) -> Iterator[Node]:
        """The items of the list just taken; the caller reads or skips each one."""
        get = self._get
        while type(item := get()) is not SequenceEndEvent:
            yield item


def _index(node: Node) -> int:
    mark = node.start_mark
    return -1 if mark is None else mark.index


class Trail:
    """A second reading of a file, behind the first: it goes back for the lists the first one
    skipped, and only ever moves forward, so it costs at most one more parse of the file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stack = contextlib.ExitStack()
        self._events: Events | None = None

    def __enter__(self) -> Trail:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def items(self, node: Node) -> Iterator[Item]:
        """The items of the list node starts, each with its pairs when it is a plain mapping."""
        if self._events is None:
            self._events = Events(self._stack.enter_context(_parse(self._path)).get_event)
        events = self._events
        events.seek(node)
        for item in events.each_item():
            yield item, events.mapping(item)


def read(path: Path, sink: Sink, walk: Callable[[Events, Trail], None]) -> bool:
    """Hand the root of the file's one document to walk, as events. False, after reporting why in
    sink, when the file cannot be read, is not UTF-8, has anchors or aliases, or is not valid
    YAML: whatever walk found then counts for nothing (a YAML error may come after it)."""
    has_marks = _decodes(path, sink)
    if has_marks is None:
        return False
    try:
        # Anchors and aliases can only occur where these characters do; scan events only then.
        if has_marks and _anchors(path, sink):
            return False
        with _document(path) as events, Trail(path) as trail:
            if events is None:
                sink.add(1, 1, "file is empty")
            else:
                walk(events, trail)
    except OSError as exc:
        sink.add(1, 1, f"cannot read the file: {exc.strerror or exc}")
        return False
    except UnicodeDecodeError:  # the file changed since it was checked
        _not_utf8(path, sink)
        return False
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(x for x in (exc.context, exc.problem) if x)
        if mark is None:
            sink.add(1, 1, f"YAML syntax error: {what}")
        else:
            sink.add(mark.line + 1, mark.column + 1, f"YAML syntax error: {what}")
        return False
    except yaml.reader.ReaderError as exc:
        # libyaml counts the offset in UTF-8 bytes of the text it was given.
        text = path.read_bytes().decode("utf-8-sig")
        before = text.encode()[: exc.position].decode("utf-8", "replace")
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        _at_offset(sink, before, f"character {char!r} is not allowed: {exc.reason}")
        return False
    return True


def _decodes(path: Path, sink: Sink) -> bool | None:
    """Whether the text has '&' or '*' in it; None after reporting that the file cannot be read
    or is not UTF-8. Reads the file once, a chunk at a time."""
    found = False
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            while chunk := stream.read(_CHUNK):
                found = found or "&" in chunk or "*" in chunk
    except OSError as exc:
        sink.add(1, 1, f"cannot read the file: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError:
        _not_utf8(path, sink)
        return None
    return found


def _not_utf8(path: Path, sink: Sink) -> None:
    """Report the first byte that is not UTF-8 (the decoding check reads in chunks: find it in
    the whole file)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        data = data[: exc.start]
    _at_offset(sink, data.decode("utf-8", "replace"), "the file is not UTF-8")


def _at_offset(sink: Sink, before: str, message: str) -> None:
    line = before.count("\n") + 1
    sink.add(line, len(before) - (before.rfind("\n") + 1) + 1, message)


def _anchors(path: Path, sink: Sink) -> bool:
    """Report every anchor and alias; True when there was one. Aliases would let one task stand
    for many and hide what a manifest asks for, so a manifest spells everything out."""
    found = False
    with path.open(encoding="utf-8-sig", newline="") as stream:
        for event in yaml.parse(stream, Loader=manifest_yaml.Loader):
            if isinstance(event, AliasEvent):
                found = True
                message = f"alias '*{event.anchor}' is not allowed: write the value out"
                _at_mark(sink, event, message)
            elif isinstance(event, NodeEvent) and event.anchor is not None:
                found = True
                _at_mark(sink, event, f"anchor '&{event.anchor}' is not allowed: write values out")
    return found


def _at_mark(sink: Sink, event: NodeEvent, message: str) -> None:
    mark = event.start_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    sink.add(line, column, message)


@contextlib.contextmanager
def _parse(path: Path) -> Iterator[Any]:
    """A parser of the file, as the loader that reads it."""
    with path.open(encoding="utf-8-sig", newline="") as stream:
        loader = manifest_yaml.Loader(stream)
        try:
            yield loader
        finally:
            loader.dispose()


@contextlib.contextmanager
def _document(path: Path) -> Iterator[Events | None]:
    """The events of the file's one document, positioned at its root (None when the file holds
    no document); raises as PyYAML's composer does when another document follows."""
    with _parse(path) as loader:
        get: Callable[[], Any] = loader.get_event
        get()  # the stream's start
        if loader.check_event(StreamEndEvent):
            yield None
            return
        start = get()  # the document's start
        yield Events(get)
        get()  # the document's end
        if not loader.check_event(StreamEndEvent):
            raise ComposerError(
                "expected a single document in the stream",
                start.start_mark,
                "but found another document",
                get().start_mark,
            )
