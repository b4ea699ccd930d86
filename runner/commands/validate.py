"""runner validate: check manifests, send nothing."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runner.commands.common import ExitCode, load_or_report


def execute(paths: Sequence[str]) -> ExitCode:
    manifest = load_or_report(paths)
    if manifest is None:
        return ExitCode.USAGE
    workspaces = len({(s.key.region, s.key.project_id) for s in manifest.specs})
    print(
        f"ok: {len(manifest.specs)} tasks in {workspaces} workspaces",
        file=sys.stdout,
    )
    return ExitCode.OK
