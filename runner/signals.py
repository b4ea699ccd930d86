"""How the process ends on a signal: SIGTERM and SIGHUP as Ctrl-C does (exit 130).

While a run's phases go on, the run itself watches them (runner.commands.run) and cancels its
workers cleanly; before and after that (loading, the summary) they raise KeyboardInterrupt
where the program is, which the command line turns into exit 130, as for Ctrl-C. An asyncio
loop that watched a signal leaves it at the default action when it ends: `interrupt_on` is
called again then."""

from __future__ import annotations

import signal
from types import FrameType

STOPPING = (signal.SIGTERM, signal.SIGHUP)  # beside SIGINT, which raises KeyboardInterrupt


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupt_on() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as SIGINT does (main thread only)."""
    for stopping in STOPPING:
        signal.signal(stopping, _interrupt)
