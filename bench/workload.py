"""What the benchmarks share: the manifests they run (FULL exports with unique names, N per
workspace) and a record of when requests reached the simulator."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler


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


@dataclass(slots=True)
class Arrivals:
    """When each API request reached the simulator (its clock, epoch seconds), by action."""

    times: list[tuple[float, str]] = field(default_factory=list)

    def of(self, action: str) -> list[float]:
        return [t for t, a in self.times if a == action]


def record_arrivals(app: web.Application, clock: Callable[[], float] = time.time) -> Arrivals:
    """Wrap the simulator app (before it is served) so that every request's arrival is noted,
    read on `clock`: pass the clock the simulator's config uses, so seconds mean the same."""
    arrivals = Arrivals()

    @web.middleware
    async def note(request: web.Request, handler: Handler) -> web.StreamResponse:
        action = request.headers.get("x-acs-action") or request.query.get("Action") or ""
        arrivals.times.append((clock(), action))
        return await handler(request)

    app.middlewares.append(note)
    return arrivals


def per_second(times: list[float]) -> Counter[int]:
    """How many of `times` fall in each calendar second."""
    return Counter(math.floor(t) for t in times)


def span_rate(times: list[float]) -> float:
    """The rate between the first and the last of `times`: (n - 1) / (last - first)."""
    if len(times) < 2 or max(times) <= min(times):
        return 0.0
    return (len(times) - 1) / (max(times) - min(times))
