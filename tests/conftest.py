"""Shared fixtures: the anyio backend, the reference folder, a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.clock import FakeClock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
