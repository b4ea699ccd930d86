"""Benchmark: load a 100,000-task manifest (2,000 workspaces × 50 tasks).

Fails (exit 1) when loading takes 5 s or more, or peaks at 400 MB or more. Also loads the same
file with plain `yaml.load(..., Loader=CSafeLoader)` in this process, as a baseline for what the
positions and the validation cost on top of a bare parse.

    .venv/bin/python bench/manifest_load.py
"""

from __future__ import annotations

import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

from runner.manifest import load_manifests
from runner.manifest_yaml import gc_paused

WORKSPACES = 2_000
TASKS_PER_WORKSPACE = 50
MAX_SECONDS = 5.0
MAX_MB = 400.0
REGIONS = ("cn-shanghai", "cn-hangzhou", "cn-beijing", "ap-southeast-1")


def write_manifest(path: Path) -> int:
    """Write the benchmark manifest; returns how many tasks it holds."""
    lines = [
        "# benchmark manifest: 2,000 workspaces x 50 tasks",
        "version: 1",
        "settings: {rate: 20, concurrency: 16}",
        "defaults:",
        "  region: cn-shanghai",
        "  export_mode: FULL",
        "  export_object_status: SAVED",
        "  description: benchmark export",
        '  name: "bench-{project_id}"',
        "workspaces:",
    ]
    for w in range(WORKSPACES):
        project_id = 10_001 + w
        lines += [
            f"  - project_id: {project_id}",
            f"    label: ws-{w:04d}",
            f"    region: {REGIONS[w % len(REGIONS)]}",
            "    tasks:",
        ]
        for t in range(TASKS_PER_WORKSPACE):
            # half literal names, half templates, so both paths are measured
            name = f"task_{t:02d}" if t % 2 else f'"{{label}}-{{project_id}}-{t:02d}"'
            lines.append(f"      - name: {name}")
            if t % 5 == 0:
                lines.append("        export_mode: INCREMENTAL")
                since = "2020-05-20T00:00:00+08:00" if t % 10 else "1589932800000"
                lines.append(f"        incremental_since: {since}")
            if t % 7 == 0:
                lines.append("        export_object_status: DEPLOYED")
            if t % 11 == 0:
                lines.append(f"        description: task {t} of workspace {project_id}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return WORKSPACES * TASKS_PER_WORKSPACE


def max_rss_mb() -> float:
    """The process's peak resident set so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds of one call, and how far it raised the process's peak RSS (MB)."""
    if gc.isenabled():
        gc.collect()
    before = max_rss_mb()
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    del result
    return seconds, max_rss_mb() - before


def traced_peak_mb(work: Callable[[], object]) -> float:
    """Peak Python allocations during one call, as tracemalloc sees them (MB)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = work()
        del result
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        tasks = write_manifest(path)
        size_mb = path.stat().st_size / 2**20

        def ours() -> object:
            manifest = load_manifests([path])
            assert len(manifest.specs) == tasks
            return manifest

        def bare() -> object:
            with path.open(encoding="utf-8") as stream:
                return yaml.load(stream, Loader=yaml.CSafeLoader)

        # Ours first: the RSS figure is a rise of the process's high-water mark, and the
        # baseline, run first, would hide it.
        seconds, rss_mb = timed(ours)
        traced_mb = traced_peak_mb(ours)
        base_seconds, base_rss_mb = timed(bare)
        base_traced_mb = traced_peak_mb(bare)
        with gc_paused():  # load_manifests pauses the collector too: this is like for like
            paused_seconds, _ = timed(bare)

    peak_mb = max(rss_mb, traced_mb)
    print(f"manifest: {tasks:,} tasks, {WORKSPACES:,} workspaces, {size_mb:.1f} MB of YAML")
    print(
        f"load_manifests : {seconds:6.2f} s   peak RSS rise {rss_mb:6.1f} MB   "
        f"tracemalloc peak {traced_mb:6.1f} MB"
    )
    print(
        f"yaml.load (C)  : {base_seconds:6.2f} s   peak RSS rise {base_rss_mb:6.1f} MB   "
        f"tracemalloc peak {base_traced_mb:6.1f} MB"
    )
    print(f"yaml.load (C), collector paused: {paused_seconds:6.2f} s")
    print(
        f"ratio          : {seconds / base_seconds:6.2f}x the bare parse's time "
        f"({seconds / paused_seconds:.2f}x with the collector paused in both)"
    )
    if base_rss_mb == 0:
        print("                 (the baseline's RSS stayed under the high-water mark ours set)")
    print(f"limits         : < {MAX_SECONDS:.0f} s, < {MAX_MB:.0f} MB")
    if seconds >= MAX_SECONDS or peak_mb >= MAX_MB:
        print("FAIL: over the limit", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
