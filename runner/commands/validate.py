"""runner validate: check manifests, send nothing; with --online, also a preflight of every
profile's credentials and every workspace, with reads only."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runner.commands.common import ExitCode, UsageError, load_or_report
from runner.dataworks.endpoints import EndpointError
from runner.logs import REDACTOR
from runner.text import printable


def execute(paths: Sequence[str], *, online: bool = False, **probe: object) -> ExitCode:
    manifest = load_or_report(paths)
    if manifest is None:
        return ExitCode.USAGE
    workspaces = len({(s.key.region, s.key.project_id) for s in manifest.specs})
    if not online:
        print(f"ok: {len(manifest.specs)} tasks in {workspaces} workspaces", file=sys.stdout)
        return ExitCode.OK
    from runner.commands.preflight import Probe, run_preflight

    try:
        findings = run_preflight(manifest, Probe(**probe))  # type: ignore[arg-type]
    except (EndpointError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    bad = [f for f in findings if not f.ok]
    for finding in findings:
        line = printable(REDACTOR.redact(f"{finding.where}: {finding.message}"))
        stream = sys.stdout if finding.ok else sys.stderr
        print(("ok   " if finding.ok else "FAIL ") + line, file=stream)
    print(
        f"online: {len(manifest.specs)} tasks in {workspaces} workspaces;"
        f" {len(findings) - len(bad)} checks passed, {len(bad)} failed",
        file=sys.stdout,
    )
    return ExitCode.USAGE if bad else ExitCode.OK
