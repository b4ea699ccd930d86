"""How the journal's ops become SQL: a batch is applied as a few `executemany` runs, each task's
ops in their order; a value SQLite cannot store fails only its own group of ops."""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.journal_ops import (
    ATTEMPT_COLUMNS,
    BY_KEY,
    LOOKUPS,
    JournalDataError,
    JournalError,
    Op,
    RecordAttempt,
    Register,
    changes_of,
)
from runner.models import ExportSpec, TaskKey

# What the sqlite3 module raises for a value it cannot bind (an integer beyond 64 bits, text that
# is not valid Unicode, a type it does not know): the op's fault, not the journal's.
DATA_ERRORS = (OverflowError, UnicodeEncodeError, sqlite3.InterfaceError)

REGISTER_COLUMNS = (
    "region, project_id, name, state, fingerprint, created_at, updated_at, profile,"
    " import_region, import_project_id, import_name, import_profile, import_params"
)
REGISTER_VALUES = "?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?"
# A rerun takes the manifest's profile for a task no create was sent for yet, and its import
# target for a task no import was sent for yet; what was sent keeps what it was sent with.
# An import created and then failed keeps its name taken in the target: a manifest that gives
# it another target or import_name starts its import leg again from the saved package.
_IMPORT_FIELDS = ("import_region", "import_project_id", "import_name", "import_profile")
_IMPORT_CHANGED = (
    "(" + " OR ".join(f"{c} IS NOT excluded.{c}" for c in (*_IMPORT_FIELDS, "import_params")) + ")"
)
_RETARGET = (
    "(state = 'import_failed' AND import_migration_id IS NOT NULL"
    f" AND excluded.import_name IS NOT NULL AND {_IMPORT_CHANGED})"
)
_TAKES_TARGET = f"(import_sent = 0 OR {_RETARGET})"
REGISTER_UPDATE = (
    " ON CONFLICT DO UPDATE SET"
    " profile = CASE WHEN create_sent = 0 THEN excluded.profile ELSE profile END, "
    + ", ".join(
        f"{c} = CASE WHEN {_TAKES_TARGET} THEN excluded.{c} ELSE {c} END"
        for c in (*_IMPORT_FIELDS, "import_params")
    )
    + f", import_sent = CASE WHEN {_RETARGET} THEN 0 ELSE import_sent END"
    + f", import_migration_id = CASE WHEN {_RETARGET} THEN NULL ELSE import_migration_id END"
    + f", package_file = CASE WHEN {_RETARGET} THEN NULL ELSE package_file END"
    + f", error_code = CASE WHEN {_RETARGET} THEN NULL ELSE error_code END"
    + f", error_message = CASE WHEN {_RETARGET} THEN NULL ELSE error_message END"
    + f", state = CASE WHEN {_RETARGET} THEN 'exported' ELSE state END"
    + " WHERE (create_sent = 0 AND profile IS NOT excluded.profile)"
    + f" OR (import_sent = 0 AND {_IMPORT_CHANGED}) OR {_RETARGET}"
)


@dataclass(frozen=True, slots=True)
class Insert:
    """Rows inserted as few statements: `head`, then `row` once per row, then `tail`. One
    statement of many rows costs about two thirds of the sqlite3 module's executemany of them
    (which resets, binds and steps the statement row by row)."""

    head: str  # "INSERT INTO table (columns) VALUES"
    row: str  # "(?, ?, ...)": one row's values
    tail: str = ""  # an ON CONFLICT clause

    ROWS = 256  # rows per statement at most (and as many as SQLite takes values for)

    def run(self, conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        width = self.row.count("?")
        most = min(self.ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
        for start in range(0, len(rows), most):
            chunk = rows[start : start + most]
            conn.execute(_statement(self, len(chunk)), [value for row in chunk for value in row])


@functools.lru_cache(maxsize=128)
def _statement(insert: Insert, rows: int) -> str:
    return f"{insert.head} {', '.join([insert.row] * rows)}{insert.tail}"


_INTO_TASKS = f"INSERT INTO tasks ({REGISTER_COLUMNS}) VALUES"
REGISTER_FULL = Insert(_INTO_TASKS, f"({REGISTER_VALUES})", REGISTER_UPDATE)
REGISTER_CHUNK = 4096  # specs registered at a time: a chunk is held, never the whole manifest
# A task with no import target: its import columns NULL in the SQL (the sqlite3 module binds each
# value on its own, which is most of a row's cost)
REGISTER_PLAIN = Insert(
    _INTO_TASKS, "(?, ?, ?, 'pending', ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL)", REGISTER_UPDATE
)
_INSERT_TASK = Insert(_INTO_TASKS, f"({REGISTER_VALUES})", " ON CONFLICT DO NOTHING")
_INSERT_ATTEMPT = Insert(
    f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES", "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COUNTED = "attempts = attempts + 1"  # RecordAttempt's change to its task
_UPDATES: dict[str, str] = {}  # SET clause -> its UPDATE (changes_of has a few fixed clauses)
_UPDATES_COUNTED: dict[str, str] = {}  # the same, with the attempt just before counted
_COUNTED_SQL = f"UPDATE tasks SET {_COUNTED}, updated_at = ? {BY_KEY}"  # an attempt alone
_LOOKUP_SQL = f"UPDATE tasks SET {_COUNTED} {BY_KEY}"  # a lookup alone: updated_at kept
# the order of a round's statements: a task inserted, then rows changed, then history appended
_INSERT, _UPDATE, _APPEND = 0, 1, 2


def key_args(key: TaskKey) -> tuple[str, int, str]:
    return (key.region, key.project_id, key.name)


def op_key(op: Op) -> TaskKey:
    return op.spec.key if isinstance(op, Register) else op.key


def register_args(spec: ExportSpec, now: float, profile: str | None) -> tuple[Any, ...]:
    key = spec.key
    head = (key.region, key.project_id, key.name, spec.fingerprint(), now, now, profile)
    return (*head, *_import_columns(spec, profile))


def _plain_register_args(
    spec: ExportSpec, now: float, profile: str | None
) -> tuple[str, int, str, str, float, float, str | None]:
    """REGISTER_PLAIN's arguments, for a spec without an import target."""
    key = spec.key
    return (key.region, key.project_id, key.name, spec.fingerprint(), now, now, profile)


def register_all(
    conn: sqlite3.Connection, specs: Iterable[ExportSpec], now: float, default_profile: str | None
) -> None:
    """Insert every task as pending in the open transaction (`Register` for each, streamed a
    chunk at a time), with the profile it is reached with: its own, else `default_profile`."""
    source = iter(specs)
    while chunk := list(itertools.islice(source, REGISTER_CHUNK)):
        plain = [s for s in chunk if s.import_into is None]
        if plain:
            REGISTER_PLAIN.run(
                conn, [_plain_register_args(s, now, s.profile or default_profile) for s in plain]
            )
        if len(plain) < len(chunk):
            targets = (s for s in chunk if s.import_into is not None)
            REGISTER_FULL.run(
                conn, [register_args(s, now, s.profile or default_profile) for s in targets]
            )


def _import_columns(spec: ExportSpec, default_profile: str | None) -> tuple[Any, ...]:
    """The import leg's columns of a task as the manifest gives it (all None when it has none)."""
    target = spec.import_into
    if target is None:
        return (None, None, None, None, None)
    params = json.dumps(target.params(), sort_keys=True, separators=(",", ":"))
    profile = target.profile or default_profile
    return (target.key.region, target.key.project_id, target.key.name, profile, params)


def _update(sets: str) -> str:
    sql = _UPDATES.get(sets)
    if sql is None:
        sql = _UPDATES[sets] = f"UPDATE tasks SET {sets}, updated_at = ? {BY_KEY}"
    return sql


def _update_counted(sets: str) -> str:
    """The UPDATE of a change and the count of the attempt just before it, made once per
    SET clause (changes_of's are a few constants)."""
    sql = _UPDATES_COUNTED.get(sets)
    if sql is None:
        sql = _UPDATES_COUNTED[sets] = _update(f"{_COUNTED}, {sets}")
    return sql


def _history(op: RecordAttempt, where: tuple[str, int, str], now: float) -> tuple[Any, ...]:
    at = now if op.at is None else op.at
    head = (*where, at, op.action, op.http_status, op.error_code, op.request_id)
    return (*head, op.latency_ms, op.outcome)


def apply_grouped(conn: sqlite3.Connection, ops: Sequence[Op], now: float) -> None:
    """Apply `ops` in the open transaction as a few `executemany` runs. An op goes in the round
    after the previous op of its task, so each task's ops keep their order (tasks' rows are
    apart, so the order between tasks does not matter); a round runs each statement once, over
    all its rows. A RecordAttempt followed by another change to its task is counted in that
    change's UPDATE. Raises JournalError for a task never registered, and lets the sqlite3
    module's errors for a value it cannot bind (DATA_ERRORS) through."""
    rounds: dict[tuple[str, int, str], int] = {}  # by task, as plain tuples (hashed in C)
    steps: dict[tuple[int, int, str | Insert], list[tuple[Any, ...]]] = {}
    counted: tuple[int, tuple[str, int, str], tuple[Any, ...], bool] | None = None
    for op in ops:
        cls = type(op)  # the op classes are final: a type test, not isinstance, per op
        key = op.spec.key if isinstance(op, Register) else op.key
        where = (key.region, key.project_id, key.name)
        turn = rounds.get(where, 0)
        rounds[where] = turn + 1
        if counted is not None and (counted[1] != where or cls is RecordAttempt or cls is Register):
            _count_alone(steps, counted, now)
            counted = None
        if type(op) is Register:
            args = register_args(op.spec, now, op.spec.profile)
            steps.setdefault((turn, _INSERT, _INSERT_TASK), []).append(args)
            continue
        if type(op) is RecordAttempt:
            counted = (turn, where, _history(op, where, now), op.action in LOOKUPS)
            continue
        sets, values = changes_of(op)
        if counted is not None:  # the same task's attempt, just before: one UPDATE for both
            sql = _update_counted(sets)
            steps.setdefault((turn, _APPEND, _INSERT_ATTEMPT), []).append(counted[2])
            counted = None
        else:
            sql = _update(sets)
        steps.setdefault((turn, _UPDATE, sql), []).append((*values, now, *where))
    if counted is not None:
        _count_alone(steps, counted, now)
    for (_, _kind, statement), rows in sorted(steps.items(), key=lambda step: step[0][:2]):
        if isinstance(statement, Insert):
            statement.run(conn, rows)
        elif conn.executemany(statement, rows).rowcount != len(rows):  # an UPDATE of each row
            _refuse_unknown(conn, rows)


def _count_alone(
    steps: dict[tuple[int, int, str | Insert], list[tuple[Any, ...]]],
    counted: tuple[int, tuple[str, int, str], tuple[Any, ...], bool],
    now: float,
) -> None:
    """An attempt with no change of its task after it: counted, and appended to the history. A
    lookup leaves updated_at alone: it is when the task's last send was heard of, from which a
    rerun counts the visibility window (a rerun's lookups must not push it back)."""
    at, where, history, lookup = counted
    if lookup:
        steps.setdefault((at, _UPDATE, _LOOKUP_SQL), []).append(where)
    else:
        steps.setdefault((at, _UPDATE, _COUNTED_SQL), []).append((now, *where))
    steps.setdefault((at, _APPEND, _INSERT_ATTEMPT), []).append(history)


def _refuse_unknown(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    for row in rows:
        where = row[-3:]
        if conn.execute(f"SELECT 1 FROM tasks {BY_KEY}", where).fetchone() is None:
            key = TaskKey(*where)
            raise JournalError(f"unknown task {key}: it was never registered in the journal")
    raise JournalError("an update changed fewer tasks than it named")  # pragma: no cover


def apply_batch(
    conn: sqlite3.Connection, groups: Sequence[Sequence[Op]], now: float, path: Path
) -> dict[int, JournalDataError]:
    """Apply every group's ops in the open transaction. When some op holds a value that cannot
    be stored, each group is applied on its own instead (in a savepoint), so that such a value
    leaves out only its own group, whole: returns those groups' errors by index. Any other
    error (a task never registered, SQLite's) is raised, the transaction left to roll back."""
    conn.execute("SAVEPOINT batch")
    try:
        apply_grouped(conn, [op for group in groups for op in group], now)
        return {}
    except DATA_ERRORS:
        conn.execute("ROLLBACK TO batch")
    finally:
        conn.execute("RELEASE batch")
    rejected: dict[int, JournalDataError] = {}
    for index, group in enumerate(groups):
        conn.execute("SAVEPOINT one")
        try:
            for op in group:
                try:
                    apply_grouped(conn, (op,), now)
                except DATA_ERRORS as exc:
                    raise JournalDataError(
                        f"journal {path}: {type(op).__name__} of {op_key(op)} holds a value"
                        f" that cannot be stored ({type(exc).__name__})"
                    ) from exc
        except JournalDataError as exc:
            rejected[index] = exc
            conn.execute("ROLLBACK TO one")
        finally:
            conn.execute("RELEASE one")
    return rejected
