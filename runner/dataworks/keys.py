"""Keys that stay valid: the provider a client asks for the key to sign each request with.

`StaticKeys` holds one key. `RefreshingKeys` holds a temporary key from a source (STS, a
credentials URI, ECS metadata, a command) and fetches the next one shortly before it expires: the
margin is min(5 min, 20 % of the key's lifetime), so a 900 s key is used for 12 min and an 8 s key
is replaced 1.6 s before its end. One fetch runs at a time; meanwhile every caller keeps signing
with the held key, which is still valid. A caller waits only when no valid key is held: at first
use, after expiry, or after the service refused the key (`invalidate`). Given a task group (its
own inside `async with`, or the one a `KeyRing` shares), the refresh runs there, so no caller waits
for it at all; without one, the one caller that finds it due fetches while the others go on.

Time is an injected wall clock (epoch seconds): expirations are wall-clock instants.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol, Self

import anyio
import anyio.abc

from runner.dataworks.credentials import Credentials, CredentialsError
from runner.logs import REDACTOR, get_logger

log = get_logger("runner.keys")

MAX_MARGIN = 300.0  # seconds before expiry a refresh is due, at most ...
MARGIN_SHARE = 0.2  # ... and at most this share of the key's lifetime
MAX_GUARD = 10.0  # a key is not used in its last seconds: a request signed then may land late
GUARD_SHARE = 0.05
FAILURE_PAUSE = 2.0  # after a failed fetch, callers without a valid key fail at once this long
ATTEMPTS = 3  # a fetch is tried this often when it fails for a passing reason
FIRST_BACKOFF = 0.5  # seconds, doubled at each further try

Now = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Fetch = Callable[[], Awaitable[Credentials]]


async def open_group() -> anyio.abc.TaskGroup:
    """A task group for background refreshes, entered in the calling task."""
    group = anyio.create_task_group()
    await group.__aenter__()
    return group


async def close_group(group: anyio.abc.TaskGroup | None) -> None:
    """Cancel the refreshes still running and leave the group, without letting it see (and wrap
    into an exception group) whatever the code inside the block raised: that goes on as is."""
    if group is not None:
        group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)


class TransientError(CredentialsError):
    """A fetch failed for a reason that may pass (no connection, a 5xx, throttled)."""


class KeyProvider(Protocol):
    """What a client signs with."""

    @property
    def account(self) -> str:
        """A stable label of the identity, for rate-limit buckets: it does not change when
        temporary keys rotate."""

    async def current(self) -> Credentials:
        """The key to sign the next request with; CredentialsError when none can be had."""

    def ready(self) -> Credentials | None:
        """The key `current` would return at once, with nothing to fetch or refresh; None when
        `current` has work to do (the caller then awaits it)."""

    def invalidate(self, access_key_id: str) -> bool:
        """The service refused this key as expired: never hand it out again. True when a fresh
        key can be fetched (the request is worth sending again), False for a fixed key."""


class StaticKeys:
    """One key that never changes (a long-term AccessKey or a static STS token)."""

    def __init__(self, credentials: Credentials, *, account: str | None = None) -> None:
        self._credentials = credentials
        self._account = account or credentials.access_key_id

    @property
    def account(self) -> str:
        return self._account

    async def current(self) -> Credentials:
        return self._credentials

    def ready(self) -> Credentials | None:
        return self._credentials

    def invalidate(self, access_key_id: str) -> bool:
        return False


class NoKeys:
    """No key at all: the default identity of a run whose every workspace names its profile.
    Never asked for one; if it were, the request fails as without credentials (nothing sent)."""

    def __init__(self, why: str) -> None:
        self._why = why

    @property
    def account(self) -> str:
        return "(no default credentials)"

    async def current(self) -> Credentials:
        raise CredentialsError(f"no default credentials were resolved: {self._why}")

    def ready(self) -> Credentials | None:
        return None

    def invalidate(self, access_key_id: str) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a key is due for refresh and until when it may sign."""

    refresh_at: float
    usable_until: float


def schedule(fetched_at: float, expiration: float | None) -> Schedule:
    """The refresh time of a key fetched at `fetched_at`: `margin` before its expiration, and
    the end of its use a `guard` before it (both scale with the lifetime)."""
    if expiration is None:
        return Schedule(math.inf, math.inf)
    lifetime = max(0.0, expiration - fetched_at)
    margin = min(MAX_MARGIN, MARGIN_SHARE * lifetime)
    guard = min(MAX_GUARD, GUARD_SHARE * lifetime)
    return Schedule(expiration - margin, expiration - guard)


@dataclass(slots=True)
class _Held:
    credentials: Credentials
    schedule: Schedule


class _Flight:
    """One fetch in progress; callers that need its key wait for `done`."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: CredentialsError | None = None


class RefreshingKeys:
    """Temporary keys from `fetch`, cached and refreshed before they expire (module docstring)."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        account: str,
        origin: str,
        now: Now = time.time,
        sleep: Sleep = anyio.sleep,
        attempts: int = ATTEMPTS,
        probe: bool = False,
        group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        self._fetch = fetch
        self._account = account
        self._origin = origin
        self._now = now
        self._sleep = sleep
        self._attempts = max(1, attempts)
        self._probe = probe  # the first fetch is tried once: the source may not be there
        self._held: _Held | None = None
        self._flight: _Flight | None = None
        self._failure: CredentialsError | None = None
        self._quiet_until = -math.inf  # no new fetch starts before then (after a failure)
        self._group = group  # where background refreshes run
        self._own: anyio.abc.TaskGroup | None = None  # the group of `async with`, if entered
        self.fetches = 0  # keys fetched so far (tests, stats)

    @property
    def account(self) -> str:
        return self._account

    @property
    def origin(self) -> str:
        return self._origin

    async def __aenter__(self) -> Self:
        self._own = await open_group()
        self._group = self._own
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._group = None
        await close_group(self._own)
        flight, self._flight = self._flight, None
        if flight is not None:  # scheduled but never started: release any waiter
            flight.done.set()

    def ready(self) -> Credentials | None:
        held = self._held
        if held is not None and self._now() < held.schedule.refresh_at:
            return held.credentials
        return None

    async def current(self) -> Credentials:
        held = self._held
        if held is not None:
            now = self._now()
            if now < held.schedule.refresh_at:  # the common case: nothing to do
                return held.credentials
            if now < held.schedule.usable_until:
                if self._flight is None and now >= self._quiet_until:
                    flight = self._flight = _Flight()
                    if self._group is not None:
                        self._group.start_soon(self._refresh_quietly, flight)
                    else:  # no task group: this caller fetches, the others go on meanwhile
                        await self._refresh_quietly(flight)
                        return await self.current()
                return held.credentials
        return await self._wait_for_key()

    def invalidate(self, access_key_id: str) -> bool:
        held = self._held
        if held is not None and held.credentials.access_key_id == access_key_id:
            self._held = None
            self._quiet_until = -math.inf
            log.warning("key refused as expired; fetching a fresh one", source=self._origin)
        return True

    async def _wait_for_key(self) -> Credentials:
        while True:
            held = self._held
            if held is not None and self._now() < held.schedule.usable_until:
                return held.credentials
            flight = self._flight
            if flight is None:
                if self._failure is not None and self._now() < self._quiet_until:
                    raise self._failure
                flight = self._flight = _Flight()
                return await self._fly(flight)
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            # the key arrived (or the fetch was cancelled): look again

    async def _refresh_quietly(self, flight: _Flight) -> None:
        """A refresh while the held key is still valid: a failure is logged, not raised; the held
        key stays in use and the next try waits a little."""
        try:
            await self._fly(flight)
        except CredentialsError as error:
            log.warning(
                "credentials refresh failed; the current key stays in use until it expires",
                source=self._origin,
                error=str(error),
            )

    async def _fly(self, flight: _Flight) -> Credentials:
        """Fetch as `flight` (already published in `self._flight`)."""
        try:
            credentials = await self._fetch_with_retries()
        except CredentialsError as error:
            flight.error = error
            self._failure = error
            self._quiet_until = self._now() + self._pause()
            raise
        finally:
            self._flight = None
            flight.done.set()
        return credentials

    def _pause(self) -> float:
        """How long after a failed fetch the next one may start."""
        held = self._held
        if held is None:
            return FAILURE_PAUSE
        left = held.schedule.usable_until - self._now()
        return max(FAILURE_PAUSE, min(30.0, left / 4))

    async def _fetch_with_retries(self) -> Credentials:
        attempts = 1 if self._probe and not self.fetches else self._attempts
        for attempt in range(attempts):
            try:
                credentials = await self._fetch()
            except TransientError:
                if attempt + 1 >= attempts:
                    raise
                await self._sleep(FIRST_BACKOFF * 2**attempt)
                continue
            return self._hold(credentials)
        raise AssertionError("unreachable")  # pragma: no cover

    def _hold(self, credentials: Credentials) -> Credentials:
        REDACTOR.add(credentials.access_key_secret, credentials.security_token)
        now = self._now()
        plan = schedule(now, credentials.expiration)
        if plan.usable_until <= now:
            raise CredentialsError(
                f"{self._origin} handed out a key that has expired already"
                " (is this machine's clock right?)"
            )
        if credentials.source != self._origin:
            credentials = replace(credentials, source=self._origin)
        self._held = _Held(credentials, plan)
        self._failure = None
        self.fetches += 1
        lifetime = None if credentials.expiration is None else credentials.expiration - now
        log.info(
            "credentials fetched",
            source=self._origin,
            account=self._account,
            valid_for_s=None if lifetime is None else round(lifetime, 1),
        )
        return credentials
