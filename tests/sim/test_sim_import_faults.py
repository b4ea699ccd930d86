"""Faults on demand for the import leg: --faults-only-on, and the new flags reaching the sim."""

from __future__ import annotations

import random

import aiohttp
import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.sim.app import SimConfig
from runner.sim.faults import Fault, Faults, draw_fault
from tests.sim.uploads import CREATE_EXPORT, import_sim


@pytest.mark.anyio
async def test_faults_only_on_loses_only_the_named_actions_answers() -> None:
    """reset_rate=1 with faults_only_on CreateImportMigration: exports, starts, grants and
    uploads answer as usual; the import is made, its answer lost."""
    faults = Faults(reset_rate=1.0, faults_only_on=frozenset({"CreateImportMigration"}))
    async with import_sim(faults=faults) as sim:
        _, package_file = await sim.uploaded_package()
        assert sim.stats.faults["reset"] == 0
        with pytest.raises(aiohttp.ClientError):
            await sim.create_import(package_file)
        assert sim.stats.faults["reset"] == 1
        assert sim.stats.imports_applied == 1
        listing = await sim.call(
            "ListMigrations", {"ProjectId": "23456", "MigrationType": "IMPORT"}
        )
    assert listing.body["Data"]["TotalCount"] == 1


@pytest.mark.anyio
async def test_faults_only_on_can_name_a_read_and_the_grant() -> None:
    """Named reads are faulted too (without faults_on_reads): GetMigrationSummary and
    AuthorizeFileUpload answer 5xx, CreateExportMigration does not."""
    only = frozenset({"GetMigrationSummary", "AuthorizeFileUpload"})
    async with import_sim(faults=Faults(error_rate=1.0, faults_only_on=only)) as sim:
        created = await sim.call("CreateExportMigration", CREATE_EXPORT)
        ask = {"ProjectId": "12345", "MigrationId": str(created.body["Data"])}
        summary = await sim.call("GetMigrationSummary", ask)
        grant = await sim.authorize()
        assert sim.stats.grants_issued == 0
    assert created.status == 200
    assert summary.status in (500, 503)
    assert grant.status in (500, 503)


@pytest.mark.anyio
async def test_without_faults_only_on_the_grant_is_a_read() -> None:
    """error_rate=1 alone hits the writes; AuthorizeFileUpload, a read, is answered."""
    async with import_sim(faults=Faults(error_rate=1.0)) as sim:
        created = await sim.call("CreateExportMigration", CREATE_EXPORT)
        grant = await sim.authorize()
    assert created.status in (500, 503)
    assert grant.status == 200


def test_faults_only_on_leaves_the_draws_alone_otherwise() -> None:
    """Without faults_only_on, the draw is as before (writes, reads only with faults_on_reads);
    with it, an action not named draws nothing and consumes no randomness."""
    faults = Faults(error_rate=1.0)
    assert draw_fault(faults, random.Random(0), is_write=False, action="ListMigrations") is (
        Fault.NONE
    )
    assert draw_fault(faults, random.Random(0), is_write=True, action="StartMigration") in (
        Fault.UNAVAILABLE,
        Fault.INTERNAL,
    )
    only = Faults(error_rate=1.0, faults_only_on=frozenset({"StartMigration"}))
    rng = random.Random(0)
    assert draw_fault(only, rng, is_write=True, action="CreateExportMigration") is Fault.NONE
    assert rng.random() == random.Random(0).random()


def test_faults_only_on_refuses_an_unknown_action() -> None:
    """A name that is no action of the simulator's is refused up front."""
    with pytest.raises(ValueError, match="DeleteEverything"):
        Faults(faults_only_on=frozenset({"DeleteEverything"}))
    with pytest.raises(ValueError, match="upload_reset_rate"):
        Faults(upload_reset_rate=1.5)
    with pytest.raises(ValueError, match="upload_policy_ttl"):
        Faults(upload_policy_ttl=0.0)


def test_import_flags_reach_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every import-leg `sim` flag lands in the simulator's config under its own name."""
    from runner.commands import sim as command

    seen: list[SimConfig] = []
    monkeypatch.setattr(command, "run_forever", lambda config, port: seen.append(config))
    args = (
        "sim --port 0 --import-duration 7 --import-failure-rate 0.1 --import-partial-rate 0.2"
        " --upload-reset-rate 0.3 --upload-policy-ttl 60 --upload-max-bytes 1000"
        " --reset-rate 0.1 --faults-only-on CreateImportMigration --faults-only-on StartMigration"
    )
    result = CliRunner().invoke(cli, args.split(), standalone_mode=False)
    assert result.exception is None, result.output
    ((config,),) = [seen]
    faults = config.faults
    assert (config.import_duration, config.upload_max_bytes) == (7.0, 1000)
    assert (faults.import_failure_rate, faults.import_partial_rate) == (0.1, 0.2)
    assert (faults.upload_reset_rate, faults.upload_policy_ttl) == (0.3, 60.0)
    assert faults.faults_only_on == {"CreateImportMigration", "StartMigration"}
    assert faults.reset_rate == 0.1


def test_a_bad_faults_only_on_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """--faults-only-on with an unknown action stops `runner sim` with exit 2, naming it."""
    from runner.commands import sim as command

    served: list[SimConfig] = []
    monkeypatch.setattr(command, "run_forever", lambda config, port: served.append(config))
    result = CliRunner().invoke(cli, ["sim", "--faults-only-on", "Nope"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "Nope" in result.stderr
    assert not served
