"""Text from outside (manifests, server answers, the journal) made safe to print on a terminal.

A task name or a server message may hold ANSI escape sequences (which recolour, move the
cursor, retitle the window or make hyperlinks), other control characters, bidirectional
overrides that reorder what is shown, or lone surrogates (which cannot even be encoded). None of
them reaches stdout or stderr: `printable` is applied to every such value before it is printed.
"""

from __future__ import annotations

import re

# CSI (ESC [ … final byte), OSC (ESC ] … BEL or ST), the other two-byte escapes, and the 8-bit CSI.
ANSI_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# What is left once escapes are gone: C0 and C1 controls, DEL, bidirectional marks and overrides.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
WHITESPACE_CONTROL = re.compile(r"[\t\n\r]")
SURROGATE = re.compile(r"[\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` without escape sequences or control characters, on one line, always encodable.

    Tabs and line breaks become spaces (a value stays on its line); a lone surrogate becomes
    U+FFFD. Text without anything to remove is returned as it is.
    """
    if text.isprintable():
        return text
    text = ANSI_ESCAPE.sub("", text)
    text = WHITESPACE_CONTROL.sub(" ", text)
    text = CONTROL.sub("", text)
    return SURROGATE.sub("\ufffd", text)
