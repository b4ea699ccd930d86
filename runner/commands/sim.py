"""runner sim: the DataWorks simulator as a server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from runner.commands.common import ExitCode
from runner.sim.app import SimConfig
from runner.sim.auth import Key
from runner.sim.faults import Faults
from runner.sim.objects import DEFAULT_MAX_SIZE
from runner.sim.server import run_forever

# The key the demo and the README's rehearsal use. It opens nothing but the simulator.
DEMO_KEY = Key("demo-access-key-id", "demo-access-key-secret")

_FAULT_FIELDS = frozenset(f.name for f in dataclasses.fields(Faults))


def parse_key(text: str) -> Key:
    """ID:SECRET[:TOKEN] → Key."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError("a --key is ID:SECRET or ID:SECRET:TOKEN, each part non-empty")
    return Key(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


@dataclass(frozen=True, slots=True)
class SimOptions:
    """The `sim` command's flags as one value. A field named like a `Faults` field is that
    fault's setting: adding a fault is a `Faults` field and a flag of the same name."""

    port: int = 8080
    keys: tuple[str, ...] = ()
    seed: int = 0
    allow_duplicate_names: bool = False
    export_duration: float = 5.0
    download_ttl: float = 3600.0
    import_duration: float = 5.0
    upload_max_bytes: int = DEFAULT_MAX_SIZE
    # faults
    qps_limit: int | None = None
    daily_quota: int | None = None
    retry_after: bool = False
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    applied_error_rate: float = 0.0
    export_failure_rate: float = 0.0
    latency: float = 0.0
    hang_seconds: float = 30.0
    missing_projects: tuple[int, ...] = ()
    apply_lag: float = 0.0
    max_page_size: int | None = None
    hostile_rate: float = 0.0
    sts_ttl: float = 3600.0
    revoke_rate: float = 0.0
    import_failure_rate: float = 0.0
    import_partial_rate: float = 0.0
    upload_reset_rate: float = 0.0
    upload_policy_ttl: float = 3600.0
    faults_only_on: tuple[str, ...] = ()

    def faults(self) -> Faults:
        """The fault settings (ValueError when one is out of range)."""
        values = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name in _FAULT_FIELDS
        }
        values["missing_projects"] = frozenset(self.missing_projects)
        values["faults_only_on"] = frozenset(self.faults_only_on)
        return Faults(**values)

    def config(self) -> SimConfig:
        """The simulator these options describe (ValueError on a bad value)."""
        if not 0 <= self.port <= 65535:
            raise ValueError("--port must be within 0..65535")
        if self.export_duration < 0 or self.download_ttl <= 0:
            raise ValueError("--export-duration must be >= 0 and --download-ttl > 0")
        if self.import_duration < 0 or self.upload_max_bytes < 1:
            raise ValueError("--import-duration must be >= 0 and --upload-max-bytes >= 1")
        keys = [parse_key(k) for k in self.keys] or [DEMO_KEY]
        return SimConfig(
            keys={k.access_key_id: k for k in keys},
            faults=self.faults(),
            seed=self.seed,
            unique_names=not self.allow_duplicate_names,
            export_duration=self.export_duration,
            download_ttl=self.download_ttl,
            import_duration=self.import_duration,
            upload_max_bytes=self.upload_max_bytes,
        )


def execute(options: SimOptions, flags: Mapping[str, str] | None = None) -> ExitCode:
    """Serve until stopped. `flags` names each option's flag by its field (qps_limit: --qps),
    so that a refused value is told by the flag the operator typed."""
    try:
        config = options.config()
    except ValueError as error:
        message = str(error)
        for field, flag in (flags or {}).items():
            message = re.sub(rf"\b{re.escape(field)}\b", flag, message)
        print(f"error: {message}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"simulator accepting keys: {', '.join(config.keys)}", file=sys.stderr)
    try:
        run_forever(config, options.port)
    except OSError as error:
        print(f"error: cannot listen on 127.0.0.1:{options.port}: {error}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK
