"""runner validate --online: a preflight that sends no write. For every profile the manifest
uses: its credentials resolve (and from where); for every workspace: a signed read answers.
Every problem is reported at once; a run of thousands of tasks starts only on a clean bill."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Generator, Mapping
from dataclasses import dataclass

import anyio

from runner.attempt import Policy, Unresolved, read
from runner.clock import Clock, SystemClock
from runner.context import RunContext
from runner.dataworks.actions import LIST
from runner.dataworks.client import DataWorksClient, SignatureVersion
from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.identity import KeyRing, describe
from runner.dataworks.keys import KeyProvider
from runner.dataworks.transport import AiohttpTransport, Transport
from runner.journal import Op
from runner.logs import REDACTOR
from runner.lookup import EXPORT, IMPORT
from runner.models import Manifest, MigrationPage, TaskKey
from runner.pool import run_pool
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy

PROBE = Policy("preflight", LIST)
PROBE_RETRY = RetryPolicy(max_attempts=3)


class NoJournal:
    """A writer that keeps nothing: a preflight leaves no trace in any journal."""

    async def write(self, *ops: Op) -> None:
        return None

    def queue(self, *ops: Op) -> Awaitable[None]:
        return _Kept()

    def post(self, *ops: Op) -> None:
        return None

    async def flush(self) -> None:
        return None


class _Kept:
    """Ops NoJournal keeps nowhere: awaited, done at once (dropped, nothing warns)."""

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the preflight: where, and what was found (`ok` False: it would fail)."""

    where: str
    message: str
    ok: bool


@dataclass(frozen=True, slots=True)
class Probe:
    endpoint: str | None = None
    profile: str | None = None  # the default profile (--profile)
    rate: float = 5.0
    timeout: float = 10.0
    signature_version: SignatureVersion = "v3"
    concurrency: int = 8


# (profile, region, project id, migration type): a workspace to read once
Workspace = tuple[str | None, str, int, str]


def _workspaces(manifest: Manifest, default: str | None) -> list[Workspace]:
    """Every workspace of the manifest with the profile it is reached with: the sources, read
    for their export tasks, and the import targets, read for their import tasks."""
    found: set[Workspace] = set()
    for spec in manifest.specs:
        found.add((spec.profile or default, spec.key.region, spec.key.project_id, EXPORT))
        if (target := spec.import_into) is not None:
            found.add((target.profile or default, target.key.region, target.key.project_id, IMPORT))
    return sorted(found, key=lambda w: (str(w[0]), w[1], w[2], w[3]))


async def _identities(
    manifest: Manifest,
    default: str | None,
    given: Mapping[str | None, Credentials],
    ring: KeyRing,
) -> tuple[dict[str | None, Credentials | KeyProvider], list[Finding]]:
    """A key provider for every profile the manifest uses (its first key fetched), and a
    finding for each: where its credentials come from, or why they give no key."""
    found: dict[str | None, Credentials | KeyProvider] = {}
    findings: list[Finding] = []
    for name in sorted({profile for profile, *_ in _workspaces(manifest, default)}, key=str):
        label = f"profile {name}" if name else "default credentials"
        if (creds := given.get(name)) is not None:
            REDACTOR.add(creds.access_key_secret, creds.security_token)
            found[name] = creds
            findings.append(Finding(label, f"given ({creds.source})", ok=True))
            continue
        try:
            source = describe(name)
            keys = await ring.keys(name)
        except CredentialsError as error:
            findings.append(Finding(label, str(error), ok=False))
            continue
        found[name] = keys
        findings.append(Finding(label, f"{source} (account {keys.account})", ok=True))
    return found, findings


async def preflight(
    manifest: Manifest,
    probe: Probe,
    *,
    credentials: Mapping[str | None, Credentials] | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
) -> list[Finding]:
    """The findings for every profile and every workspace of the manifest, import targets
    included."""
    workspaces = _workspaces(manifest, probe.profile)
    clock = clock or SystemClock()
    endpoints = Endpoints(probe.endpoint)
    async with (
        AiohttpTransport(limit=probe.concurrency) as real,
        KeyRing(transport or real, endpoint=probe.endpoint, timeout=probe.timeout) as ring,
    ):
        identities, findings = await _identities(manifest, probe.profile, credentials or {}, ring)
        clients = {
            name: DataWorksClient(
                transport or real,
                keys,
                endpoints,
                signature_version=probe.signature_version,
                timeout=probe.timeout,
            )
            for name, keys in identities.items()
        }
        if not clients:
            return findings
        default = next(iter(clients.values()))
        ctx = RunContext(
            default,
            NoJournal(),
            RateLimiter(clock, write_rate=probe.rate),
            clock,
            PROBE_RETRY,
            random.Random(),
        )

        async def check(workspace: Workspace) -> None:
            profile, region, project_id, kind = workspace
            where = f"{region}/{project_id}" + (f" (profile {profile})" if profile else "")
            if kind == IMPORT:
                where += " (import target)"
            client = clients.get(profile)
            if client is None:
                return  # its credentials were reported already
            key = TaskKey(region, project_id, "")

            async def call() -> MigrationPage:
                return await client.list_migrations(
                    region, project_id, page_size=10, migration_type=kind
                )

            try:
                page = await read(ctx, key, PROBE, call, client=client)
            except Unresolved as failed:
                reason = str(failed.error) if failed.error is not None else "no answer"
                findings.append(Finding(where, f"ListMigrations failed: {reason}", ok=False))
                return
            tasks = page.total_count if page.total_count is not None else len(page.migrations)
            noun = "import" if kind == IMPORT else "export"
            findings.append(Finding(where, f"answers ({tasks} {noun} tasks)", ok=True))

        await run_pool(workspaces, probe.concurrency, check)
    return findings


def run_preflight(manifest: Manifest, probe: Probe) -> list[Finding]:
    return anyio.run(preflight, manifest, probe)
