"""The simulator's pure parts: the DataWorks state machine, validation, and the fault helpers."""

from __future__ import annotations

import random
from urllib.parse import parse_qs, urlsplit

import pytest

from runner.sim.faults import Fault, Faults, Throttle, draw_fault, draw_latency
from runner.sim.state import FIRST_MIGRATION_ID, DataWorksState, SimError
from tests.sim.uploads import store_package

BASE = "http://127.0.0.1:9"
T0 = 1_700_000_000.0


def _create(state: DataWorksState, name: str = "n1", project: int = 12345, **extra: str) -> int:
    params = {"ProjectId": str(project), "Name": name, "ExportMode": "FULL", **extra}
    return state.create_export_migration(params, T0, "ak")


def _error(exc: pytest.ExceptionInfo[SimError]) -> tuple[int, str, str]:
    return exc.value.status, exc.value.code, exc.value.message


def test_ids_start_plausibly_and_increase() -> None:
    """Ids start at 100001 and grow by one across projects."""
    state = DataWorksState()
    assert _create(state, "a") == FIRST_MIGRATION_ID == 100001
    assert _create(state, "b", project=777) == 100002


@pytest.mark.parametrize("name", ["ProjectId", "Name", "ExportMode"])
def test_create_missing_parameter(name: str) -> None:
    """Each required create parameter answers MissingParameter when absent."""
    params = {"ProjectId": "12345", "Name": "n", "ExportMode": "FULL"}
    del params[name]
    with pytest.raises(SimError) as exc:
        DataWorksState().create_export_migration(params, T0)
    assert _error(exc) == (400, "MissingParameter", f"{name} is mandatory for this action.")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ProjectId", "abc"),
        ("ProjectId", "1"),
        ("ProjectId", str(2**63)),
        ("ExportMode", "PARTIAL"),
        ("ExportObjectStatus", "PUBLISHED"),
    ],
)
def test_create_invalid_parameter(name: str, value: str) -> None:
    """Bad enums and out-of-range ids answer InvalidParameter naming the parameter."""
    params = {"ProjectId": "12345", "Name": "n", "ExportMode": "FULL", name: value}
    with pytest.raises(SimError) as exc:
        DataWorksState().create_export_migration(params, T0)
    status, code, message = _error(exc)
    assert (status, code) == (400, "InvalidParameter")
    assert name in message


def test_incremental_needs_since() -> None:
    """INCREMENTAL without IncrementalSince is InvalidParameter; with it the task is made."""
    state = DataWorksState()
    params = {"ProjectId": "12345", "Name": "i", "ExportMode": "INCREMENTAL"}
    with pytest.raises(SimError) as exc:
        state.create_export_migration(params, T0)
    assert exc.value.code == "InvalidParameter"
    assert "IncrementalSince" in exc.value.message
    migration_id = state.create_export_migration(
        {**params, "IncrementalSince": "1589904000000"}, T0
    )
    assert state.migrations[migration_id].incremental_since == 1589904000000


def test_duplicate_name_is_refused_per_type() -> None:
    """A second export with the same name in the project is Invalid.Param 'already exists'."""
    state = DataWorksState()
    _create(state, "dup")
    with pytest.raises(SimError) as exc:
        _create(state, "dup")
    assert _error(exc) == (
        400,
        "Invalid.Param",
        "The export task name 'dup' already exists in project 12345.",
    )
    assert len(state.migrations) == 1
    assert _create(state, "dup", project=999) == 100002  # other project: its own namespace
    state.start_migration({"ProjectId": "12345", "MigrationId": "100001"}, T0)
    package_file = store_package(state, 100001)
    imported = state.create_import_migration(
        {
            "ProjectId": "12345",
            "Name": "dup",
            "PackageType": "DATAWORKS_MODEL",
            "PackageFile": package_file,
        },
        T0 + state.duration,
    )
    assert imported == 100003  # imports have their own namespace


def test_missing_project() -> None:
    """A configured missing project answers Invalid.Tenant.ProjectNotExists."""
    state = DataWorksState(missing_projects=frozenset({404404}))
    with pytest.raises(SimError) as exc:
        _create(state, project=404404)
    assert _error(exc) == (400, "Invalid.Tenant.ProjectNotExists", "The project does not exist.")


def test_lifecycle_on_the_clock() -> None:
    """INIT, then EXPORTING/RUNNING after start, then EXPORT_SUCCESS/SUCCESS with a URL."""
    state = DataWorksState(duration=10.0, download_ttl=60.0)
    mid = _create(state)
    ask = {"ProjectId": "12345", "MigrationId": str(mid)}
    listing = {"ProjectId": "12345", "MigrationType": "EXPORT"}
    summary = state.get_migration_summary(ask, T0, BASE)
    assert summary["Status"] == "INIT"
    assert "DownloadUrl" not in summary
    assert [s["TaskStatus"] for s in state.get_migration_process(ask, T0)] == ["INIT"] * 3
    assert state.start_migration(ask, T0 + 1) == (True, "")
    assert state.get_migration_summary(ask, T0 + 5, BASE)["Status"] == "EXPORTING"
    assert state.list_migrations(listing, T0 + 5, BASE)["Migrations"][0]["Status"] == "RUNNING"
    steps = [s["TaskStatus"] for s in state.get_migration_process(ask, T0 + 5)]
    assert steps == ["SUCCESS", "RUNNING", "INIT"]
    done = state.get_migration_summary(ask, T0 + 11, BASE)
    assert done["Status"] == "EXPORT_SUCCESS"
    assert done["GmtModified"] == int((T0 + 11) * 1000)
    item = state.list_migrations(listing, T0 + 11, BASE)["Migrations"][0]
    assert item["Status"] == "SUCCESS"
    url = urlsplit(done["DownloadUrl"])
    assert url.path == f"/download/{mid}.zip"
    query = parse_qs(url.query)
    assert int(query["Expires"][0]) == int(T0 + 11 + 60)
    record = state.check_download(mid, query["Expires"][0], query["Signature"][0], T0 + 20)
    assert record.migration_id == mid


def test_start_twice_and_unknown() -> None:
    """A second start answers Data=false with a message; an unknown id is Invalid.Param."""
    state = DataWorksState()
    mid = _create(state)
    ask = {"ProjectId": "12345", "MigrationId": str(mid)}
    assert state.start_migration(ask, T0)[0] is True
    started, message = state.start_migration(ask, T0 + 1)
    assert started is False
    assert "already EXPORTING" in message
    with pytest.raises(SimError) as exc:
        state.start_migration({"ProjectId": "12345", "MigrationId": "999999"}, T0)
    assert exc.value.code == "Invalid.Param"
    with pytest.raises(SimError) as other_project:
        state.start_migration({"ProjectId": "555", "MigrationId": str(mid)}, T0)
    assert other_project.value.code == "Invalid.Param"


def test_failed_export() -> None:
    """A start drawn to fail ends EXPORT_ERROR / FAILURE with a message and no URL."""
    state = DataWorksState(duration=1.0)
    mid = _create(state)
    state.start_migration({"ProjectId": "12345", "MigrationId": str(mid)}, T0, will_fail=True)
    summary = state.get_migration_summary(
        {"ProjectId": "12345", "MigrationId": str(mid)}, T0 + 2, BASE
    )
    assert summary["Status"] == "EXPORT_ERROR"
    assert "DownloadUrl" not in summary
    item = state.list_migrations({"ProjectId": "12345", "MigrationType": "EXPORT"}, T0 + 2, BASE)
    assert item["Migrations"][0]["Status"] == "FAILURE"
    assert item["Migrations"][0]["Message"]


def test_download_url_checks() -> None:
    """A forged or expired download signature is refused with 403."""
    state = DataWorksState(duration=0.0, download_ttl=10.0)
    mid = _create(state)
    state.start_migration({"ProjectId": "12345", "MigrationId": str(mid)}, T0)
    url = state.get_migration_summary({"ProjectId": "12345", "MigrationId": str(mid)}, T0, BASE)
    query = parse_qs(urlsplit(url["DownloadUrl"]).query)
    expires, signature = query["Expires"][0], query["Signature"][0]
    with pytest.raises(SimError) as forged:
        state.check_download(mid, expires, "0" * 64, T0)
    assert forged.value.status == 403
    with pytest.raises(SimError) as late:
        state.check_download(mid, expires, signature, T0 + 11)
    assert (late.value.status, late.value.message) == (403, "Request has expired.")


def test_list_pages_filters_and_limits() -> None:
    """Lists filter by project and type, page by id ascending, echo paging and count."""
    state = DataWorksState()
    ids, elsewhere = [], []
    for i in range(25):  # another workspace's tasks made in between
        ids.append(_create(state, f"t{i:02d}"))
        if i % 5 == 0:
            elsewhere.append(_create(state, f"elsewhere{i}", project=999))
    other = state.list_migrations({"ProjectId": "999", "MigrationType": "EXPORT"}, T0, BASE)
    assert [m["Id"] for m in other["Migrations"]] == elsewhere
    base = {"ProjectId": "12345", "MigrationType": "EXPORT"}
    first = state.list_migrations(base, T0, BASE)
    assert (first["PageNumber"], first["PageSize"], first["TotalCount"]) == (1, 10, 25)
    assert [m["Id"] for m in first["Migrations"]] == ids[:10]
    third = state.list_migrations({**base, "PageNumber": "3", "PageSize": "10"}, T0, BASE)
    assert [m["Id"] for m in third["Migrations"]] == ids[20:]
    beyond = state.list_migrations({**base, "PageNumber": "4"}, T0, BASE)
    assert beyond["Migrations"] == []
    assert beyond["TotalCount"] == 25
    imports = state.list_migrations({**base, "MigrationType": "IMPORT"}, T0, BASE)
    assert imports["TotalCount"] == 0
    item = first["Migrations"][0]
    assert set(item) >= {"Id", "Name", "MigrationType", "Status", "DownloadUrl", "ProjectId"}


@pytest.mark.parametrize(
    ("extra", "code", "name"),
    [
        ({"MigrationType": ""}, "MissingParameter", "MigrationType"),
        ({"MigrationType": "BOTH"}, "InvalidParameter", "MigrationType"),
        ({"PageNumber": "0"}, "InvalidParameter", "PageNumber"),
        ({"PageNumber": "101"}, "InvalidParameter", "PageNumber"),
        ({"PageSize": "9"}, "InvalidParameter", "PageSize"),
        ({"PageSize": "101"}, "InvalidParameter", "PageSize"),
    ],
)
def test_list_validation(extra: dict[str, str], code: str, name: str) -> None:
    """ListMigrations validates its type and paging parameters."""
    params = {"ProjectId": "12345", "MigrationType": "EXPORT", **extra}
    with pytest.raises(SimError) as exc:
        DataWorksState().list_migrations(params, T0, BASE)
    assert exc.value.code == code
    assert name in exc.value.message


@pytest.mark.parametrize(
    ("migration_id", "code"), [(None, "MissingParameter"), ("1", "InvalidParameter")]
)
def test_start_validation(migration_id: str | None, code: str) -> None:
    """StartMigration needs a MigrationId of at least 2."""
    params = {"ProjectId": "12345"}
    if migration_id is not None:
        params["MigrationId"] = migration_id
    with pytest.raises(SimError) as exc:
        DataWorksState().start_migration(params, T0)
    assert exc.value.code == code


def test_throttle_passes_exactly_the_limit() -> None:
    """N requests in the same instant pass, the N+1th is refused, a second later N pass again."""
    throttle = Throttle(Faults(qps_limit=5, retry_after=True))
    assert [throttle.check("ak", T0) for _ in range(5)] == [None] * 5
    refused = throttle.check("ak", T0)
    assert refused is not None
    assert (refused.status, refused.code) == (429, "Throttling.User")
    assert refused.retry_after_ms == 200
    assert throttle.check("other", T0) is None  # per access key
    assert [throttle.check("ak", T0 + 1.0) for _ in range(5)] == [None] * 5
    assert throttle.check("ak", T0 + 1.0) is not None


def test_throttle_paced_at_the_limit_never_refuses() -> None:
    """A client sending evenly at exactly the limit is never throttled."""
    throttle = Throttle(Faults(qps_limit=20))
    assert all(throttle.check("ak", T0 + i / 20) is None for i in range(200))


def test_daily_quota() -> None:
    """The daily quota counts accepted calls per key and resets on the next UTC day."""
    throttle = Throttle(Faults(daily_quota=3))
    day_start = 19_000 * 86_400.0
    assert [throttle.check("ak", day_start + i) for i in range(3)] == [None] * 3
    refused = throttle.check("ak", day_start + 10)
    assert refused is not None
    assert refused.code == "Throttling.Api.Risk"
    assert throttle.used_today("ak", day_start + 10) == 3
    assert throttle.check("ak", day_start + 86_400) is None


def test_draw_fault_is_seeded_and_proportional() -> None:
    """Same seed, same faults; rates are roughly honoured; reads are spared by default."""
    faults = Faults(error_rate=0.2, timeout_rate=0.2, reset_rate=0.2)
    rng_a, rng_b = random.Random(42), random.Random(42)
    seq_a = [draw_fault(faults, rng_a, is_write=True) for _ in range(1000)]
    seq_b = [draw_fault(faults, rng_b, is_write=True) for _ in range(1000)]
    assert seq_a == seq_b
    none_share = seq_a.count(Fault.NONE) / 1000
    assert 0.33 < none_share < 0.47
    assert {Fault.UNAVAILABLE, Fault.INTERNAL, Fault.TIMEOUT, Fault.RESET} <= set(seq_a)
    assert draw_fault(faults, rng_a, is_write=False) is Fault.NONE
    on_reads = Faults(error_rate=1.0, faults_on_reads=True)
    assert draw_fault(on_reads, rng_a, is_write=False) in (Fault.UNAVAILABLE, Fault.INTERNAL)


def test_latency_and_fault_validation() -> None:
    """Latency is fixed plus bounded jitter; impossible fault settings are refused."""
    rng = random.Random(1)
    assert draw_latency(Faults(latency=0.5), rng) == 0.5
    assert 0.5 <= draw_latency(Faults(latency=0.5, latency_jitter=0.1), rng) < 0.6
    with pytest.raises(ValueError, match="must not exceed 1"):
        Faults(error_rate=0.6, reset_rate=0.6)
    with pytest.raises(ValueError, match="qps_limit"):
        Faults(qps_limit=0)


@pytest.mark.parametrize("cap", [0, 7, 9, 101])
def test_a_page_size_cap_outside_the_services_range_is_refused(cap: int) -> None:
    """--max-page-size is 10 to 100, the PageSize range the service takes: a smaller cap would
    serve pages whose size the simulator itself refuses when asked for the next page."""
    with pytest.raises(ValueError, match=r"max_page_size must be within \[10, 100\]"):
        Faults(max_page_size=cap)
    assert Faults(max_page_size=10).max_page_size == 10
