"""The locks: every dependency pyproject.toml names is pinned there, to a version it allows, with
hashes, and the runtime and dev locks agree."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


@dataclass(frozen=True, slots=True)
class Pin:
    version: Version
    hashes: int


def read_lock(name: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: str | None = None
    for line in (ROOT / name).read_text().splitlines():
        found = PIN.match(line)
        if found:
            current = canonicalize_name(found["name"])
            pins[current] = Pin(Version(found["version"]), 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            pins[current] = Pin(pins[current].version, pins[current].hashes + 1)
    return pins


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(*groups: str) -> list[Requirement]:
    project = pyproject()["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        found += [Requirement(r) for r in project["optional-dependencies"][group]]
    return found


def assert_pinned(lock: dict[str, Pin], wanted: list[Requirement]) -> None:
    for requirement in wanted:
        pin = lock.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is not in the lock: run `make lock`"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"the lock pins {requirement.name} {pin.version}, outside {requirement.specifier}: "
            "run `make lock`"
        )


def test_runtime_lock_pins_every_runtime_dependency() -> None:
    """requirements.lock pins each runtime dependency to a version pyproject.toml allows."""
    assert_pinned(read_lock("requirements.lock"), requirements())


def test_dev_lock_pins_runtime_and_dev_dependencies() -> None:
    """requirements-dev.lock pins each runtime and dev dependency to an allowed version."""
    assert_pinned(read_lock("requirements-dev.lock"), requirements("dev"))


def test_the_locks_agree() -> None:
    """Every package of the runtime lock has the same version in the dev lock."""
    runtime, dev = read_lock("requirements.lock"), read_lock("requirements-dev.lock")
    assert {n: p.version for n, p in runtime.items()} == {n: dev[n].version for n in runtime}


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_pin_has_a_hash_and_the_installers_are_locked(lock: str) -> None:
    """Each pin carries hashes (installs use --require-hashes); pip and the build backend are
    pinned too, the backend at a version the build system asks for."""
    pins = read_lock(lock)
    assert [name for name, pin in pins.items() if pin.hashes == 0] == []
    assert "pip" in pins
    build = [Requirement(r) for r in pyproject()["build-system"]["requires"]]
    assert_pinned(pins, build)


def test_distribution_name_is_not_the_import_name() -> None:
    """The distribution has a name of its own (PyPI's `runner` is another project); the command
    and the import package stay `runner`."""
    project = pyproject()["project"]
    assert project["name"] == "dataworks-runner"
    assert project["scripts"] == {"runner": "runner.entry:main"}
    assert project["license"] == "Apache-2.0"
