"""The `run` command's options as one value, and what they resolve to (the stage, the packages
folder, the phases' options); invalid values refused before anything is sent."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from runner.commands.common import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    UsageError,
)
from runner.dataworks.client import SignatureVersion
from runner.dataworks.download import DEFAULT_MAX_PACKAGE
from runner.engine import PhaseOptions
from runner.models import MAX_CONCURRENCY
from runner.phases import Stage
from runner.phases.create import DEFAULT_VISIBILITY_WINDOW

DEFAULT_PACKAGES = "packages"  # with --import and no --download: the folder beside the journal


@dataclass(frozen=True, slots=True)
class RunRequest:
    """The `run` command's options, as one value: field names are the flags' names."""

    manifests: tuple[str, ...]
    journal: Path
    endpoint: str | None = None
    rate: float | None = None
    read_rate: float | None = None
    concurrency: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    signature_version: SignatureVersion = "v3"
    only_failed: bool = False
    adopt_existing: bool = False
    progress: bool = True
    profile: str | None = None
    start: bool = False  # start the created tasks (StartMigration)
    wait: bool = False  # wait for their exports to end (implies start)
    download: Path | None = None  # save the packages under this folder (implies wait)
    # upload each package and import it into its target workspace (implies download, into
    # DEFAULT_PACKAGES beside the journal unless --download names a folder)
    imports: bool = False
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    visibility_window: float = DEFAULT_VISIBILITY_WINDOW
    max_package_size: int = DEFAULT_MAX_PACKAGE  # bytes; a larger package fails its download
    seed: int | None = None  # the retry jitter's random source (tests)

    @property
    def stage(self) -> Stage:
        """How far every task should go: --import implies --download implies --wait implies
        --start."""
        return Stage.of(
            start=self.start,
            wait=self.wait,
            download=self.download is not None,
            imports=self.imports,
        )

    @property
    def packages(self) -> Path | None:
        """Where the packages are saved: --download's folder, else with --import a folder
        beside the journal."""
        if self.download is None and self.imports:
            return self.journal.parent / DEFAULT_PACKAGES
        return self.download

    def phase_options(self, concurrency: int) -> PhaseOptions:
        return PhaseOptions(
            stage=self.stage,
            concurrency=concurrency,
            adopt_existing=self.adopt_existing,
            # resolved, so the package paths in the journal mean the same from any folder
            download_dir=None if self.packages is None else self.packages.resolve(),
            wait_timeout=self.wait_timeout,
            poll_interval=self.poll_interval,
            download_timeout=max(self.timeout, 30.0),
            visibility_window=self.visibility_window,
        )

    def check(self) -> None:
        """Refuse values no run can use (UsageError): nothing is sent."""
        positive = {"--rate": self.rate, "--read-rate": self.read_rate, "--timeout": self.timeout}
        numbers = {
            **positive,
            "--wait-timeout": self.wait_timeout,
            "--visibility-window": self.visibility_window,
            "--poll-interval": self.poll_interval,
        }
        for flag, value in numbers.items():  # nan passes every comparison below
            if value is not None and not math.isfinite(value):
                raise UsageError(f"{flag} must be a finite number")
        for flag, value in positive.items():
            if value is not None and value <= 0:
                raise UsageError(f"{flag} must be > 0")
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be from 1 to {MAX_CONCURRENCY}")
        if self.wait_timeout < 0:
            raise UsageError("--wait-timeout must be >= 0")
        if self.visibility_window < 0:
            raise UsageError("--visibility-window must be >= 0")
        if self.poll_interval <= 0:
            raise UsageError("--poll-interval must be > 0")
        if self.max_package_size <= 0:
            raise UsageError("--max-package-size must be > 0")
        download = self.packages
        if download is not None and download.exists() and not download.is_dir():
            raise UsageError(f"--download {download}: not a folder")
