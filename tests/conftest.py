"""Shared fixtures: quiet logs, the anyio backend, a fake clock."""

from __future__ import annotations

import io

import pytest

from runner import logs
from runner.clock import FakeClock


@pytest.fixture(autouse=True)
def quiet_logs() -> io.StringIO:
    """Each test logs into its own buffer, never into a stream an earlier test closed."""
    buffer = io.StringIO()
    logs.configure(stream=buffer, json=True)
    return buffer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
