"""Planning: manifest × journal → one action per task."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.models import ActionKind, ExportMode, ExportSpec, ObjectStatus, TaskKey, TaskState
from runner.plan import make_plan


@dataclass(frozen=True)
class Row:
    state: TaskState
    fingerprint: str | None = None
    error_code: str | None = None
    create_sent: bool = False
    migration_id: int | None = None
    updated_at: float = 0.0
    profile: str | None = None
    listed_at: float | None = None


SPEC = ExportSpec(TaskKey("cn-shanghai", 2, "a"))


def test_actions_follow_journal_state() -> None:
    """New and pending → create, in_flight → reconcile, failed → retry, done → skip."""
    specs = [ExportSpec(TaskKey("r", 2, n)) for n in "abcdef"]
    rows = {
        specs[1].key: Row(TaskState.PENDING),
        specs[2].key: Row(TaskState.IN_FLIGHT),
        specs[3].key: Row(TaskState.FAILED, error_code="X"),
        specs[4].key: Row(TaskState.CREATED, specs[4].fingerprint()),
        specs[5].key: Row(TaskState.EXPORTED, specs[5].fingerprint()),
    }
    plan = make_plan(specs, rows)
    assert [a.kind for a in plan.actions] == [
        ActionKind.CREATE,
        ActionKind.CREATE,
        ActionKind.RECONCILE,
        ActionKind.RETRY,
        ActionKind.SKIP,
        ActionKind.SKIP,
    ]
    assert len(plan.to_send()) == 4
    assert plan.totals()[ActionKind.SKIP] == 2


def test_drift_is_reported_not_sent() -> None:
    """A done task whose manifest entry changed is marked drifted and not sent."""
    changed = ExportSpec(SPEC.key, ExportMode.INCREMENTAL, incremental_since=1)
    plan = make_plan([changed], {SPEC.key: Row(TaskState.CREATED, SPEC.fingerprint())})
    assert plan.actions[0].kind is ActionKind.DRIFTED
    assert plan.to_send() == ()


def test_a_drift_names_each_field_that_changed_with_both_values() -> None:
    """The reason says which fields differ from what was sent, and how: a changed mode and
    since, a description added; a field left alone is not named, a long value is cut."""
    sent = ExportSpec(SPEC.key, description="a & b=c", export_object_status=ObjectStatus.SAVED)
    now = ExportSpec(
        SPEC.key,
        ExportMode.INCREMENTAL,
        ObjectStatus.SAVED,
        "a & b=c",
        incremental_since=1_600_000_000_000,
    )
    reason = make_plan([now], {SPEC.key: Row(TaskState.CREATED, sent.fingerprint())}).actions[0]
    assert reason.kind is ActionKind.DRIFTED
    assert reason.reason == (
        "done, but the manifest now says otherwise: export_mode 'FULL' -> 'INCREMENTAL';"
        " incremental_since (none) -> '1600000000000'"
    )
    longer = ExportSpec(SPEC.key, description="x" * 100)
    action = make_plan([longer], {SPEC.key: Row(TaskState.CREATED, SPEC.fingerprint())}).actions[0]
    assert action.reason == (
        f"done, but the manifest now says otherwise: description (none) -> '{'x' * 39}…'"
    )


def test_only_failed_skips_everything_else() -> None:
    """--only-failed sends retries and reconciles, never new creates."""
    a, b, c = (ExportSpec(TaskKey("r", 2, n)) for n in "abc")
    rows = {b.key: Row(TaskState.FAILED), c.key: Row(TaskState.IN_FLIGHT)}
    kinds = [x.kind for x in make_plan([a, b, c], rows, only_failed=True).actions]
    assert kinds == [ActionKind.SKIP, ActionKind.RETRY, ActionKind.RECONCILE]


def test_failed_after_a_sent_create_is_looked_up_first() -> None:
    """A failed task whose create went out is reconciled, not blindly resent."""
    plan = make_plan([SPEC], {SPEC.key: Row(TaskState.FAILED, error_code="X", create_sent=True)})
    assert plan.actions[0].kind is ActionKind.RECONCILE


def test_failed_export_is_not_recreated_or_hidden() -> None:
    """A task created and then failed in its export is skipped and stays failed."""
    row = Row(TaskState.FAILED, error_code="ExportFailed", create_sent=True, migration_id=5)
    action = make_plan([SPEC], {SPEC.key: row}).actions[0]
    assert action.kind is ActionKind.SKIP
    assert "new name" in action.reason


def test_listed_first_names_new_workspaces_with_something_to_create() -> None:
    """Only workspaces with a create this journal never sent there are listed before it."""
    from runner.models import Action
    from runner.plan import listed_first

    def action(kind: ActionKind, project_id: int, *, sent: bool = False) -> Action:
        return Action(kind, ExportSpec(TaskKey("r", project_id, "t")), create_sent=sent)

    actions = [
        action(ActionKind.CREATE, 2),
        action(ActionKind.RETRY, 3),
        action(ActionKind.CREATE, 4, sent=True),  # a create went there: its row says so
        action(ActionKind.SKIP, 5),
        action(ActionKind.RECONCILE, 6),
        action(ActionKind.CREATE, 7),
    ]
    assert listed_first(actions, {("r", 7)}) == [("r", 2), ("r", 3)]


def test_interleaved_takes_each_account_and_region_in_turn() -> None:
    """Actions of several (profile, region) groups come out in turn, each group in its order."""
    from dataclasses import replace

    from runner.models import Action
    from runner.plan import interleaved

    def act(region: str, name: str, profile: str | None = None) -> Action:
        spec = replace(ExportSpec(TaskKey(region, 2, name)), profile=profile)
        return Action(ActionKind.CREATE, spec)

    actions = [act("r1", "a1"), act("r1", "a2"), act("r1", "a3"), act("r2", "b1")]
    actions += [act("r1", "c1", "p"), act("r1", "c2", "p")]
    names = [a.spec.key.name for a in interleaved(actions)]
    assert names == ["a1", "b1", "c1", "a2", "c2", "a3"]


@pytest.mark.fuzz
@given(
    name=st.text(min_size=1, max_size=12),
    project_id=st.integers(1, 2**63 - 1),
    mode=st.sampled_from(ExportMode),
    status=st.none() | st.sampled_from(ObjectStatus),
    description=st.none() | st.text(max_size=12),
    since=st.none() | st.integers(0, 2**50),
)
def test_the_fingerprint_is_the_request_parameters_in_sorted_order(
    name: str,
    project_id: int,
    mode: ExportMode,
    status: ObjectStatus | None,
    description: str | None,
    since: int | None,
) -> None:
    """The fingerprint, written out field by field, is the create's parameters as
    `name=value` joined by '&' in sorted name order."""
    spec = ExportSpec(TaskKey("cn-shanghai", project_id, name), mode, status, description, since)
    params = sorted(spec.request_params().items())
    assert spec.fingerprint() == "&".join(f"{k}={v}" for k, v in params)
