"""`runner sim --hostile-rate`: every hostile kind of answer, served over HTTP, is classified by
the real client (an unknown outcome for a write, retryable for a read); writes are applied first
in about half of the cases."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from functools import partial

import pytest

from runner.dataworks.actions import CREATE_EXPORT, GET_SUMMARY, LIST, START
from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.transport import AiohttpTransport
from runner.models import ApiError, ErrorKind, ExportSpec, TaskKey
from runner.sim.app import STATS, SimConfig, allow_all, build_app
from runner.sim.faults import Faults
from runner.sim.hostile import GENERIC_KINDS, ID_KINDS, LIST_KINDS, Hostile, draw_hostile, kinds_for
from runner.sim.server import serve


def test_every_kind_fits_some_action_and_lists_get_them_all() -> None:
    """ListMigrations can get every kind, creates the id kinds too, other actions the rest."""
    assert set(kinds_for(LIST)) == set(Hostile)
    assert set(kinds_for(CREATE_EXPORT)) == set(GENERIC_KINDS) | set(ID_KINDS)
    assert not set(kinds_for(START)) & (set(ID_KINDS) | set(LIST_KINDS))


def test_writes_are_applied_first_in_about_half_the_cases() -> None:
    """Of hostile answers to writes about half follow an applied write; reads always run."""
    rng = random.Random(7)
    draws = [draw_hostile(1.0, rng, CREATE_EXPORT) for _ in range(2000)]
    applied = sum(1 for d in draws if d is not None and d.apply)
    assert 850 <= applied <= 1150
    assert all(d is not None and d.apply for d in (draw_hostile(1.0, rng, LIST) for _ in range(50)))
    assert draw_hostile(0.0, rng, LIST) is None


def test_the_rate_is_a_fault_setting_within_0_and_1() -> None:
    """--hostile-rate outside [0, 1] is refused like every other rate."""
    with pytest.raises(ValueError, match="hostile_rate"):
        Faults(hostile_rate=1.5)


@pytest.mark.anyio
async def test_every_hostile_answer_is_classified_by_the_client() -> None:
    """Against a simulator answering every request with a hostile answer, each call of each
    operation raises an ApiError of the kind that keeps a run safe, and every kind is served."""
    config = SimConfig(faults=Faults(hostile_rate=1.0), checker=allow_all, seed=3)
    app = build_app(config)
    async with serve(config, app=app) as url, AiohttpTransport() as transport:
        client = DataWorksClient(transport, Credentials("AK", "SK"), Endpoints(url), timeout=10)
        for n in range(40):
            spec = ExportSpec(TaskKey("cn-shanghai", 12345, f"t{n}"))
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                CREATE_EXPORT.name: partial(client.create_export_migration, spec),
                LIST.name: partial(client.list_migrations, "cn-shanghai", 12345),
                START.name: partial(client.start_migration, "cn-shanghai", 12345, 100001),
                GET_SUMMARY.name: partial(client.get_migration_summary, "cn-shanghai", 12345, 1),
            }
            for name, call in calls.items():
                with pytest.raises(ApiError) as raised:
                    await call()
                expected = (
                    ErrorKind.UNKNOWN_OUTCOME
                    if name in (CREATE_EXPORT.name, START.name)
                    else ErrorKind.RETRYABLE
                )
                assert raised.value.kind is expected, (name, raised.value)
        stats = app[STATS]
    served = {key.removeprefix("hostile_") for key in stats.faults}
    assert served == {kind.value for kind in Hostile}
    assert 0 < stats.hostile_applied < 80
    assert 0 < stats.creates_applied <= stats.hostile_applied
