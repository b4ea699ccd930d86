"""The real CLI runs --download against `runner sim`: packages on disk, exported in status."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import Cli, Sim, SimFactory, write_manifest

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(sim_factory: SimFactory) -> Sim:
    """A simulator whose exports take a second, with a few write faults."""
    return sim_factory("--export-duration", "1", "--error-rate", "0.05", "--reset-rate", "0.05")


def test_download_run_saves_every_package_and_status_shows_exported(
    cli: Cli, sim: Sim, tmp_path: Path
) -> None:
    """`run --download DIR` exits 0, saves one zip per task, and `status` shows each exported
    with its DownloadUrl (signature masked) and file; a rerun downloads nothing again."""
    workload = write_manifest(tmp_path / "tasks.yaml", workspaces=4, per_workspace=2)
    packages = tmp_path / "packages"
    args = ("--rate", "200", "--download", str(packages), "--poll-interval", "0.3")
    first = cli.run(workload.path, sim.url, *args)
    assert first.returncode == 0, first.stderr
    assert "8 downloaded" in first.stdout
    zips = sorted(packages.rglob("*.zip"))
    assert len(zips) == workload.size
    for path in zips:
        with zipfile.ZipFile(path) as package:
            assert "manifest.json" in package.namelist()
    assert not list(packages.rglob("*.part"))
    rows = cli.status()
    assert {row["state"] for row in rows} == {"exported"}
    for row in rows:
        assert row["download_url"].startswith(f"{sim.url}/download/")
        assert "Signature=[redacted]" in row["download_url"]
        assert Path(row["package_path"]).is_file()
        assert Path(row["package_path"]).parent.name == str(row["project_id"])
    for text in (first.stdout, first.stderr):
        assert "Signature=" not in text.replace("Signature=[redacted]", "")
    served = sim.stats()["downloads"]
    second = cli.run(workload.path, sim.url, *args)
    assert second.returncode == 0, second.stderr
    assert sim.stats()["downloads"] == served
    assert sim.stats()["starts_applied"] == workload.size
