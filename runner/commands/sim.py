"""runner sim: the DataWorks simulator as a server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runner.commands.common import ExitCode
from runner.sim.app import SimConfig
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.server import run_forever

# The key the demo and the README's rehearsal use. It opens nothing but the simulator.
DEMO_KEY = Key("demo-access-key-id", "demo-access-key-secret")


def parse_key(text: str) -> Key:
    """ID:SECRET[:TOKEN] → Key."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError("a --key is ID:SECRET or ID:SECRET:TOKEN, each part non-empty")
    return Key(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def execute(
    *,
    port: int,
    keys: Sequence[str],
    qps: int | None,
    daily_quota: int | None,
    error_rate: float,
    timeout_rate: float,
    reset_rate: float,
    latency: float,
    missing: Sequence[int],
    seed: int,
    applied_error_rate: float = 0.0,
    hang: float = 30.0,
    retry_after: bool = False,
    allow_duplicate_names: bool = False,
    export_duration: float = 5.0,
    export_failure_rate: float = 0.0,
    download_ttl: float = 3600.0,
) -> ExitCode:
    try:
        parsed = [parse_key(k) for k in keys] or [DEMO_KEY]
        faults = Faults(
            qps_limit=qps,
            daily_quota=daily_quota,
            error_rate=error_rate,
            timeout_rate=timeout_rate,
            reset_rate=reset_rate,
            applied_error_rate=applied_error_rate,
            hang_seconds=hang,
            latency=latency,
            missing_projects=frozenset(missing),
            retry_after=retry_after,
            export_failure_rate=export_failure_rate,
        )
        if export_duration < 0 or download_ttl <= 0:
            raise ValueError("--export-duration must be >= 0 and --download-ttl > 0")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if not 0 <= port <= 65535:
        print("error: --port must be within 0..65535", file=sys.stderr)
        return ExitCode.USAGE
    config = SimConfig(
        keys={k.access_key_id: k for k in parsed},
        faults=faults,
        seed=seed,
        unique_names=not allow_duplicate_names,
        export_duration=export_duration,
        download_ttl=download_ttl,
    )
    names = ", ".join(k.access_key_id for k in parsed)
    print(f"simulator accepting keys: {names}", file=sys.stderr)
    try:
        run_forever(config, port)
    except OSError as error:
        print(f"error: cannot listen on 127.0.0.1:{port}: {error}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK
