"""Progress on long work: a bar on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from runner.logs import get_logger
from runner.models import TaskKey

log = get_logger("runner.progress")


class RunProgress:
    """Counts finished tasks; shows a bar when stderr is a terminal, else logs every few seconds.

    `console` replaces stderr (the bar is shown when it is a terminal), `clock` the monotonic
    clock that paces the log lines: both for tests.
    """

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        interval: float = 5.0,
        label: str = "creating",
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.outcomes: Counter[str] = Counter()
        self._interval = interval
        self._clock = clock
        self._started = self._last_log = clock()
        self._bar: Progress | None = None
        self._task_id: object = None
        self._enabled = enabled and total > 0
        on_terminal = sys.stderr.isatty() if console is None else console.is_terminal
        if self._enabled and on_terminal:
            self._bar = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=console or Console(file=sys.stderr),
                transient=True,
            )

    def __enter__(self) -> RunProgress:
        if self._bar is not None:
            self._bar.start()
            self._task_id = self._bar.add_task("tasks", total=self.total, detail="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def task_finished(self, key: TaskKey, outcome: str) -> None:
        self.done += 1
        self.outcomes[outcome] += 1
        if self._bar is not None:
            detail = " ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
            self._bar.update(self._task_id, advance=1, detail=detail)  # type: ignore[arg-type]
            return
        if not self._enabled:
            return
        now = self._clock()
        if now - self._last_log >= self._interval or self.done == self.total:
            self._last_log = now
            log.info(
                "progress",
                phase=self.label,
                done=self.done,
                total=self.total,
                **self._pace(now),
                **dict(self.outcomes),
            )

    def _pace(self, now: float) -> dict[str, float]:
        """The phase's time so far, its tasks per second, and the seconds left at that pace."""
        elapsed = now - self._started
        pace = {"elapsed_s": round(elapsed, 1)}
        if elapsed > 0 and self.done:
            per_second = self.done / elapsed
            pace["tasks_per_s"] = round(per_second, 2)
            pace["eta_s"] = round((self.total - self.done) / per_second)
        return pace


def make_progress(
    total: int, *, enabled: bool = True, label: str = "creating", console: Console | None = None
) -> RunProgress:
    return RunProgress(total, enabled=enabled, label=label, console=console)
