"""Shared fixtures: quiet logs, the anyio backend, a fake clock; the hypothesis profiles."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, settings

from runner import logs
from runner.clock import FakeClock

# `make test`: a bounded number of examples, so the whole suite stays fast; in CI the same
# examples every time (derandomized, no example database). `make fuzz`: many more.
# HYPOTHESIS_PROFILE picks one; CI=true picks "ci".
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("test", max_examples=50, **_COMMON)  # type: ignore[arg-type]
settings.register_profile(
    "ci",
    max_examples=50,
    derandomize=True,
    database=None,
    **_COMMON,  # type: ignore[arg-type]
)
settings.register_profile("fuzz", max_examples=5_000, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "test")
)


@pytest.fixture(autouse=True)
def quiet_logs() -> io.StringIO:
    """Each test logs into its own buffer, never into a stream an earlier test closed."""
    buffer = io.StringIO()
    logs.configure(stream=buffer, json=True)
    return buffer


@pytest.fixture(autouse=True)
def no_metadata_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test asks the ECS metadata service (100.100.100.200) for credentials by accident."""
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
