"""A rerun's lookups never push back the visibility window of a lost send: the window counts
from when the send was last heard of, however many interrupted reruns looked in between."""

from __future__ import annotations

from pathlib import Path

from runner import lookup
from runner.journal import Journal, MarkCreated, MarkInFlight, RecordAttempt, Register
from runner.journal_ops import LOOKUPS
from runner.models import ActionKind, ExportSpec, TaskKey
from runner.plan import decide

SPEC = ExportSpec(TaskKey("cn-shanghai", 12345, "sales_full"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def read(label: str, outcome: str = "ok") -> RecordAttempt:
    return RecordAttempt(SPEC.key, label, 200, None, "req", 5.0, outcome)


def test_lookups_count_on_the_task_but_leave_its_time(tmp_path: Path) -> None:
    """A listing or summary read of an in-flight task is counted and kept in the history, and
    the plan of a later rerun still waits from the send, not from the lookup."""
    clock = Clock()
    with Journal.open(tmp_path / "j.db", clock=clock) as journal:
        journal.apply([Register(SPEC), MarkInFlight(SPEC.key, SPEC.fingerprint())])
        for at in (1030.0, 1050.0):  # two interrupted reruns, each looked and found nothing
            clock.now = at
            journal.apply([read("list")])
            journal.apply([read("summary", "retryable")])
        row = journal.get(SPEC.key)
        assert row is not None
        assert row.updated_at == 1000.0
        assert row.attempts == 4
        assert len(journal.attempts()) == 4
        action = decide(SPEC, row)
        assert action.kind is ActionKind.RECONCILE
        assert action.since == 1000.0  # a rerun at 1061 resends, whatever was looked at since


def test_a_lost_send_and_a_change_after_a_lookup_still_move_the_time(tmp_path: Path) -> None:
    """The create's own attempt (its answer lost) is when the outcome became unknown, and a
    lookup that adopts the task changes it: both move updated_at."""
    clock = Clock()
    with Journal.open(tmp_path / "j.db", clock=clock) as journal:
        journal.apply([Register(SPEC), MarkInFlight(SPEC.key, SPEC.fingerprint())])
        clock.now = 1010.0
        journal.apply([read("create", "unknown_outcome")])
        row = journal.get(SPEC.key)
        assert row is not None
        assert row.updated_at == 1010.0
        clock.now = 1070.0
        journal.apply([read("list"), MarkCreated(SPEC.key, 100001, "req")])
        row = journal.get(SPEC.key)
        assert row is not None
        assert row.updated_at == 1070.0
        assert row.attempts == 2


def test_every_lookup_policy_is_one_the_journal_knows() -> None:
    """The labels the lookups record are the ones the journal keeps the time for."""
    policies = (
        lookup.LIST_POLICY,
        lookup.POLL_LIST_POLICY,
        lookup.SUMMARY_POLICY,
        lookup.POLL_SUMMARY_POLICY,
    )
    assert {p.label for p in policies} <= LOOKUPS


def test_a_name_a_listing_showed_absent_is_created_next_time_with_no_listing(
    tmp_path: Path,
) -> None:
    """A pending task whose workspace listing showed its name absent (the run then stopped)
    plans as a create with no listing first; once a create is sent, that no longer counts."""
    from runner.journal import MarkListedAbsent
    from runner.plan import listed_first

    clock = Clock()
    other = ExportSpec(TaskKey("cn-shanghai", 777, "other"))
    with Journal.open(tmp_path / "j.db", clock=clock) as journal:
        journal.apply([Register(SPEC), Register(other), MarkListedAbsent(SPEC.key, 1001.0)])
        row = journal.get(SPEC.key)
        assert row is not None
        assert row.listed_at == 1001.0
        action = decide(SPEC, row)
        assert (action.kind, action.listed) == (ActionKind.CREATE, True)
        fresh = decide(other, journal.get(other.key))
        assert listed_first([action, fresh], ()) == [("cn-shanghai", 777)]
        journal.apply([MarkInFlight(SPEC.key, SPEC.fingerprint())])
        row = journal.get(SPEC.key)
        assert row is not None
        assert decide(SPEC, row).listed is False
