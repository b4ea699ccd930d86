"""SIGTERM and SIGHUP end the process as Ctrl-C does, from its first instant to its last."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import entry, signals
from runner.cli import cli


@pytest.fixture(autouse=True)
def saved_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in signals.STOPPING}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("stop", signals.STOPPING)
def test_a_stopping_signal_raises_keyboard_interrupt(stop: signal.Signals) -> None:
    """With the handlers set, SIGTERM and SIGHUP interrupt the program where it is."""
    signals.interrupt_on()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(stop)


def test_a_signal_while_the_command_line_loads_is_exit_130_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C or SIGTERM while the modules load (before any command) prints one line and
    exits 130, no traceback."""
    monkeypatch.delitem(sys.modules, "runner.cli")

    class Interrupted:
        def find_spec(self, name: str, *args: object) -> None:
            if name == "runner.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.setattr(sys, "meta_path", [Interrupted(), *sys.meta_path])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    assert exited.value.code == 130
    assert capsys.readouterr().err == "interrupted while starting: nothing was done\n"


def test_a_run_leaves_the_stopping_signals_raising_after_its_loop_ends(tmp_path: Path) -> None:
    """asyncio leaves a signal it watched at its default action (death by the signal, no exit
    130): after the run's loop ends, SIGTERM and SIGHUP raise KeyboardInterrupt again."""
    for sig in signals.STOPPING:
        signal.signal(sig, signal.SIG_DFL)
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\nworkspaces: [{project_id: 1, regoin: x}]\n")
    args = ["run", str(manifest), "--journal", str(tmp_path / "j.db")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2
    for sig in signals.STOPPING:
        assert signal.getsignal(sig) is signals._interrupt
