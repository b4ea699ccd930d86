"""The image: a base pinned by digest, a build context without secrets, the journal and the
packages on a volume, dependencies installed from the hashed lock."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip() for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines() if line.strip()
]


def instructions(keyword: str) -> list[str]:
    return [line for line in INSTRUCTIONS if line.split(" ", 1)[0] == keyword]


def test_the_base_image_is_pinned_by_digest() -> None:
    """Every FROM names its image by sha256 digest: a moved tag cannot change the build."""
    froms = instructions("FROM")
    assert froms
    for line in froms:
        assert re.search(r"@sha256:[0-9a-f]{64}(\s|$)", line), line


def test_the_build_context_leaves_out_the_journal_venvs_and_history() -> None:
    """.dockerignore keeps .runner/ (presigned URLs), the virtual environments and .git out."""
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".runner", ".venv", ".venv-lock", ".git"} <= ignored


def test_the_journal_and_packages_live_on_a_declared_volume() -> None:
    """The working folder (where .runner/journal.db goes) is a declared volume, owned by the
    unprivileged user the image runs as."""
    (volume,) = instructions("VOLUME")
    workdir = instructions("WORKDIR")[-1].split(" ", 1)[1]
    assert f'"{workdir}"' in volume or volume.endswith(f" {workdir}")
    assert instructions("USER")[-1] != "USER root"
    assert f"-o runner -g runner {workdir}" in DOCKERFILE


def test_dependencies_come_from_the_hashed_lock() -> None:
    """pip installs the runtime lock with --require-hashes, then the project without deps."""
    (run,) = [line for line in instructions("RUN") if "pip install" in line]
    assert "--require-hashes -r requirements.lock" in run
    assert "--no-deps" in run
    assert "COPY requirements.lock" in DOCKERFILE
