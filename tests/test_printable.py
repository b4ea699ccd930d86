"""Text from manifests and servers reaches the terminal as literal, printable text: no markup,
no escape sequences, no control characters, in tables, CSV, logs and summary lines."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from runner import logs, reports
from runner.cli import cli
from runner.commands.common import ExitCode
from runner.commands.run_summary import RunResult, summary_line
from runner.engine import RunStats
from runner.journal import Journal, MarkFailed, Register
from runner.models import ApiError, ErrorKind, ExportSpec, TaskKey
from runner.text import printable

KEY = TaskKey("cn-shanghai", 101, "a[/x]b")
HOSTILE = (
    "bad \x1b[31mred\x1b[0m \x1b]8;;http://evil.example\x07link\x1b]8;;\x07 [link=http://e]x[/link]"
    " [name] \x1b[2J\r\nnext\x07\x00 \u202egnp.exe\x9b1m"
)
VISIBLE = "bad red link [link=http://e]x[/link] [name]   next gnp.exe"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        pytest.param("plain [b]text[/b]", "plain [b]text[/b]", id="markup kept literal"),
        pytest.param("\x1b[1;31mred\x1b[0m", "red", id="SGR colour"),
        pytest.param("\x1b]8;;http://x\x1b\\a\x1b]8;;\x1b\\", "a", id="OSC 8 hyperlink"),
        pytest.param("\x1b]0;title\x07ok", "ok", id="window title"),
        pytest.param("a\tb\nc\rd", "a b c d", id="line breaks become spaces"),
        pytest.param("a\x00b\x7fc\x85d", "abcd", id="C0, DEL and C1 dropped"),
        pytest.param("\u202eevil\u2066x\u2069", "evilx", id="bidi overrides dropped"),
        pytest.param("lone \ud800 surrogate", "lone \ufffd surrogate", id="surrogate replaced"),
        pytest.param("\x9b2Jgone", "gone", id="8-bit CSI"),
    ],
)
def test_printable_removes_escapes_and_controls(raw: str, shown: str) -> None:
    """printable() leaves visible text as it is and removes what a terminal would act on."""
    assert printable(raw) == shown
    assert printable(raw).encode("utf-8")  # always encodable


def test_printable_of_hostile_text() -> None:
    """A server message mixing every trick shows only its visible words."""
    assert printable(HOSTILE) == VISIBLE


def journal_with_hostile_failure(tmp_path: Path) -> Path:
    path = tmp_path / "j.db"
    with Journal.open(path) as journal:
        journal.apply([Register(ExportSpec(KEY))])
        journal.apply([MarkFailed(KEY, "Bad\x1b[5mCode", HOSTILE, "rid\x1b[8m")])
    return path


def test_status_and_report_show_server_text_without_escapes(tmp_path: Path) -> None:
    """status and report (table and CSV) on a journal holding a hostile server message exit 0
    and print its words without a single escape or control character."""
    path = journal_with_hostile_failure(tmp_path)
    runner = CliRunner()
    outputs = []
    for args in (["status"], ["report"], ["report", "--format", "csv"]):
        result = runner.invoke(cli, [*args, "--journal", str(path)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    for out in outputs:
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\u202e" not in out
    assert "a[/x" in outputs[0]
    rows = list(csv.reader(io.StringIO(outputs[2])))
    assert ["failures", "BadCode", "1", VISIBLE] in rows


def test_table_cells_hold_no_escape(tmp_path: Path) -> None:
    """A status table rendered to a terminal-like console carries the words, not the escapes."""
    path = journal_with_hostile_failure(tmp_path)
    out = io.StringIO()
    with Journal.open_readonly(path) as journal:
        reports.status_table(Console(file=out, width=400, color_system=None), journal.rows())
    assert "\x1b" not in out.getvalue()
    assert "[link=http://e]x[/link] [name]" in out.getvalue()
    assert "a[/x]b" in out.getvalue()


@pytest.mark.parametrize("as_json", [False, True], ids=["console", "json"])
def test_logs_carry_no_escape_sequences(as_json: bool) -> None:
    """Log lines, on a console or as JSON, show a hostile value's words without its escapes."""
    out = io.StringIO()
    logs.configure(stream=out, json=as_json)
    logs.get_logger("t").warning("not started", task=str(KEY), message=HOSTILE)
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\\u001b" not in text
    assert "gnp.exe" in text


def test_console_tracebacks_show_no_local_variables() -> None:
    """An exception logged on a console shows a plain traceback: no frame's local variables."""
    out = io.StringIO()
    logs.configure(stream=out, json=False)

    def fail() -> None:
        access_key_secret = "local-secret-value"  # a local a traceback must not show
        raise RuntimeError(f"boom ({len(access_key_secret)})")

    try:
        fail()
    except RuntimeError:
        logs.get_logger("t").exception("failed")
    text = out.getvalue()
    assert "RuntimeError: boom (18)" in text
    assert "local-secret-value" not in text


def test_summary_line_shows_the_stop_reason_printable() -> None:
    """The line that says why a run stopped carries no escape from the server's answer."""
    stats = RunStats(fatal=ApiError(ErrorKind.FATAL, "Throttling.Api.Risk", HOSTILE))
    text = summary_line(RunResult(ExitCode.FATAL, stats), Path("j.db"))
    assert f"stopped: Throttling.Api.Risk: {VISIBLE}" in text
    assert "\x1b" not in text
