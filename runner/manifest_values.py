"""Values a manifest checks in more than one place (a workspace's, and its import target's):
project ids, region ids, credentials profile names and free text."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from runner.manifest_yaml import Node, Sink

MIN_PROJECT_ID = 2  # the smallest ProjectId DataWorks accepts
MAX_PROJECT_ID = 2**63 - 1
# Region ids go into endpoint host names, so only their plain form is accepted (cn-shanghai,
# ap-southeast-1, cn-shanghai-finance-1).
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)+")
# A credentials profile's name (aliyun-cli or credentials.ini): printable, no blanks.
_PROFILE = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")  # control characters but tab and newline


def project_id(sink: Sink, node: Node, what: str) -> int | None:
    """A workspace's ProjectId: an integer DataWorks accepts."""
    value = sink.integer(node, what)
    if value is not None and not MIN_PROJECT_ID <= value <= MAX_PROJECT_ID:
        sink.at(node, f"{what} must be at least {MIN_PROJECT_ID} (and fit in 64 bits), got {value}")
        return None
    return value


def region(sink: Sink, node: Node, what: str) -> str | None:
    """A region id in its plain form, interned (a manifest repeats a few thousands of times)."""
    return _interned(
        sink,
        node,
        what,
        lambda text: bool(_REGION.fullmatch(text)),
        lambda text: f"{what} {text!r} is not a region id such as cn-shanghai",
    )


def profile(sink: Sink, node: Node, what: str) -> str | None:
    """A credentials profile's name, interned."""
    return _interned(
        sink,
        node,
        what,
        lambda text: bool(_PROFILE.fullmatch(text)),
        lambda text: f"{what} {text!r} is not a profile name (letters, digits, ._@+-)",
    )


def free_text(sink: Sink, node: Node, what: str) -> str | None:
    """Text such as a description: any string without control characters, interned."""
    return _interned(
        sink,
        node,
        what,
        lambda text: not _CONTROL.search(text),
        lambda text: f"{what} has control characters",
    )


def _interned(
    sink: Sink,
    node: Node,
    what: str,
    valid: Callable[[str], bool],
    problem: Callable[[str], str],
) -> str | None:
    """The text at `node`, interned; None when there is none, or when it is not `valid` (then
    `problem(text)` is reported at the node)."""
    text = sink.text(node, what)
    if text is None:
        return None
    if not valid(text):
        sink.at(node, problem(text))
        return None
    return sys.intern(text)
