"""Answers nobody here controls stay bounded: a huge or decompression-bomb answer is refused
unread, a value SQLite cannot store fails only its own record, and a run facing malformed
answers to its creates still makes each task once."""

from __future__ import annotations

import random
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from runner.clock import FakeClock
from runner.context import RunContext
from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.transport import (
    MAX_ANSWER,
    AiohttpTransport,
    FunctionTransport,
    HttpRequest,
    HttpResponse,
    ResponseTooLarge,
)
from runner.engine import PhaseOptions, run_phases
from runner.journal import Journal, MarkCreated, Register
from runner.journal_writer import JournalWriter
from runner.models import Action, ActionKind, ApiError, ErrorKind, ExportSpec, TaskKey, TaskState
from runner.ratelimit import RateLimiter
from runner.retry import RetryPolicy
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState
from tests.loopback import serving

SMALL_JSON = b'{"RequestId":"R","Success":true,"Data":1}'


def gzip_of_zeros(megabytes: int) -> bytes:
    """A gzip body that inflates to `megabytes` MiB of zeros (a decompression bomb)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join([*(packer.compress(zeros) for _ in range(megabytes)), packer.flush()])


async def big_length(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * (MAX_ANSWER + 1))


async def chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    piece = b"y" * (1 << 20)
    for _ in range(MAX_ANSWER // len(piece) + 2):
        await response.write(piece)
    await response.write_eof()
    return response


BOMB = gzip_of_zeros(128)


async def bomb(request: web.Request) -> web.Response:
    return web.Response(body=BOMB, headers={"Content-Encoding": "gzip"})


async def gzip_ok(request: web.Request) -> web.Response:
    body = zlib.compress(SMALL_JSON, wbits=31)
    return web.Response(body=body, headers={"Content-Encoding": "gzip"})


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in {
        "/big": big_length,
        "/chunked": chunked,
        "/bomb": bomb,
        "/gzip": gzip_ok,
        "/": bomb,  # where the client sends its API calls
    }.items():
        app.router.add_post(path, handler)
    async with serving(app) as url:
        yield url


@pytest.mark.parametrize("path", ["/big", "/chunked", "/bomb"])
@pytest.mark.anyio
async def test_an_answer_over_the_cap_is_refused_without_being_held(
    base_url: str, path: str
) -> None:
    """An answer announced too big, streamed too big, or inflating past the cap (a gzip bomb of
    128 MiB) is refused as ResponseTooLarge, holding no more than a few MiB on the way."""
    tracemalloc.start()
    try:
        async with AiohttpTransport() as transport:
            with pytest.raises(ResponseTooLarge):
                await transport.send(HttpRequest("POST", base_url + path, {}), timeout=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_ANSWER


@pytest.mark.anyio
async def test_a_compressed_answer_within_the_cap_is_read(base_url: str) -> None:
    """A gzip answer of ordinary size arrives decompressed."""
    async with AiohttpTransport() as transport:
        response = await transport.send(HttpRequest("POST", base_url + "/gzip", {}), timeout=10)
    assert response.body == SMALL_JSON


@pytest.mark.anyio
async def test_a_too_large_answer_to_a_create_is_an_unknown_outcome(base_url: str) -> None:
    """Through the client, an oversized answer is classified like a lost one."""
    async with AiohttpTransport() as transport:
        client = DataWorksClient(transport, Credentials("AK", "SK"), Endpoints(base_url))
        with pytest.raises(ApiError) as raised:
            await client.create_export_migration(ExportSpec(TaskKey("cn-shanghai", 2, "t")))
    assert (raised.value.code, raised.value.kind) == ("ResponseTooLarge", ErrorKind.UNKNOWN_OUTCOME)


KEYS = [TaskKey("cn-shanghai", 12345, f"t{i}") for i in range(4)]


@pytest.mark.anyio
async def test_a_value_sqlite_cannot_store_fails_only_its_own_record(tmp_path: Path) -> None:
    """Posted records of several tasks share a batch; one holding an id beyond 64 bits is
    dropped alone (and logged): the others are committed and the writer keeps working."""
    with Journal.open(tmp_path / "j.db") as journal:
        journal.apply([Register(ExportSpec(key)) for key in KEYS])
        async with JournalWriter(journal) as writer:
            writer.post(MarkCreated(KEYS[0], 101, "R0"))
            writer.post(MarkCreated(KEYS[1], 2**64, "R1"))
            writer.post(MarkCreated(KEYS[2], 103, "R2"))
            await writer.flush()
            await writer.write(MarkCreated(KEYS[3], 104, "R3"))
        states = {key: journal.get(key) for key in KEYS}
    assert [row.state if row else None for row in states.values()] == [
        TaskState.CREATED,
        TaskState.PENDING,
        TaskState.CREATED,
        TaskState.CREATED,
    ]


HOSTILE_CREATES = {
    "t1": b'{"RequestId":"R","Success":true,"Data":18446744073709551616}',
    "t2": b'{"RequestId":"R","Success":true,"Data":"100003"}',
    "t3": b'{"RequestId":"R","Success":true,"Data":' + b"[" * 50_000,
    "t4": b"<html><body>403 Forbidden</body></html>",
    "t5": b'{"RequestId":"R","Success":true,"Data":-1}',
}


@pytest.mark.anyio
async def test_a_run_facing_malformed_answers_to_applied_creates_makes_each_task_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Each hostile answer follows a create the service applied: every task ends created with
    its real migration id, none twice, and the journal records every task."""
    state = DataWorksState(unique_names=False)  # a second create would be made (and counted)
    service = Service(state, SimStats(), Faults(), random.Random(0))
    inner = InProcessTransport(service, now=lambda: 1_700_000_000 + clock.now)
    once = dict(HOSTILE_CREATES)

    async def hostile(request: HttpRequest) -> HttpResponse:
        answer = await inner.send(request, 5)  # applied first, whatever is answered
        name = dict(parse_qsl(request.body.decode())).get("Name", "")
        if request.headers.get("x-acs-action") == "CreateExportMigration" and name in once:
            return HttpResponse(403 if name == "t4" else 200, {}, once.pop(name))
        return answer

    client = DataWorksClient(FunctionTransport(hostile), Credentials("AK", "SK"), Endpoints())
    specs = [ExportSpec(TaskKey("cn-shanghai", 12345, f"t{i}")) for i in range(8)]
    with Journal.open(tmp_path / "j.db") as journal:
        journal.register(specs)
        async with JournalWriter(journal) as writer:
            ctx = RunContext(
                client,
                writer,
                RateLimiter(clock, write_rate=1000),
                clock,
                RetryPolicy(),
                random.Random(1),
            )
            actions = [Action(ActionKind.CREATE, s) for s in specs]
            stats = await run_phases(ctx, PhaseOptions(concurrency=4), actions)
        rows = journal.row_map()
    assert state.duplicates == 0
    assert stats.created + stats.adopted == len(specs)
    made = {r.name: r.migration_id for r in state.migrations.values()}
    assert {key.name: row.migration_id for key, row in rows.items()} == made
    assert all(row.state is TaskState.CREATED for row in rows.values())


def test_the_bomb_really_is_a_bomb() -> None:
    """The gzip fixture is small on the wire and inflates to 16 times the cap."""
    assert len(BOMB) < MAX_ANSWER // 8
    assert len(zlib.decompress(BOMB, wbits=31)) == 128 << 20
