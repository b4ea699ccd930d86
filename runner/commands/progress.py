"""Progress on long work: a bar on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import sys
import threading
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

    The lines come every `interval` seconds while the phase lasts, also while no task finishes
    (listings first, a slow rate, a wait): a heartbeat thread calls `beat`. `console` replaces
    stderr (the bar is shown when it is a terminal), `clock` the monotonic clock that paces the
    log lines, `heartbeat=False` leaves `beat` to the caller: all for tests.
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
        heartbeat: bool = True,
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.outcomes: Counter[str] = Counter()
        self._interval = interval
        self._clock = clock
        self._started = self._last_log = clock()
        self._first_done: float | None = None
        self._lock = threading.Lock()  # the heartbeat reads what the tasks change
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
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
        elif self._enabled and heartbeat:
            self._heart = threading.Thread(target=self._beating, name="progress", daemon=True)

    def __enter__(self) -> RunProgress:
        if self._bar is not None:
            self._bar.start()
            self._task_id = self._bar.add_task("tasks", total=self.total, detail="")
        if self._heart is not None:
            self._heart.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._heart is not None:
            self._stop.set()
            self._heart.join()

    def task_finished(self, key: TaskKey, outcome: str) -> None:
        with self._lock:
            self.done += 1
            self.outcomes[outcome] += 1
            if self._first_done is None:
                self._first_done = self._clock()
        if self._bar is not None:
            detail = " ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
            self._bar.update(self._task_id, advance=1, detail=detail)  # type: ignore[arg-type]
            return
        if self._enabled:
            self.beat(last=self.done == self.total)

    def beat(self, *, last: bool = False) -> None:
        """Log a progress line when `interval` seconds have passed since the last one (or at
        the phase's `last` task)."""
        if not self._enabled or self._bar is not None:
            return
        with self._lock:
            now = self._clock()
            if now - self._last_log < self._interval and not last:
                return
            self._last_log = now
            fields = {"done": self.done, "total": self.total, **self._pace(now)}
            counts = dict(self.outcomes)
        log.info("progress", phase=self.label, **fields, **counts)

    def _beating(self) -> None:
        while not self._stop.wait(self._interval / 5):
            self.beat()

    def _pace(self, now: float) -> dict[str, float]:
        """The phase's time so far, its tasks per second, and the seconds left at that pace.
        The pace runs from the first finished task: the phase's warm-up (listings first, keys
        fetched) would make a first estimate wildly long; one task alone gives no estimate."""
        elapsed = now - self._started
        pace = {"elapsed_s": round(elapsed, 1)}
        first = self._first_done
        if self.done >= 2 and first is not None and now > first:
            per_second = (self.done - 1) / (now - first)
        elif self.done and elapsed > 0 and (self.done == self.total or self.done >= 2):
            per_second = self.done / elapsed  # all at once: the phase's own time
        else:
            return pace
        pace["tasks_per_s"] = round(per_second, 2)
        pace["eta_s"] = round((self.total - self.done) / per_second)
        return pace


def make_progress(
    total: int, *, enabled: bool = True, label: str = "creating", console: Console | None = None
) -> RunProgress:
    return RunProgress(total, enabled=enabled, label=label, console=console)
