"""The manifests the benchmarks run: FULL exports with unique names, N per workspace."""

from __future__ import annotations

from pathlib import Path


def write_manifest(
    path: Path,
    tasks: int,
    *,
    prefix: str = "bench",
    per_workspace: int = 50,
    region: str = "cn-shanghai",
) -> None:
    """`tasks` FULL exports in one region, `per_workspace` per workspace, unique names."""
    lines = [
        "version: 1",
        "defaults:",
        f"  region: {region}",
        "  export_mode: FULL",
        "  export_object_status: SAVED",
        "  description: benchmark",
        "workspaces:",
    ]
    for w in range(-(-tasks // per_workspace)):
        lines += [f"  - project_id: {10_001 + w}", "    tasks:"]
        first = w * per_workspace
        for t in range(first, min(tasks, first + per_workspace)):
            lines.append(f"      - name: {prefix}-task-{t:06d}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
