"""Key providers: refreshed before expiry, once per lifetime, single-flight, never stalling."""

from __future__ import annotations

import io
import itertools

import anyio
import pytest

from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.keys import RefreshingKeys, StaticKeys, TransientError, schedule
from runner.logs import REDACTOR

T0 = 1_800_000_000.0


class Wall:
    """A wall clock that moves only when told; its sleep moves it and returns."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Source:
    """A fetch that hands out numbered keys living `lifetime` seconds; it can be held back."""

    def __init__(self, wall: Wall, lifetime: float) -> None:
        self.wall = wall
        self.lifetime = lifetime
        self.count = itertools.count(1)
        self.fetched_at: list[float] = []
        self.gate: anyio.Event | None = None
        self.failures: list[CredentialsError] = []

    async def __call__(self) -> Credentials:
        if self.gate is not None:
            await self.gate.wait()
        self.fetched_at.append(self.wall.now)
        if self.failures:
            raise self.failures.pop(0)
        n = next(self.count)
        return Credentials(
            f"STS.key{n}",
            f"secret-{n}-Xq9",
            f"token-{n}",
            expiration=self.wall.now + self.lifetime,
        )


def provider(wall: Wall, source: Source) -> RefreshingKeys:
    return RefreshingKeys(
        source, account="acs:ram::1:role/r", origin="test", now=wall, sleep=wall.sleep
    )


def test_margin_scales_with_lifetime() -> None:
    """min(5 min, 20 %) before expiry: an 8 s key at 6.4 s, a 900 s key at 12 min."""
    assert schedule(0.0, 8.0).refresh_at == pytest.approx(6.4)
    assert schedule(0.0, 8.0).usable_until == pytest.approx(7.6)
    assert schedule(0.0, 900.0).refresh_at == pytest.approx(720.0)
    assert schedule(0.0, 3600.0).refresh_at == pytest.approx(3300.0)
    assert schedule(0.0, None).refresh_at == float("inf")


@pytest.mark.anyio
@pytest.mark.parametrize(("lifetime", "due"), [(900.0, 720.0), (8.0, 6.4), (3600.0, 3300.0)])
async def test_one_fetch_per_lifetime_just_before_expiry(lifetime: float, due: float) -> None:
    """Used every second for ten lifetimes, a key is fetched once per lifetime, when due."""
    wall = Wall()
    source = Source(wall, lifetime)
    keys = provider(wall, source)
    step = lifetime / 100
    seen = set()
    for _ in range(1000):
        seen.add((await keys.current()).access_key_id)
        wall.now += step
    gaps = [b - a for a, b in itertools.pairwise(source.fetched_at)]
    assert len(source.fetched_at) == pytest.approx(1000 * step / due, abs=1)
    assert all(g == pytest.approx(due, abs=step) for g in gaps)
    assert len(seen) == len(source.fetched_at)


@pytest.mark.anyio
async def test_first_key_single_flight_under_concurrency() -> None:
    """Fifty callers without a key share one fetch and get the same key."""
    wall = Wall()
    source = Source(wall, 900.0)
    source.gate = anyio.Event()
    keys = provider(wall, source)
    got: list[str] = []

    async def use() -> None:
        got.append((await keys.current()).access_key_id)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(use)
        await anyio.wait_all_tasks_blocked()
        source.gate.set()
    assert len(source.fetched_at) == 1
    assert got == ["STS.key1"] * 50


@pytest.mark.anyio
async def test_background_refresh_never_stalls_callers() -> None:
    """Inside `async with`, a due refresh runs in the background: callers keep the valid key."""
    wall = Wall()
    source = Source(wall, 900.0)
    async with provider(wall, source) as keys:
        assert (await keys.current()).access_key_id == "STS.key1"
        wall.now += 750  # past the refresh time (720 s), well before the end
        source.gate = anyio.Event()
        with anyio.fail_after(1):  # a guard only: nothing here may wait for the fetch
            for _ in range(100):
                assert (await keys.current()).access_key_id == "STS.key1"
        await anyio.wait_all_tasks_blocked()
        assert len(source.fetched_at) == 1  # the one refresh is under way, held at the gate
        source.gate.set()
        await anyio.wait_all_tasks_blocked()
        assert (await keys.current()).access_key_id == "STS.key2"
    assert len(source.fetched_at) == 2


@pytest.mark.anyio
async def test_without_a_task_group_only_one_caller_fetches() -> None:
    """Outside `async with`, the caller that finds the refresh due fetches; the others go on."""
    wall = Wall()
    source = Source(wall, 900.0)
    keys = provider(wall, source)
    await keys.current()
    wall.now += 750
    source.gate = anyio.Event()
    first: list[str] = []
    async with anyio.create_task_group() as tg:

        async def refresher() -> None:
            first.append((await keys.current()).access_key_id)

        tg.start_soon(refresher)
        await anyio.wait_all_tasks_blocked()
        for _ in range(10):  # meanwhile: answered at once with the valid key
            assert (await keys.current()).access_key_id == "STS.key1"
        source.gate.set()
    assert first == ["STS.key2"]
    assert len(source.fetched_at) == 2


@pytest.mark.anyio
async def test_invalidate_fetches_a_fresh_key_even_before_due() -> None:
    """A key the service refused is never handed out again; an older id changes nothing."""
    wall = Wall()
    source = Source(wall, 900.0)
    keys = provider(wall, source)
    old = await keys.current()
    assert keys.invalidate("STS.key0") is True  # not the held key: nothing happens
    assert (await keys.current()).access_key_id == old.access_key_id
    assert keys.invalidate(old.access_key_id) is True
    assert (await keys.current()).access_key_id == "STS.key2"
    assert len(source.fetched_at) == 2


@pytest.mark.anyio
async def test_an_expired_key_is_never_used() -> None:
    """Past its usable end a key is replaced before the caller gets one."""
    wall = Wall()
    source = Source(wall, 8.0)
    keys = provider(wall, source)
    await keys.current()
    wall.now += 7.7  # past 8 s - 0.4 s guard, without a call in the refresh window
    assert (await keys.current()).access_key_id == "STS.key2"


@pytest.mark.anyio
async def test_failed_refresh_keeps_the_valid_key_then_fails_clearly(
    quiet_logs: io.StringIO,
) -> None:
    """A failed refresh keeps the valid key; after expiry the error is raised, briefly cached."""
    wall = Wall()
    source = Source(wall, 900.0)
    keys = provider(wall, source)
    await keys.current()
    wall.now += 750
    source.failures = [CredentialsError("test: AssumeRole refused: Forbidden")]
    assert (await keys.current()).access_key_id == "STS.key1"
    assert "credentials refresh failed" in quiet_logs.getvalue()
    wall.now += 200  # expired now
    source.failures = [CredentialsError("test: AssumeRole refused: Forbidden")]
    with pytest.raises(CredentialsError, match="Forbidden"):
        await keys.current()
    fetched = len(source.fetched_at)
    with pytest.raises(CredentialsError, match="Forbidden"):
        await keys.current()
    assert len(source.fetched_at) == fetched
    wall.now += 5  # after the pause a new fetch is tried, and succeeds
    assert (await keys.current()).access_key_id == "STS.key2"


@pytest.mark.anyio
async def test_transient_failures_are_retried_with_backoff() -> None:
    """A fetch that fails for a passing reason is tried three times, backing off 0.5 s, 1 s."""
    wall = Wall()
    source = Source(wall, 900.0)
    source.failures = [TransientError("no connection"), TransientError("HTTP 503")]
    keys = provider(wall, source)
    assert (await keys.current()).access_key_id == "STS.key1"
    assert wall.slept == [0.5, 1.0]


@pytest.mark.anyio
async def test_a_key_expired_on_arrival_is_refused() -> None:
    """A source handing out a key already expired (a wrong clock) is an error saying so."""
    wall = Wall()
    source = Source(wall, -5.0)
    with pytest.raises(CredentialsError, match="expired already"):
        await provider(wall, source).current()


@pytest.mark.anyio
async def test_every_fetched_secret_is_registered_for_masking(quiet_logs: io.StringIO) -> None:
    """Each fetched key's secret and token are masked wherever the logs would show them."""
    wall = Wall()
    keys = provider(wall, Source(wall, 8.0))
    for _ in range(3):
        creds = await keys.current()
        assert REDACTOR.redact(f"x {creds.access_key_secret} {creds.security_token}") == (
            "x [redacted] [redacted]"
        )
        wall.now += 7
    assert "secret-" not in quiet_logs.getvalue()


@pytest.mark.anyio
async def test_static_keys_cannot_be_renewed() -> None:
    """A fixed key is its own account label and cannot be replaced when refused."""
    keys = StaticKeys(Credentials("AKID", "s"))
    assert keys.account == "AKID"
    assert (await keys.current()).access_key_id == "AKID"
    assert keys.invalidate("AKID") is False


@pytest.mark.anyio
async def test_ready_hands_over_a_key_only_while_nothing_is_due() -> None:
    """`ready` gives the held key until its refresh is due, and None before the first fetch or
    once due, so the caller awaits `current` exactly when there is work to do."""
    wall = Wall()
    keys = provider(wall, Source(wall, 900.0))
    assert keys.ready() is None  # nothing fetched yet
    first = await keys.current()
    assert keys.ready() == first
    wall.now += 720.0  # the refresh is due
    assert keys.ready() is None
    assert StaticKeys(Credentials("AKID", "s")).ready() == Credentials("AKID", "s")
