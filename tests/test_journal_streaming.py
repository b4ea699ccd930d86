"""The journal as a run uses it: streamed registration and reads, durable writes, and the
writer's posted (unawaited) outcomes."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import pytest

from runner.clock import FakeClock
from runner.commands.common import ExitCode
from runner.commands.run import RunRequest, run
from runner.dataworks.credentials import Credentials
from runner.dataworks.transport import HttpRequest, HttpResponse
from runner.journal import (
    Journal,
    JournalWriteError,
    MarkCreated,
    MarkFailed,
    MarkInFlight,
    MarkPending,
    Register,
)
from runner.journal_writer import JournalWriter
from runner.models import ExportSpec, TaskKey, TaskState
from runner.plan import make_plan, plan_in_order
from runner.sim.faults import Faults
from runner.sim.inprocess import InProcessTransport
from runner.sim.service import Service, SimStats
from runner.sim.state import DataWorksState

REGIONS = ("cn-shanghai", "cn-beijing", "ap-southeast-1")


def specs(n: int, seed: int = 0) -> list[ExportSpec]:
    rng = random.Random(seed)
    keys = {
        TaskKey(rng.choice(REGIONS), rng.randrange(2, 60), f"t{rng.randrange(10_000)}")
        for _ in range(n)
    }
    found = [ExportSpec(k) for k in keys]
    rng.shuffle(found)
    return found


def test_writes_are_synchronous_full(tmp_path: Path) -> None:
    """The writer connection syncs every commit to disk (PRAGMA synchronous = FULL)."""
    with Journal.open(tmp_path / "j.db") as journal:
        assert journal._conn.execute("PRAGMA synchronous").fetchone() == (2,)


class CreatesChecked:
    """The simulator in process; each create, as it reaches the transport, is first checked."""

    def __init__(self, check: Any) -> None:
        self._inner = InProcessTransport(
            Service(DataWorksState(), SimStats(), Faults(), random.Random(0)), now=time.time
        )
        self._check = check

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        if request.headers.get("x-acs-action") == "CreateExportMigration":
            self._check(request)
        return await self._inner.send(request, timeout)


@pytest.mark.anyio
async def test_a_run_sends_each_create_only_once_its_intent_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through run() and the real client: as each create leaves, another reader already sees
    its task in_flight, and the run's journal connection syncs every commit (synchronous=FULL)."""
    opened: list[Journal] = []
    open_journal = Journal.open

    def spy(path: Path, **kwargs: Any) -> Journal:
        opened.append(open_journal(path, **kwargs))
        return opened[-1]

    monkeypatch.setattr(Journal, "open", spy)
    path = tmp_path / "j.db"
    seen: list[tuple[TaskState, int]] = []

    def check(request: HttpRequest) -> None:
        params = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        key = TaskKey("cn-shanghai", int(params["ProjectId"]), params["Name"])
        with Journal.open_readonly(path) as reader:
            row = reader.get(key)
        journal = opened[0]
        with journal._mutex:  # not while the writer's thread commits another batch
            synchronous = journal._conn.execute("PRAGMA synchronous").fetchone()[0]
        assert row is not None
        seen.append((row.state, synchronous))

    manifest = tmp_path / "m.yaml"
    lines = ["version: 1", "defaults: {region: cn-shanghai}", "workspaces:"]
    for project in (101, 102):
        lines.append(f"  - project_id: {project}")
        lines.append("    tasks: [" + ", ".join(f"{{name: t{i}}}" for i in range(6)) + "]")
    manifest.write_text("\n".join(lines) + "\n")
    request = RunRequest(manifests=(str(manifest),), journal=path, progress=False, concurrency=4)
    credentials = Credentials("AK", "secret")
    result = await run(
        request, credentials=credentials, transport=CreatesChecked(check), clock=FakeClock()
    )
    assert result.exit_code is ExitCode.OK, result
    assert seen == [(TaskState.IN_FLIGHT, 2)] * 12  # 2: FULL


def test_register_streams_specs_and_keeps_existing_rows(tmp_path: Path) -> None:
    """register() inserts what is new and leaves a known task's row as it was."""
    tasks = specs(50)
    with Journal.open(tmp_path / "j.db") as journal:
        journal.apply([Register(tasks[0]), MarkInFlight(tasks[0].key, "old")])
        journal.register(iter(tasks))
        rows = journal.row_map()
    assert set(rows) == {s.key for s in tasks}
    assert rows[tasks[0].key].fingerprint == "old"
    assert sum(r.state.value == "in_flight" for r in rows.values()) == 1


def test_iter_rows_reads_every_row_in_key_order_in_chunks(tmp_path: Path) -> None:
    """iter_rows yields the same rows as rows(), in key order, whatever the chunk size."""
    with Journal.open(tmp_path / "j.db") as journal:
        journal.register(specs(300))
        streamed = list(journal.iter_rows(chunk=7))
        assert streamed == journal.rows()
    keys = [(r.key.region, r.key.project_id, r.key.name) for r in streamed]
    assert keys == sorted(keys)


def test_pairing_in_order_finds_each_specs_row_and_only_its_own(tmp_path: Path) -> None:
    """pair_in_order gives each spec its own row, None for specs the journal lacks, and skips
    the journal's other tasks."""
    from runner.plan import pair_in_order

    tasks = specs(40)
    with Journal.open(tmp_path / "j.db") as journal:
        journal.register(tasks[:30] + specs(25, seed=9))
        journal.apply([MarkInFlight(tasks[0].key, "f"), MarkCreated(tasks[0].key, 7, None)])
        pairs = list(pair_in_order(tasks, journal.iter_rows(chunk=4)))
    assert sorted(s.key for s, _ in pairs) == sorted(s.key for s in tasks)
    assert all(row is None or row.key == spec.key for spec, row in pairs)
    assert sum(row is not None for _, row in pairs) == 30
    states = Counter(row.state.value for _, row in pairs if row is not None)
    assert states == {"created": 1, "pending": 29}


@pytest.mark.parametrize("seed", range(5))
def test_plan_in_order_decides_as_the_map_based_plan(tmp_path: Path, seed: int) -> None:
    """Merging specs with the journal's rows in key order gives every task the same action as
    planning against a map of the whole journal."""
    rng = random.Random(seed)
    tasks = specs(200, seed)
    with Journal.open(tmp_path / "j.db") as journal:
        journal.register(rng.sample(tasks, 120) + specs(30, seed + 100))  # some not in the plan
        for spec in rng.sample(tasks, 80):
            key = spec.key
            journal.apply([Register(spec), MarkInFlight(key, spec.fingerprint())])
            outcome = rng.choice(("created", "failed", "pending", "in_flight"))
            if outcome == "created":
                journal.apply([MarkCreated(key, rng.randrange(100, 10**6), None)])
            elif outcome == "failed":
                journal.apply([MarkFailed(key, "E", "m", None)])
            elif outcome == "pending":
                journal.apply([MarkPending(key)])
        only_failed = bool(seed % 2)
        streamed = list(plan_in_order(tasks, journal.iter_rows(chunk=13), only_failed=only_failed))
        mapped = make_plan(tasks, journal.row_map(), only_failed=only_failed).actions
    assert sorted(streamed, key=lambda a: a.spec.key) == sorted(mapped, key=lambda a: a.spec.key)


@pytest.mark.anyio
async def test_flush_returns_once_posted_ops_are_committed(tmp_path: Path) -> None:
    """Posted ops are not awaited, but flush() returns only once they are on disk."""
    tasks = specs(30)
    with Journal.open(tmp_path / "j.db") as journal:
        journal.register(tasks)
        async with JournalWriter(journal) as writer:
            for n, spec in enumerate(tasks):
                writer.post(MarkInFlight(spec.key, "f"), MarkCreated(spec.key, 1000 + n, None))
            await writer.flush()
            with Journal.open_readonly(tmp_path / "j.db") as reader:
                assert {r.state.value for r in reader.rows()} == {"created"}


class Broken:
    """A journal whose commits fail after the first `good` ones."""

    def __init__(self, good: int) -> None:
        self.good = good

    def apply(self, ops: object) -> None:
        if self.good <= 0:
            raise OSError("disk full")
        self.good -= 1


@pytest.mark.anyio
async def test_a_posted_batch_that_fails_fails_every_later_write() -> None:
    """A posted op nobody waits for can still not fail silently: the next write raises."""
    key = TaskKey("cn-shanghai", 2, "a")
    async with JournalWriter(Broken(good=0)) as writer:
        writer.post(MarkCreated(key, 1, None))
        with pytest.raises(JournalWriteError, match="disk full"):
            await writer.flush()
        with pytest.raises(JournalWriteError, match="disk full"):
            await writer.write(MarkCreated(key, 1, None))
        with pytest.raises(JournalWriteError, match="disk full"):
            writer.post(MarkCreated(key, 1, None))
    await anyio.lowlevel.checkpoint()


def test_a_step_2_journal_is_migrated_with_its_rows_and_history(tmp_path: Path) -> None:
    """A journal made before step 3 keeps every row and attempt (ids too), stays append-only,
    and can then hold the `exists` state."""
    import sqlite3

    from runner.journal import MarkExists
    from runner.journal_schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in (s for step in MIGRATIONS[:2] for s in step):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO tasks (region, project_id, name, state, migration_id, created_at,"
        " updated_at, package_path) VALUES ('cn-shanghai', 2, 'a', 'created', 7, 1, 2, 'p.zip')"
    )
    conn.execute(
        "INSERT INTO attempts (id, region, project_id, name, at, action, outcome)"
        " VALUES (41, 'cn-shanghai', 2, 'a', 1.5, 'create', 'ok')"
    )
    conn.commit()
    conn.close()
    key = TaskKey("cn-shanghai", 2, "a")
    with Journal.open(path) as journal:
        assert journal.schema_version == len(MIGRATIONS)
        row = journal.get(key)
        assert row is not None
        assert (row.state.value, row.migration_id, row.package_path) == ("created", 7, "p.zip")
        assert [(a.action, a.outcome) for a in journal.attempts(key)] == [("create", "ok")]
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            journal._conn.execute("DELETE FROM attempts")
        journal.apply([MarkExists(key, 8, "taken")])
        row = journal.get(key)
        assert row is not None
        assert (row.state.value, row.error_code) == ("exists", "NameExists")
