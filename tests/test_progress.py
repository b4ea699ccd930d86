"""The progress display of long phases: a bar on a terminal, a periodic log line elsewhere,
nothing when disabled; finished tasks counted per outcome."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from runner.clock import FakeClock
from runner.commands.progress import RunProgress, make_progress
from runner.models import TaskKey

KEYS = [TaskKey("cn-shanghai", 100 + i, "t") for i in range(10)]


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120), out


def pipe() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=120), out


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def finish(progress: RunProgress, *outcomes: str) -> None:
    for key, outcome in zip(KEYS, outcomes, strict=False):
        progress.task_finished(key, outcome)


def test_disabled_progress_is_silent_but_still_counts(quiet_logs: io.StringIO) -> None:
    """enabled=False (--no-progress): no bar even on a terminal, no log line; counts are kept."""
    console, out = terminal()
    with make_progress(3, enabled=False, console=console) as progress:
        finish(progress, "created", "created", "failed")
    assert out.getvalue() == ""
    assert quiet_logs.getvalue() == ""
    assert (progress.done, dict(progress.outcomes)) == (3, {"created": 2, "failed": 1})


def test_nothing_to_do_is_silent(quiet_logs: io.StringIO) -> None:
    """A phase with no tasks shows no bar and logs nothing, even when enabled."""
    console, out = terminal()
    with make_progress(0, console=console):
        pass
    assert out.getvalue() == ""
    assert quiet_logs.getvalue() == ""


def test_off_a_terminal_the_last_task_logs_one_line_with_counts(quiet_logs: io.StringIO) -> None:
    """Not on a terminal, no bar is drawn; the last finished task logs one `progress` line with
    the phase, done/total and a count per outcome."""
    console, out = pipe()
    clock = FakeClock(start=0.0)
    with RunProgress(
        3, console=console, label="starting", clock=clock.monotonic, heartbeat=False
    ) as progress:
        clock.now = 1.5
        finish(progress, "started", "not started", "started")
    assert out.getvalue() == ""
    [line] = log_lines(quiet_logs)
    assert {k: v for k, v in line.items() if k != "timestamp"} == {
        "event": "progress",
        "level": "info",
        "phase": "starting",
        "done": 3,
        "total": 3,
        "elapsed_s": 1.5,
        "tasks_per_s": 2.0,
        "eta_s": 0,
        "started": 2,
        "not started": 1,
    }


def test_off_a_terminal_each_line_says_the_pace_and_the_time_left(quiet_logs: io.StringIO) -> None:
    """A progress line gives the phase's seconds so far, its tasks per second, and the seconds
    left at that pace: what a long run's log shows where no bar is drawn."""
    clock = FakeClock(start=100.0)
    with RunProgress(
        40, console=pipe()[0], interval=5.0, clock=clock.monotonic, heartbeat=False
    ) as progress:
        for n in range(1, 41):
            clock.now = 100.0 + n * 0.5  # two tasks a second
            finish(progress, "created")
    lines = log_lines(quiet_logs)
    paces = [(x["done"], x["elapsed_s"], x["tasks_per_s"], x["eta_s"]) for x in lines]
    assert paces == [(10, 5.0, 2.0, 15), (20, 10.0, 2.0, 10), (30, 15.0, 2.0, 5), (40, 20.0, 2, 0)]


def test_a_line_at_the_very_start_has_no_pace_yet(quiet_logs: io.StringIO) -> None:
    """A phase whose tasks all finish before any time has passed logs its counts and no pace
    (no division by zero, no made-up rate)."""
    clock = FakeClock(start=0.0)
    with RunProgress(1, console=pipe()[0], clock=clock.monotonic, heartbeat=False) as progress:
        finish(progress, "created")
    [line] = log_lines(quiet_logs)
    assert line["elapsed_s"] == 0.0
    assert "tasks_per_s" not in line
    assert "eta_s" not in line


def test_off_a_terminal_lines_come_every_interval(quiet_logs: io.StringIO) -> None:
    """Between the first and the last task, a line is logged once `interval` seconds have passed
    since the previous one, never more often."""
    clock = FakeClock(start=0.0)
    with RunProgress(
        10, console=pipe()[0], interval=5.0, clock=clock.monotonic, heartbeat=False
    ) as progress:
        for now in (0.0, 4.9, 5.0, 6.0, 9.9, 10.0, 10.1, 10.2, 10.3, 10.4):
            clock.now = now
            finish(progress, "created")
    lines = log_lines(quiet_logs)
    assert [(line["done"], line["created"]) for line in lines] == [(3, 3), (6, 6), (10, 10)]


def test_default_console_is_stderr_and_off_a_terminal_it_logs(quiet_logs: io.StringIO) -> None:
    """Without an injected console the choice follows stderr: under pytest it is no terminal, so
    progress is a log line, not a bar."""
    with make_progress(2) as progress:
        finish(progress, "downloaded", "present")
    [line] = log_lines(quiet_logs)
    assert (line["done"], line["downloaded"], line["present"]) == (2, 1, 1)


def test_on_a_terminal_a_bar_shows_counts_and_nothing_is_logged(quiet_logs: io.StringIO) -> None:
    """On a terminal, a bar with the label, done/total and a count per outcome is drawn on the
    console (and cleared at the end); no log lines are written."""
    console, out = terminal()
    with make_progress(3, console=console, label="creating") as progress:
        finish(progress, "created", "failed", "created")
    drawn = out.getvalue()
    assert "creating" in drawn
    assert "3/3" in drawn
    assert "created 2 failed 1" in drawn
    assert quiet_logs.getvalue() == ""
    assert (progress.done, dict(progress.outcomes)) == (3, {"created": 2, "failed": 1})


def test_a_line_comes_every_interval_while_no_task_finishes(quiet_logs: io.StringIO) -> None:
    """The heartbeat logs a line once `interval` seconds have passed with no task finished
    (listings first, a slow rate): done 0 and no pace yet, then the lines go on."""
    clock = FakeClock(start=0.0)
    with RunProgress(
        100, console=pipe()[0], interval=5.0, clock=clock.monotonic, heartbeat=False
    ) as progress:
        clock.now = 4.0
        progress.beat()
        clock.now = 5.0
        progress.beat()
        clock.now = 7.0
        progress.beat()
        clock.now = 10.0
        progress.beat()
    lines = log_lines(quiet_logs)
    assert [(x["done"], x["elapsed_s"]) for x in lines] == [(0, 5.0), (0, 10.0)]
    assert all("eta_s" not in x for x in lines)


def test_the_pace_runs_from_the_first_finished_task(quiet_logs: io.StringIO) -> None:
    """A phase that spends 20 s before its first task (its listings) and then finishes two a
    second gives no estimate from one task, then the estimate of two a second, not one made
    with the 20 s of warm-up in it."""
    clock = FakeClock(start=0.0)
    with RunProgress(
        41, console=pipe()[0], interval=5.0, clock=clock.monotonic, heartbeat=False
    ) as progress:
        clock.now = 20.0
        finish(progress, "created")
        for n in range(1, 11):
            clock.now = 20.0 + n * 0.5
            progress.task_finished(KEYS[0], "created")
    first, second = log_lines(quiet_logs)
    assert (first["done"], first["elapsed_s"]) == (1, 20.0)
    assert "eta_s" not in first
    assert (second["done"], second["tasks_per_s"], second["eta_s"]) == (11, 2.0, 15)


def test_the_heartbeat_thread_lives_as_long_as_the_phase(quiet_logs: io.StringIO) -> None:
    """Off a terminal a `progress` thread beats while the phase lasts and is gone after it;
    on a terminal (a bar) or disabled, there is none."""
    import threading

    def beating() -> bool:
        return any(t.name == "progress" for t in threading.enumerate())

    with make_progress(5, console=pipe()[0]):
        assert beating()
    assert not beating()
    with make_progress(5, console=terminal()[0]), make_progress(5, enabled=False):
        assert not beating()
