"""runner validate --online: the preflight an operator runs before thousands of tasks. No writes.

The manifests are checked as `validate` does; then the run's credentials are resolved (the mode
and the source are said, and a temporary key is fetched), and every workspace gets one signed
read (ListMigrations, its smallest page), paced like a run's reads. A workspace that answers is
ready; every problem is reported at once, and the exit code is 2 when a run would meet one. A
fatal answer (the key refused, clock skew) is reported once for its region, whose other
workspaces are skipped."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from runner.clock import SystemClock
from runner.commands.common import DEFAULT_RATE, DEFAULT_TIMEOUT, ExitCode, load_or_report
from runner.dataworks.client import DataWorksClient, SignatureVersion
from runner.dataworks.credentials import CredentialsError
from runner.dataworks.endpoints import EndpointError, Endpoints
from runner.dataworks.identity import KeyRing, describe
from runner.dataworks.transport import AiohttpTransport, Transport
from runner.models import Access, ApiError, ErrorKind
from runner.ratelimit import Bucket, RateLimiter
from runner.text import printable

WORKERS = 8
ATTEMPTS = 3
MIN_PAGE = 10  # the smallest page ListMigrations accepts


@dataclass(frozen=True, slots=True)
class PreflightRequest:
    manifests: tuple[str, ...]
    endpoint: str | None = None
    profile: str | None = None
    rate: float | None = None  # reads per second; default: the manifest's rate, else 5
    timeout: float = DEFAULT_TIMEOUT
    signature_version: SignatureVersion = "v3"


@dataclass(slots=True)
class PreflightResult:
    checked: list[str] = field(default_factory=list)  # what was found ready
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.USAGE if self.problems else ExitCode.OK


async def preflight(
    request: PreflightRequest,
    *,
    transport: Transport | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> PreflightResult:
    """Check everything a run needs without changing anything (see the module docstring)."""
    result = PreflightResult()
    manifest = load_or_report(request.manifests)
    if manifest is None:
        result.problems.append("the manifests have problems (above)")
        return result
    try:
        endpoints = Endpoints(request.endpoint)
        source = describe(request.profile, environ=environ, home=home)
    except (EndpointError, CredentialsError) as error:
        result.problems.append(str(error))
        return result
    workspaces = sorted({(s.key.region, s.key.project_id) for s in manifest.specs})
    rate = request.rate or manifest.settings.rate or DEFAULT_RATE
    async with AiohttpTransport(limit=WORKERS) as real:
        wire = transport or real
        async with KeyRing(
            wire, endpoint=request.endpoint, timeout=request.timeout, environ=environ, home=home
        ) as ring:
            try:
                keys = await ring.keys(request.profile)
            except CredentialsError as error:
                result.problems.append(f"credentials: {error}")
                return result
            result.checked.append(f"credentials: {source} (account {keys.account})")
            client = DataWorksClient(
                wire,
                keys,
                endpoints,
                signature_version=request.signature_version,
                timeout=request.timeout,
            )
            await _read_all(client, endpoints, workspaces, rate, result)
    return result


async def _read_all(
    client: DataWorksClient,
    endpoints: Endpoints,
    workspaces: list[tuple[str, int]],
    rate: float,
    result: PreflightResult,
) -> None:
    limiter = RateLimiter(SystemClock(), write_rate=rate)
    answered: Counter[str] = Counter()
    stopped: dict[str, ApiError] = {}
    queue = iter(workspaces)

    async def worker() -> None:
        for region, project_id in queue:
            if region in stopped:
                continue
            bucket = limiter.bucket(client.account, endpoints.limit_scope(region), Access.READ)
            error = await _read(client, bucket, region, project_id)
            if error is None:
                answered[region] += 1
            elif error.kind is ErrorKind.FATAL:
                stopped.setdefault(region, error)
            else:
                result.problems.append(f"{region} {project_id}: {_said(error)}")

    async with anyio.create_task_group() as tg:
        for _ in range(min(WORKERS, len(workspaces))):
            tg.start_soon(worker)
    for region in sorted({region for region, _ in workspaces}):
        if region in stopped:
            result.problems.append(f"{region}: {_said(stopped[region])} (its workspaces skipped)")
        else:
            result.checked.append(f"{region}: {answered[region]} workspaces answered")


async def _read(
    client: DataWorksClient, bucket: Bucket, region: str, project_id: int
) -> ApiError | None:
    """One signed read of a workspace, tried again when the answer says it may pass."""
    error: ApiError | None = None
    for _ in range(ATTEMPTS):
        await bucket.acquire()
        try:
            await client.list_migrations(region, project_id, page_size=MIN_PAGE)
        except ApiError as failed:
            error = failed
            if failed.is_throttling:
                bucket.on_throttled(failed.retry_after)
            if failed.kind is not ErrorKind.RETRYABLE:
                return failed
            continue
        bucket.on_success()
        return None
    return error


def _said(error: ApiError) -> str:
    return printable(f"{error.code}: {error.message}" if error.message else error.code)


def execute(request: PreflightRequest) -> ExitCode:
    """The CLI entry: what is ready on stdout, every problem on stderr; exit 0 or 2."""
    result = anyio.run(preflight, request)
    for line in result.checked:
        print(line)
    for problem in result.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if result.problems:
        count = len(result.problems)
        print(f"{count} problem{'s' if count != 1 else ''}; a run would fail", file=sys.stderr)
    else:
        print("ok: ready to run")
    return result.exit_code
