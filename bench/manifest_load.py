"""Benchmark: `runner validate` on a 100,000-task manifest (2,000 workspaces × 50 tasks).

The manifest is written twice: with a flow mapping per task (`- {name: ..., export_mode: ...}`,
about 8 MB) and in block style (about 6 MB). Each is validated by a whole `runner validate`
process, timed from spawn to exit, its peak RSS read from the kernel's accounting of that child.
Fails (exit 1) when a run takes 2.5 s or more, or peaks at 150 MB or more: the figure checked is
the median of the runs. As a baseline, a child process of the same interpreter reads the same file
as bare libyaml events and nothing else; the ratio says what walking and validating cost on top.

    .venv/bin/python bench/manifest_load.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WORKSPACES = 2_000
TASKS_PER_WORKSPACE = 50
MAX_SECONDS = 2.5
MAX_MB = 150.0
REGIONS = ("cn-shanghai", "cn-hangzhou", "cn-beijing", "ap-southeast-1")
HEADER = [
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
# Reads the file as libyaml events, as the loader does, and does nothing with them.
BARE_PARSE = """
import sys
from yaml import CSafeLoader
with open(sys.argv[1], encoding="utf-8-sig", newline="") as stream:
    get = CSafeLoader(stream).get_event
    while get() is not None:
        pass
"""


def _task_fields(t: int, project_id: int, *, every_mode: bool) -> list[tuple[str, str]]:
    # half literal names, half templates, so both paths are measured
    name = f"task_{t:02d}" if t % 2 else f'"{{label}}-{{project_id}}-{t:02d}"'
    fields = [("name", name)]
    if t % 5 == 0:
        fields.append(("export_mode", "INCREMENTAL"))
        since = "2020-05-20T00:00:00+08:00" if t % 10 else "1589932800000"
        fields.append(("incremental_since", since))
    elif every_mode:
        fields.append(("export_mode", "FULL"))
    if t % (3 if every_mode else 7) == 0:
        fields.append(("export_object_status", "DEPLOYED"))
    if t % 11 == 0:
        fields.append(("description", f"task {t} of workspace {project_id}"))
    return fields


def write_manifest(path: Path, *, flow: bool) -> int:
    """Write the benchmark manifest, a flow mapping or a block per task; returns its tasks.
    Written a line at a time, so this process stays small: the peak RSS Linux reports for a child
    counts what its parent held when it was spawned."""
    with path.open("w", encoding="utf-8") as out:
        out.writelines(f"{line}\n" for line in HEADER)
        for w in range(WORKSPACES):
            project_id = 10_001 + w
            out.write(
                f"  - project_id: {project_id}\n    label: ws-{w:04d}\n"
                f"    region: {REGIONS[w % len(REGIONS)]}\n    tasks:\n"
            )
            for t in range(TASKS_PER_WORKSPACE):
                fields = _task_fields(t, project_id, every_mode=flow)
                if flow:
                    out.write("      - {" + ", ".join(f"{k}: {v}" for k, v in fields) + "}\n")
                else:
                    out.write(f"      - {fields[0][0]}: {fields[0][1]}\n")
                    out.writelines(f"        {k}: {v}\n" for k, v in fields[1:])
    return WORKSPACES * TASKS_PER_WORKSPACE


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    peak_mb: float


def run_child(argv: list[str], cwd: Path, expect: str) -> Run:
    """Run one child to its end: wall seconds from spawn to exit, and its own peak RSS."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    if child.returncode != 0 or expect not in output:
        raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}):\n{output[-2000:]}")
    return Run(seconds, usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10))


def median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.seconds for r in runs), statistics.median(r.peak_mb for r in runs)
    )


def measure(path: Path, tasks: int, runs: int, label: str) -> bool:
    """Validate path `runs` times, and read it bare as often; print both; True within limits."""
    folder = path.parent  # not the repository: `-m runner` imports the installed package
    validate = [sys.executable, "-m", "runner", "validate", str(path)]
    ours = [run_child(validate, folder, f"ok: {tasks} tasks") for _ in range(runs)]
    parse = [sys.executable, "-c", BARE_PARSE, str(path)]
    bare = [run_child(parse, folder, "") for _ in range(runs)]
    mid, base = median(ours), median(bare)
    size_mb = path.stat().st_size / 2**20
    print(f"{label}: {tasks:,} tasks, {WORKSPACES:,} workspaces, {size_mb:.1f} MB of YAML")
    for name, runs_of, at in (("runner validate", ours, mid), ("bare libyaml parse", bare, base)):
        spread = ", ".join(f"{r.seconds:.2f}" for r in runs_of)
        print(f"  {name:<19}: {at.seconds:5.2f} s  peak RSS {at.peak_mb:6.1f} MB  ({spread} s)")
    print(
        f"  ratio              : {mid.seconds / base.seconds:5.2f}x the bare parse's time, "
        f"{mid.peak_mb / base.peak_mb:.2f}x its peak"
    )
    within = mid.seconds < MAX_SECONDS and mid.peak_mb < MAX_MB
    if not within:
        print(f"  FAIL: over the limit (< {MAX_SECONDS} s, < {MAX_MB:.0f} MB)", file=sys.stderr)
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs of each process (median)")
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        ok = True
        for flow, label in ((True, "flow mappings"), (False, "block style")):
            path = Path(folder) / f"bench-{'flow' if flow else 'block'}.yaml"
            ok = measure(path, write_manifest(path, flow=flow), runs, label) and ok
    print(f"limits: < {MAX_SECONDS} s, < {MAX_MB:.0f} MB per `runner validate` process (median)")
    if not ok:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
