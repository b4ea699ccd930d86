"""`runner sim`'s command line: one flag per simulator setting (a `Faults` field of the same
name, or a `SimOptions` one); the command itself is runner.commands.sim."""

from __future__ import annotations

import sys
from typing import Any

import click

from runner.commands.common import FINITE


@click.command()
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="ID:SECRET[:TOKEN]",
    help="An access key the simulator accepts (repeatable). Default: the demo key.",
)
@click.option(
    "--qps", "qps_limit", type=int, help="Requests per second per key before Throttling.User."
)
@click.option("--daily-quota", type=int, help="Calls per key per day before Throttling.Api.Risk.")
@click.option("--error-rate", type=FINITE, default=0.0, help="Share of writes answered 5xx.")
@click.option(
    "--timeout-rate", type=FINITE, default=0.0, help="Share of writes applied, no answer."
)
@click.option("--reset-rate", type=FINITE, default=0.0, help="Share of writes applied, then reset.")
@click.option(
    "--applied-error-rate",
    type=FINITE,
    default=0.0,
    help="Share of writes applied, then answered 500.",
)
@click.option(
    "--hang",
    "hang_seconds",
    type=FINITE,
    default=30.0,
    show_default=True,
    help="How long a timeout fault holds, s.",
)
@click.option(
    "--retry-after/--no-retry-after",
    default=False,
    help="Send x-acs-retry-after with throttling answers (the service documents none).",
)
@click.option(
    "--allow-duplicate-names",
    is_flag=True,
    help="Accept a taken name again and count it (proves a client never creates twice).",
)
@click.option("--latency", type=FINITE, default=0.0, help="Added latency per request, s.")
@click.option(
    "--export-duration",
    type=FINITE,
    default=5.0,
    show_default=True,
    help="Seconds from StartMigration to the end of an export.",
)
@click.option(
    "--export-failure-rate", type=FINITE, default=0.0, help="Share of exports that end in error."
)
@click.option(
    "--download-ttl",
    type=FINITE,
    default=3600.0,
    show_default=True,
    help="Seconds a DownloadUrl stays valid.",
)
@click.option(
    "--missing-project", "missing_projects", type=int, multiple=True, help="Unknown project id."
)
@click.option(
    "--apply-lag",
    type=FINITE,
    default=0.0,
    help="Seconds before an accepted create shows in reads and takes its name.",
)
@click.option("--max-page-size", type=int, help="ListMigrations serves at most this many a page.")
@click.option(
    "--hostile-rate",
    type=FINITE,
    default=0.0,
    help="Share of API answers made malformed, oversized or lying (writes applied first in"
    " about half of them): deep nesting, NaN, bad ids, truncated, empty, arrays, HTML pages, bad"
    " TotalCount or Migrations, a 60-digit retry-after, over 8 MiB, a gzip bomb.",
)
@click.option(
    "--sts-ttl",
    type=FINITE,
    default=3600.0,
    show_default=True,
    help="Seconds a key from the simulated STS or credentials URI (/_sim/credentials) is accepted.",
)
@click.option(
    "--revoke-rate",
    type=FINITE,
    default=0.0,
    help="Share of those keys revoked at a random point of their life (refused as expired).",
)
@click.option(
    "--import-duration",
    type=FINITE,
    default=5.0,
    show_default=True,
    help="Seconds from StartMigration to the end of an import.",
)
@click.option(
    "--import-failure-rate", type=FINITE, default=0.0, help="Share of imports that end in error."
)
@click.option(
    "--import-partial-rate",
    type=FINITE,
    default=0.0,
    help="Share of imports that end PARTIAL_SUCCESS (FAILURE in ListMigrations).",
)
@click.option(
    "--upload-reset-rate",
    type=FINITE,
    default=0.0,
    help="Share of OSS package posts dropped once part of the file is in (nothing stored).",
)
@click.option(
    "--upload-policy-ttl",
    type=FINITE,
    default=3600.0,
    show_default=True,
    help="Seconds an AuthorizeFileUpload policy is accepted by the OSS post.",
)
@click.option(
    "--upload-max-bytes",
    type=int,
    default=5 * 1024**3,  # runner.sim.objects.DEFAULT_MAX_SIZE: what OSS takes in one post
    show_default=True,
    help="The largest package the upload policy accepts (larger: EntityTooLarge).",
)
@click.option(
    "--faults-only-on",
    "faults_only_on",
    multiple=True,
    metavar="ACTION",
    help="Error, timeout, reset and applied-error faults hit only this action (repeatable;"
    " reads and AuthorizeFileUpload too when named). Default: every write.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def sim(**options: Any) -> None:
    """Serve the DataWorks simulator on 127.0.0.1."""
    from runner.commands import sim as command

    params = click.get_current_context().command.params
    flags = {p.name: p.opts[0] for p in params if p.name and p.opts}
    sys.exit(command.execute(command.SimOptions(**options), flags))
