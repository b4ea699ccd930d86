"""The `runner` console script: the signals are set first, then the command line is loaded (a
Ctrl-C or SIGTERM while it loads is exit 130 with one line, not a traceback)."""

from __future__ import annotations

import sys

from runner.signals import interrupt_on


def main() -> None:
    try:
        interrupt_on()
        from runner.cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted while starting: nothing was done", file=sys.stderr)
        sys.exit(130)
    cli_main()
