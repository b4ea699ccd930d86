"""Identities: a profile name (or none) → a key provider that is fetched, cached and refreshed.

`KeyRing` is what a run opens once: `await ring.keys(profile)` walks the chain
(`runner.dataworks.sources`), builds the provider for the recipe found, fetches its first key (so
a broken source fails before anything is sent) and keeps it for the next caller naming the same
profile. Every provider's background refresh runs in the ring's `async with` block. STS and the
credentials sources are reached through the run's transport; with `endpoint` (`--endpoint`) STS
goes there too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from runner.dataworks import fetchers, sources
from runner.dataworks.credentials import Credentials, CredentialsError, NotFound
from runner.dataworks.keys import (
    Fetch,
    KeyProvider,
    Now,
    RefreshingKeys,
    Sleep,
    StaticKeys,
    close_group,
    open_group,
)
from runner.dataworks.sources import Recipe
from runner.dataworks.sts import EXPIRED_TOKEN, Sts, StsRefused, sts_endpoint
from runner.dataworks.transport import Transport
from runner.logs import REDACTOR

__all__ = ["KeyRing", "describe"]

MAX_TOKEN_FILE = 64 * 1024  # bytes of an OIDC token file


def describe(
    profile: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> str:
    """Which mode and source a run would take its keys from (no network); CredentialsError
    when there are none or the source is broken."""
    env = os.environ if environ is None else environ
    recipes, _ = sources.find(profile, environ=env, home=home or Path.home())
    return " or ".join(str(r.origin) for r in recipes)


class KeyRing:
    """The run's identities, one provider per profile name, refreshed in one task group."""

    def __init__(
        self,
        transport: Transport,
        *,
        endpoint: str | None = None,
        timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
        home: Path | None = None,
        metadata_url: str = fetchers.ECS_METADATA_URL,
        now: Now = time.time,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._timeout = timeout
        self._environ = os.environ if environ is None else environ
        self._home = home
        self._metadata_url = metadata_url
        self._now = now
        self._sleep = sleep
        self._providers: dict[str | None, KeyProvider] = {}
        self._failures: dict[str | None, CredentialsError] = {}  # a profile that gave no key
        self._locks: dict[str | None, anyio.Lock] = {}  # one per profile: others go on meanwhile
        self._group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._group = await open_group()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        await close_group(group)

    async def keys(self, profile: str | None = None) -> KeyProvider:
        """The provider of `profile` (None: the default chain), holding a valid key; the same
        provider for every call naming the same profile. CredentialsError naming the mode and
        the source when none can be had (raised again, without a new try, for the same profile).
        May be called from any task inside the block."""
        if self._group is None:
            raise RuntimeError("KeyRing.keys() outside 'async with'")
        async with self._locks.setdefault(profile, anyio.Lock()):
            provider = self._providers.get(profile)
            if provider is None:
                if profile in self._failures:
                    raise self._failures[profile]
                try:
                    provider = await self._resolve(profile)
                except CredentialsError as error:
                    self._failures[profile] = error
                    raise
                self._providers[profile] = provider
            return provider

    async def _resolve(self, profile: str | None) -> KeyProvider:
        home = self._home or Path.home()
        recipes, tried = sources.find(profile, environ=self._environ, home=home)
        failures: list[str] = []
        for recipe in recipes:
            probe = isinstance(recipe, sources.EcsRole) and recipe.probe
            try:
                return await self._open(recipe, probe=probe)
            except CredentialsError as error:
                if not probe:  # a configured source that fails is an error, not a next step
                    raise
                failures.append(str(error))
        raise NotFound(
            f"no credentials found; looked in: {', '.join(tried)} ({'; '.join(failures)})"
        )

    async def _open(self, recipe: Recipe, *, probe: bool = False) -> KeyProvider:
        """The provider of a recipe, holding its first key. A probe (a source that may simply
        not be there, like ECS metadata off ECS) is tried once, without retries."""
        if isinstance(recipe, sources.Static):
            REDACTOR.add(recipe.credentials.access_key_secret, recipe.credentials.security_token)
            return StaticKeys(recipe.credentials, account=sources.account_of(recipe))
        fetch = await self._fetcher(recipe)
        provider = RefreshingKeys(
            fetch,
            account=sources.account_of(recipe),
            origin=str(recipe.origin),
            now=self._now,
            sleep=self._sleep,
            probe=probe,
            group=self._group,
        )
        await provider.current()
        return provider

    async def _fetcher(self, recipe: Recipe) -> Fetch:
        what = str(recipe.origin)
        transport, timeout = self._transport, self._timeout
        match recipe:
            case sources.AssumeRole():
                return await self._assume_role(recipe)
            case sources.OidcRole():
                return self._oidc(recipe)
            case sources.EcsRole(role_name=role_name, imdsv1_disabled=v1_off):
                if v1_off is None:
                    v1_off = self._environ.get(sources.ENV_IMDSV1_DISABLED, "").lower() == "true"
                metadata = fetchers.EcsMetadata(
                    transport,
                    role_name=role_name,
                    imdsv1_disabled=v1_off,
                    what=what,
                    base_url=self._metadata_url,
                )
                return metadata.fetch
            case sources.CredentialsUri(uri=uri):
                return lambda: fetchers.fetch_uri(transport, uri, what=what, timeout=timeout)
            case sources.External(command=command):
                return lambda: fetchers.run_external(command, what=what)
            case sources.CloudSso():
                sso = recipe
                return lambda: fetchers.fetch_cloud_sso(
                    transport,
                    sign_in_url=sso.sign_in_url,
                    account_id=sso.account_id,
                    access_config=sso.access_config,
                    access_token=sso.access_token,
                    token_expires=sso.token_expires,
                    what=what,
                    timeout=timeout,
                    now=self._now,
                )
        raise AssertionError(f"no fetcher for {recipe!r}")  # pragma: no cover

    def _sts(self, role: sources.Role) -> Sts:
        base = sts_endpoint(self._endpoint, region=role.sts_region, vpc=role.vpc)
        now = self._now
        return Sts(
            self._transport,
            base,
            timeout=self._timeout,
            now=lambda: datetime.fromtimestamp(now(), UTC),  # signed on the ring's clock
        )

    def _session_name(self, role: sources.Role) -> str:
        return role.session_name or f"runner-{int(self._now())}"

    async def _assume_role(self, recipe: sources.AssumeRole) -> Fetch:
        base = await self._open(recipe.base)  # the caller's identity, itself kept fresh
        role, what = recipe.role, str(recipe.origin)
        sts, session = self._sts(role), self._session_name(role)

        async def fetch() -> Credentials:
            for attempt in range(2):
                caller = await base.current()
                try:
                    return await sts.assume_role(
                        caller,
                        role_arn=role.role_arn,
                        session_name=session,
                        duration=role.duration,
                        policy=role.policy,
                        external_id=role.external_id,
                        source=what,
                    )
                except StsRefused as error:
                    # a chained caller's own temporary key expired under us: renew it, once
                    if (
                        error.code != EXPIRED_TOKEN
                        or attempt
                        or not base.invalidate(caller.access_key_id)
                    ):
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

        return fetch

    def _oidc(self, recipe: sources.OidcRole) -> Fetch:
        role, what = recipe.role, str(recipe.origin)
        sts, session = self._sts(role), self._session_name(role)

        async def fetch() -> Credentials:
            token = await _read_token(recipe.token_file, what=what)
            REDACTOR.add(token)
            return await sts.assume_role_with_oidc(
                role_arn=role.role_arn,
                provider_arn=recipe.provider_arn,
                token=token,
                session_name=session,
                duration=role.duration,
                policy=role.policy,
                source=what,
            )

        return fetch


async def _read_token(path: Path, *, what: str) -> str:
    """The OIDC token file, read afresh at every fetch (the platform rotates it)."""
    try:
        data = await anyio.Path(path).read_bytes()
    except OSError as error:
        raise CredentialsError(
            f"{what}: the OIDC token file {path} cannot be read ({type(error).__name__})"
        ) from None
    token = data[:MAX_TOKEN_FILE].decode("utf-8", "replace").strip()
    if not token or len(data) > MAX_TOKEN_FILE:
        raise CredentialsError(f"{what}: the OIDC token file {path} is empty or too large")
    return token
