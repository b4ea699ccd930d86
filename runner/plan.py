"""Manifest × journal → what to do for each task. Pure: no I/O."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from runner.models import (
    ADOPTED_FINGERPRINT,
    DONE_STATES,
    Action,
    ActionKind,
    ExportSpec,
    TaskKey,
    TaskState,
)


class JournalView(Protocol):
    """What planning needs to know of a journal row."""

    @property
    def state(self) -> TaskState: ...

    @property
    def fingerprint(self) -> str | None: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def create_sent(self) -> bool: ...

    @property
    def migration_id(self) -> int | None: ...

    @property
    def updated_at(self) -> float: ...

    @property
    def profile(self) -> str | None: ...

    @property
    def listed_at(self) -> float | None: ...


class JournalRow(JournalView, Protocol):
    """A journal row with its key, as a merge in key order needs it."""

    @property
    def key(self) -> TaskKey: ...


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]

    def totals(self) -> dict[ActionKind, int]:
        counts = Counter(action.kind for action in self.actions)
        return {kind: counts.get(kind, 0) for kind in ActionKind}

    def to_send(self) -> tuple[Action, ...]:
        """The actions that will talk to the service."""
        return tuple(a for a in self.actions if a.kind in SENDING)


SENDING = frozenset({ActionKind.CREATE, ActionKind.RECONCILE, ActionKind.RETRY})


# a fingerprint's parameters, as ExportSpec.fingerprint writes them, by their manifest names
_FIELDS = {
    "Description": "description",
    "ExportMode": "export_mode",
    "ExportObjectStatus": "export_object_status",
    "IncrementalSince": "incremental_since",
}
_PARAM = re.compile(r"(?:^|&)(Description|ExportMode|ExportObjectStatus|IncrementalSince)=")
_SHOWN = 40  # characters of a value shown in a drift's reason


def _params(fingerprint: str) -> dict[str, str]:
    """The parameters of a fingerprint (a Description holding '&ExportMode=' may blur one:
    the reason is only for reading)."""
    head = fingerprint.split("&Name=", 1)[0]  # the name and project id end every fingerprint
    marks = list(_PARAM.finditer(head))
    ends = [mark.start() for mark in marks[1:]] + [len(head)]
    return {mark[1]: head[mark.end() : end] for mark, end in zip(marks, ends, strict=True)}


def _shown(value: str | None) -> str:
    if value is None:
        return "(none)"
    return repr(value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…")


def drift_reason(sent: str, now: str) -> str:
    """Why a done task is drifted, naming each field that changed since it was sent."""
    before, after = _params(sent), _params(now)
    changed = [
        f"{_FIELDS[name]} {_shown(before.get(name))} -> {_shown(after.get(name))}"
        for name in _FIELDS
        if before.get(name) != after.get(name)
    ]
    if not changed:
        return "done, but the manifest now says otherwise"
    return f"done, but the manifest now says otherwise: {'; '.join(changed)}"


def decide(
    spec: ExportSpec,
    row: JournalView | None,
    *,
    only_failed: bool = False,
    default_profile: str | None = None,
    unnamed_default: bool = False,
) -> Action:
    """The action for one task, given its journal row (None when the journal never saw it).
    `default_profile` is the run's profile, for tasks whose workspace names none; with
    `unnamed_default` (it was named by ALIBABA_CLOUD_PROFILE, which older runs did not record)
    a row sent with no profile name is taken as sent with it."""
    if row is not None and row.create_sent:
        profile = spec.profile or default_profile
        legacy = unnamed_default and row.profile is None and spec.profile is None
        if row.profile != profile and not legacy:
            # another account may not see, or may remake, what the first one made: not mixed
            return Action(
                ActionKind.DRIFTED,
                spec,
                f"its create was sent with profile {row.profile or '(default)'}, the manifest now"
                f" says {profile or '(default)'}: restore it, or give the task a new name",
            )
    if row is None or row.state is TaskState.PENDING:
        if only_failed:
            return Action(ActionKind.SKIP, spec, "not failed (--only-failed)")
        if row is None:
            return Action(ActionKind.CREATE, spec, "new")
        if row.listed_at is not None and not row.create_sent:
            return Action(ActionKind.CREATE, spec, "pending, listed absent before", listed=True)
        return Action(ActionKind.CREATE, spec, "pending", create_sent=row.create_sent)
    if row.state is TaskState.IN_FLIGHT:
        return Action(
            ActionKind.RECONCILE,
            spec,
            "outcome unknown: look the name up first",
            since=row.updated_at,
        )
    if row.state is TaskState.FAILED:
        if row.migration_id is not None:
            # created, then its start or export failed: the name is taken by a task that cannot
            # run again, so no create or lookup can help; it stays failed until someone acts
            return Action(
                ActionKind.SKIP,
                spec,
                f"created as {row.migration_id}, then failed ({row.error_code or 'error'}):"
                " give the task a new name to export again",
            )
        if row.create_sent:
            # a create went out before: it may have landed despite the error, so look first
            return Action(
                ActionKind.RECONCILE,
                spec,
                f"failed before ({row.error_code or 'error'}) after a create was sent: look first",
                since=row.updated_at,
            )
        return Action(ActionKind.RETRY, spec, f"failed before ({row.error_code or 'error'})")
    if row.state is TaskState.EXISTS:
        return Action(
            ActionKind.RETRY,
            spec,
            "the name is taken by a task this journal never made: --adopt-existing adopts it",
            taken=True,
        )
    if row.state in DONE_STATES or row.state is TaskState.IMPORT_FAILED:
        # the export is made (an import that failed is the import leg's to retry)
        if row.fingerprint == ADOPTED_FINGERPRINT:
            return Action(ActionKind.SKIP, spec, f"already {row.state.value} (adopted)")
        if row.fingerprint is not None and row.fingerprint != (now := spec.fingerprint()):
            return Action(ActionKind.DRIFTED, spec, drift_reason(row.fingerprint, now))
        return Action(ActionKind.SKIP, spec, f"already {row.state.value}")
    raise ValueError(f"unknown state {row.state!r}")  # pragma: no cover


def listed_first(
    actions: Iterable[Action], sent_workspaces: Collection[tuple[str, int]]
) -> list[tuple[str, int]]:
    """The workspaces a run lists whole before its first create there: those with a task to
    create that this journal has never sent a create to. Each costs one ListMigrations read per
    hundred tasks it holds (one, for most)."""
    listed = {
        (a.spec.key.region, a.spec.key.project_id)
        for a in actions
        if a.kind in (ActionKind.CREATE, ActionKind.RETRY) and not (a.create_sent or a.listed)
    }
    return sorted(listed - set(sent_workspaces))


def interleaved(actions: Sequence[Action]) -> Iterator[Action]:
    """The actions taken in turn from each (profile, region), each group in its own order.

    Each account and region has buckets of its own: handed out one group after another, the
    workers would all queue on the first group's bucket while the others stood idle."""
    groups: dict[tuple[str | None, str], list[Action]] = {}
    for action in actions:
        groups.setdefault((action.spec.profile, action.spec.key.region), []).append(action)
    queues = [iter(group) for group in groups.values()]
    while queues:
        still: list[Iterator[Action]] = []
        for queue in queues:
            taken = next(queue, None)
            if taken is not None:
                yield taken
                still.append(queue)
        queues = still


def _order(spec: ExportSpec) -> tuple[str, int, str]:
    key = spec.key
    return (key.region, key.project_id, key.name)


R = TypeVar("R", bound="JournalRow")


def pair_in_order(
    specs: Iterable[ExportSpec], rows: Iterable[R]
) -> Iterator[tuple[ExportSpec, R | None]]:
    """Each spec, in key order, with its journal row (None when the journal has none), given the
    rows in key order (as `Journal.iter_rows` reads them): a merge that holds one row at a time,
    never a map of the journal."""
    row_iter = iter(rows)
    row = next(row_iter, None)
    for spec in sorted(specs, key=_order):
        wanted = _order(spec)
        while row is not None and (row.key.region, row.key.project_id, row.key.name) < wanted:
            row = next(row_iter, None)
        yield spec, (row if row is not None and row.key == spec.key else None)


def plan_in_order(
    specs: Iterable[ExportSpec],
    rows: Iterable[JournalRow],
    *,
    only_failed: bool = False,
    default_profile: str | None = None,
    unnamed_default: bool = False,
) -> Iterator[Action]:
    """The actions for `specs`, in key order, given the journal's rows in key order."""
    for spec, row in pair_in_order(specs, rows):
        yield decide(
            spec,
            row,
            only_failed=only_failed,
            default_profile=default_profile,
            unnamed_default=unnamed_default,
        )


def make_plan(
    specs: Iterable[ExportSpec],
    rows: Mapping[TaskKey, JournalView],
    *,
    only_failed: bool = False,
    default_profile: str | None = None,
    unnamed_default: bool = False,
) -> Plan:
    return Plan(
        tuple(
            decide(
                s,
                rows.get(s.key),
                only_failed=only_failed,
                default_profile=default_profile,
                unnamed_default=unnamed_default,
            )
            for s in specs
        )
    )
