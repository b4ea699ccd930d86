"""The command line: parse, call a command, exit with its code. No logic lives here."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path
from typing import Any

import click

from runner import __version__, logs
from runner.cli_sim import sim
from runner.commands.common import (
    DEFAULT_JOURNAL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    FINITE,
    ByteSize,
    ExitCode,
)
from runner.models import MAX_CONCURRENCY, TaskState
from runner.signals import interrupt_on
from runner.text import printable

JOURNAL = click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_JOURNAL,
    show_default=True,
    help="The journal (SQLite) that records every task and attempt.",
)
MANIFESTS = click.argument("manifests", nargs=-1, required=True, type=str)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def cli(verbose: bool) -> None:
    """Create DataWorks export tasks across many workspaces, once each, under the rate limit."""
    logs.configure(verbose=verbose)


@cli.command()
@MANIFESTS
@click.option(
    "--online",
    is_flag=True,
    help="Also check, with reads only, every profile's credentials and every workspace.",
)
@click.option("--endpoint", help="With --online: replace every region's endpoint.")
@click.option("--profile", help="With --online: the credentials profile of unnamed workspaces.")
@click.option("--rate", type=FINITE, default=5.0, show_default=True, help="With --online: reads/s.")
@click.option("--timeout", type=FINITE, default=DEFAULT_TIMEOUT, show_default=True)
@click.option(
    "--signature-version", type=click.Choice(["v3", "v1"]), default="v3", show_default=True
)
def validate(manifests: tuple[str, ...], online: bool, **probe: Any) -> None:
    """Check manifests; exit 0, or 2 with every problem as FILE:LINE:COL: message. With
    --online, exit 2 when a profile's credentials or a workspace would fail a run."""
    from runner.commands import validate as command

    sys.exit(command.execute(manifests, online=online, **probe))


@cli.command()
@MANIFESTS
@JOURNAL
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--only-failed", is_flag=True, help="Plan only the tasks that failed before.")
@click.option(
    "--profile", help="The profile the run would take (as run's): drift is judged against it."
)
def plan(
    manifests: tuple[str, ...], journal: Path, fmt: str, only_failed: bool, profile: str | None
) -> None:
    """Show what a run would do, per task and in totals; sends nothing."""
    from runner.commands import plan as command

    code = command.execute(manifests, journal, fmt=fmt, only_failed=only_failed, profile=profile)
    sys.exit(code)


@cli.command()
@MANIFESTS
@JOURNAL
@click.option("--endpoint", help="Replace every region's endpoint (simulator or gateway).")
@click.option("--rate", type=FINITE, help="Write requests per second per account and region.")
@click.option(
    "--read-rate",
    type=FINITE,
    help="Give reads their own bucket at this rate (Enterprise: 50). Default: reads share --rate.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    help="Workers (requests in flight at most).",
)
@click.option(
    "--timeout", type=FINITE, default=DEFAULT_TIMEOUT, show_default=True, help="Per request, s."
)
@click.option(
    "--signature-version", type=click.Choice(["v3", "v1"]), default="v3", show_default=True
)
@click.option("--only-failed", is_flag=True, help="Retry only the tasks that failed before.")
@click.option(
    "--profile",
    help="Credentials profile (aliyun-cli config or credentials.ini); else ALIBABA_CLOUD_PROFILE.",
)
@click.option(
    "--adopt-existing",
    is_flag=True,
    help="Adopt a task whose name already exists in the workspace (and with --import, an"
    " import in its target) instead of failing it.",
)
@click.option(
    "--start", is_flag=True, help="Start the created tasks, this run's and earlier ones'."
)
@click.option("--wait", is_flag=True, help="Wait for the exports to end (implies --start).")
@click.option(
    "--download",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Save each package as DIR/<region>/<project_id>/<name>-<migration_id>.zip (implies"
    " --wait).",
)
@click.option(
    "--import",
    "imports",
    is_flag=True,
    help="Upload each package and import it into its workspace's import_into target; implies"
    " --download (into packages/ beside the journal unless --download names a folder).",
)
@click.option(
    "--wait-timeout",
    type=FINITE,
    default=DEFAULT_WAIT_TIMEOUT,
    show_default=True,
    help="With --wait: how long to wait in all, s; unfinished tasks stay started (exit 1).",
)
@click.option(
    "--poll-interval",
    type=FINITE,
    default=DEFAULT_POLL_INTERVAL,
    show_default=True,
    help="With --wait: seconds between two status reads of a task.",
)
@click.option(
    "--visibility-window",
    type=FINITE,
    default=60.0,
    show_default=True,
    help="Seconds a create whose answer was lost may take to show; it is resent only after.",
)
@click.option(
    "--max-package-size",
    type=ByteSize(),
    default="4G",
    show_default=True,
    help="With --download: a larger package fails its download (e.g. 500M, 4G).",
)
@click.option(
    "--progress/--no-progress",
    default=True,
    help="A bar per phase on a terminal, else a progress log line every 5 s (done, pace, eta).",
)
def run(**options: Any) -> None:
    """Create every task of the manifests that is not done yet; optionally start, wait, fetch
    and import."""
    from runner.commands import run as command

    sys.exit(command.execute(command.RunRequest(**options)))


@cli.command()
@JOURNAL
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([state.value for state in TaskState]),
    help="Only tasks in this state (repeatable: any of them).",
)
@click.option("--region", "regions", multiple=True, help="Only tasks in this region (repeatable).")
@click.option(
    "--project-id",
    "project_ids",
    multiple=True,
    type=click.IntRange(min=1),
    help="Only tasks of this workspace (repeatable).",
)
def status(
    journal: Path,
    fmt: str,
    states: tuple[str, ...],
    regions: tuple[str, ...],
    project_ids: tuple[int, ...],
) -> None:
    """One row per task: state, migration id, attempts, last error, request id."""
    from runner.commands import status as command

    code = command.execute(
        journal, fmt=fmt, states=states, regions=regions, project_ids=project_ids
    )
    sys.exit(code)


@cli.command()
@JOURNAL
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
def report(journal: Path, fmt: str) -> None:
    """Totals, failures grouped by error code, timings."""
    from runner.commands import report as command

    sys.exit(command.execute(journal, fmt=fmt))


@cli.command()
@click.option(
    "--manifest",
    "manifest_path",
    default="manifests/example.yaml",
    show_default=True,
    help="The manifest to rehearse.",
)
@click.option(
    "--migration",
    default="manifests/import.yaml",
    show_default=True,
    help="The manifest whose migration (run --import) is rehearsed after it.",
)
def demo(manifest_path: str, migration: str) -> None:
    """Rehearse a whole run on the simulator, with faults, then rerun it; then a migration."""
    from runner.commands import demo as command

    sys.exit(command.execute(manifest_path, migration=migration))


cli.add_command(sim)


def disable_core_dumps() -> None:
    """No core file, ever: one would hold the credentials and the signing keys in clear."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> None:
    disable_core_dumps()
    try:
        interrupt_on()  # SIGTERM and SIGHUP as Ctrl-C (python -m runner comes here first)
        cli(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("interrupted: tasks in flight stay recorded as such; rerun to go on", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as error:
        error.show()
        sys.exit(ExitCode.USAGE)
    except Exception as error:  # a condition no command expected: stop with a clear line
        leaf = _first_leaf(error)
        # the message may quote a URL, a server answer or a credential: masked, made printable
        message = printable(logs.REDACTOR.redact(str(leaf)))
        print(f"runner stopped: {type(leaf).__name__}: {message}", file=sys.stderr)
        print("the journal keeps what was done; rerun to go on", file=sys.stderr)
        sys.exit(ExitCode.FATAL)


def _first_leaf(error: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
