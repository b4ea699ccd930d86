"""A create's request is built and signed while its intent's commit runs, and leaves only once
the commit is done: the writer's `queue`, the client's `after`, and the attempt loop."""

from __future__ import annotations

import json
import random
import threading
import warnings
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from runner.attempt import Outcome, attempt
from runner.clock import FakeClock
from runner.context import RunContext
from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.transport import FunctionTransport, HttpRequest, HttpResponse
from runner.journal import Journal, JournalWriteError, MarkCreated, MarkInFlight, Register
from runner.journal_writer import JournalWriter
from runner.models import ApiError, ExportSpec, TaskKey, TaskState
from runner.phases.create import CREATE_POLICY
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy

SPEC = ExportSpec(TaskKey("cn-shanghai", 12345, "backup"))
CREATED = HttpResponse(200, {}, json.dumps({"RequestId": "R1", "Data": 42}).encode())


@pytest.mark.anyio
async def test_queued_ops_are_committed_awaited_late_or_never(tmp_path: Path) -> None:
    """queue() returns at once; its commit may be awaited after it is done, or dropped without a
    warning: the ops are committed either way."""
    keys = [TaskKey("cn-shanghai", 1, name) for name in ("a", "b")]
    with Journal.open(tmp_path / "j.db") as journal:
        journal.apply([Register(ExportSpec(key)) for key in keys])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            async with JournalWriter(journal) as writer:
                late = writer.queue(MarkInFlight(keys[0], "fp"))
                writer.queue(MarkInFlight(keys[1], "fp"))  # never awaited
                await writer.flush()
                await late
        assert {row.state for row in journal.rows()} == {TaskState.IN_FLIGHT}


@pytest.mark.anyio
async def test_a_queued_commit_that_fails_raises_when_awaited() -> None:
    """Awaiting the commit of queued ops that could not be committed raises JournalWriteError."""

    class Failing:
        def apply(self, ops: object) -> None:
            raise OSError("disk full")

    async with JournalWriter(Failing()) as writer:
        committed = writer.queue(MarkCreated(SPEC.key, 1, None))
        with pytest.raises(JournalWriteError, match="disk full"):
            await committed


def client_of(handler: FunctionTransport) -> DataWorksClient:
    return DataWorksClient(handler, Credentials("AK", "SK"), Endpoints())


@pytest.mark.anyio
async def test_a_create_waits_for_after_once_built_and_signed() -> None:
    """With `after`, the client builds and signs the request first (the nonce is drawn), then
    waits: nothing reaches the transport until `after` is done."""
    gate = anyio.Event()
    sent: list[HttpRequest] = []
    nonces: list[str] = []

    async def answer(request: HttpRequest) -> HttpResponse:
        sent.append(request)
        return CREATED

    def nonce() -> str:
        nonces.append(f"{len(nonces):032x}")
        return nonces[-1]

    client = DataWorksClient(
        FunctionTransport(answer), Credentials("AK", "SK"), Endpoints(), nonce=nonce
    )

    async def create() -> None:
        await client.create_export_migration(SPEC, after=gate.wait())

    async with anyio.create_task_group() as tg:
        tg.start_soon(create)
        await anyio.wait_all_tasks_blocked()
        assert (len(nonces), sent) == (1, [])
        gate.set()
    assert [r.headers["x-acs-signature-nonce"] for r in sent] == nonces


@pytest.mark.anyio
async def test_nothing_leaves_when_after_fails_even_for_a_request_that_cannot_be_signed() -> None:
    """`after` failing (the intent not committed) is what the caller hears, and nothing is sent;
    a request that cannot be signed still waits for `after` before its refusal is raised."""
    sent: list[HttpRequest] = []

    async def answer(request: HttpRequest) -> HttpResponse:
        sent.append(request)
        return CREATED

    async def not_committed() -> None:
        await anyio.lowlevel.checkpoint()
        raise JournalWriteError("journal write failed: disk full")

    client = client_of(FunctionTransport(answer))
    unsignable = ExportSpec(TaskKey("cn-shanghai", 2, "bad\ud800"))
    for spec in (SPEC, unsignable):
        with pytest.raises(JournalWriteError):
            await client.create_export_migration(spec, after=not_committed())
    waited: list[str] = []

    async def committed() -> None:
        waited.append("committed")

    with pytest.raises(ApiError, match="InvalidRequest"):
        await client.create_export_migration(unsignable, after=committed())
    assert (waited, sent) == (["committed"], [])


@pytest.mark.anyio
async def test_the_attempt_loop_signs_a_create_while_its_intent_commits(tmp_path: Path) -> None:
    """Through the attempt loop with a real writer: the request is signed while the intent's
    commit is still running, and reaches the transport only once another reader sees the
    intent."""
    path = tmp_path / "j.db"
    signed = threading.Event()
    overlapped: list[bool] = []
    seen: list[str] = []

    async def answer(request: HttpRequest) -> HttpResponse:
        with Journal.open_readonly(path) as reader:
            row = reader.get(SPEC.key)
        assert row is not None
        seen.append(row.state.value)
        return CREATED

    def nonce() -> str:
        signed.set()
        return "0" * 32

    client = DataWorksClient(
        FunctionTransport(answer), Credentials("AK", "SK"), Endpoints(), nonce=nonce
    )
    clock = FakeClock()
    with Journal.open(path) as journal:
        journal.apply([Register(SPEC)])
        commit = journal._commit_staged

        def held_until_signed() -> None:  # in the writer's thread
            overlapped.append(signed.wait(10))
            commit()

        journal._commit_staged = held_until_signed  # type: ignore[method-assign]
        async with JournalWriter(journal) as writer:
            ctx = RunContext(
                client,
                writer,
                RateLimiter(clock, write_rate=100),
                clock,
                RetryPolicy(),
                random.Random(1),
            )
            result = await attempt(
                ctx,
                SPEC.key,
                CREATE_POLICY,
                lambda: client.create_export_migration(SPEC),
                intent=MarkInFlight(SPEC.key, SPEC.fingerprint()),
                send_after=lambda after: client.create_export_migration(SPEC, after=after),
            )
    assert result.outcome is Outcome.DONE
    assert overlapped[0]  # the intent's commit (then the outcome's)
    assert seen == ["in_flight"]
