"""What the commands share: exit codes, manifest loading with reported problems, consoles."""

from __future__ import annotations

import enum
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from runner.manifest import ManifestError, load_manifests
from runner.models import Manifest
from runner.text import printable

DEFAULT_JOURNAL = Path(".runner") / "journal.db"
DEFAULT_RATE = 5.0  # the Basic edition's limit: safe everywhere; `rate:` raises it
DEFAULT_CONCURRENCY = 16
UNWRAPPED_WIDTH = 10_000  # a table written to a pipe or a file is this wide at most, not wrapped
DEFAULT_TIMEOUT = 10.0
DEFAULT_WAIT_TIMEOUT = 3600.0  # --wait: how long to wait for the exports, in all
DEFAULT_POLL_INTERVAL = 10.0  # --wait: seconds between two status reads of a task


class ExitCode(enum.IntEnum):
    """The documented exit-code contract."""

    OK = 0
    TASKS_FAILED = 1
    USAGE = 2
    FATAL = 3
    INTERRUPTED = 130


SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """A size in bytes from `123`, `512M`, `4G`, `4GiB` or `4GB` (binary units). ValueError when
    it is not one."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (raw[:-1], raw[-1]) if raw[-1:].isalpha() else (raw, "")
    if unit not in SIZE_UNITS or not number.isdigit() or len(number) > 15:
        raise ValueError(f"{text!r} is not a size (like 500M or 4G)")
    return int(number) * SIZE_UNITS[unit]


class FiniteFloat(click.ParamType[float]):
    """A float that is a number: nan and inf are refused (every comparison with nan is false,
    so a `> 0` check would let it through)."""

    name = "float"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloat()


class ByteSize(click.ParamType[int]):
    """A size in bytes, given as 123, 500M, 4G (binary units)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class UsageError(Exception):
    """Bad input: nothing was sent. Exit 2."""


class ManifestInvalid(UsageError):
    """The manifests have problems, already printed one per line."""


def stdout() -> Console:
    """The console reports are printed on. On a terminal, its width; written to a pipe or a
    file (grep, a CI log), tables are not wrapped at 80 columns, so each task stays one line
    (COLUMNS, when set, still rules)."""
    console = Console(file=sys.stdout, soft_wrap=True)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = UNWRAPPED_WIDTH
    return console


def stderr() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def load_or_report(paths: Sequence[str]) -> Manifest | None:
    """Load the manifests; on problems print every one as FILE:LINE:COL: message and return None."""
    try:
        manifest = load_manifests(paths)
    except ManifestError as error:
        for problem in error.problems:  # a problem may quote the manifest: shown printable
            print(printable(str(problem)), file=sys.stderr)
        count = len(error.problems)
        print(f"{count} problem{'s' if count != 1 else ''}; nothing was sent", file=sys.stderr)
        return None
    if not manifest.specs:  # valid, and likely not what was meant (`workspaces: []`)
        print("warning: the manifests hold no task: there is nothing to do", file=sys.stderr)
    return manifest
