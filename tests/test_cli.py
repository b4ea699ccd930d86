"""The command line in-process: exit codes, stdout for reports, stderr for problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.commands.common import ExitCode

GOOD = """\
version: 1
defaults:
  region: cn-shanghai
  name: "backup-{project_id}"
workspaces:
  - project_id: 101
  - project_id: 102
    tasks:
      - name: a
      - name: b
"""
BAD = """\
version: 1
workspaces:
  - project_id: 101
    regoin: cn-shanghai
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    return good, bad


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_validate_good_manifest(files: tuple[Path, Path]) -> None:
    """A valid manifest exits 0 and says how many tasks it holds."""
    code, out, _ = invoke("validate", str(files[0]))
    assert code == 0
    assert "3 tasks in 2 workspaces" in out


def test_validate_bad_manifest_reports_positions(files: tuple[Path, Path]) -> None:
    """An invalid manifest exits 2 with FILE:LINE:COL problems on stderr, stdout empty."""
    code, out, err = invoke("validate", str(files[1]), str(files[0]))
    assert code == 2
    assert out == ""
    assert f"{files[1]}:4:5:" in err
    assert "did you mean 'region'" in err


def test_plan_without_journal_creates_everything(files: tuple[Path, Path], tmp_path: Path) -> None:
    """With no journal yet, every task is planned as a create, and each workspace as one listing
    at least before it; JSON goes to stdout."""
    code, out, _ = invoke(
        "plan", str(files[0]), "--journal", str(tmp_path / "j.db"), "--format", "json"
    )
    assert code == 0
    plan = json.loads(out)
    assert plan["totals"]["create"] == 3
    assert {t["name"] for t in plan["tasks"]} == {"backup-101", "a", "b"}
    assert plan["listings"]["reads_at_least"] == 2  # workspaces 101 and 102
    assert not (tmp_path / "j.db").exists()


def test_status_without_journal_is_a_usage_error(tmp_path: Path) -> None:
    """status on a journal that does not exist exits 2 and names it."""
    code, _, err = invoke("status", "--journal", str(tmp_path / "none.db"))
    assert code == 2
    assert "none.db" in err


def test_run_without_credentials_sends_nothing(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing credentials exit 2 before any journal or request is made."""
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_PROFILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile files either
    code, _, err = invoke("run", str(files[0]), "--journal", str(tmp_path / "j.db"))
    assert code == 2
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in err
    assert not (tmp_path / "j.db").exists()


def test_run_with_bad_manifest_exits_2(files: tuple[Path, Path], tmp_path: Path) -> None:
    """An invalid manifest stops run before anything is sent."""
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    code, _, err = invoke("run", str(files[1]), "--journal", str(tmp_path / "j.db"), env=env)
    assert code == 2
    assert "nothing was sent" in err


def test_run_refuses_plain_http_beyond_loopback(files: tuple[Path, Path], tmp_path: Path) -> None:
    """--endpoint with plain http to a remote host is refused with exit 2."""
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    code, _, err = invoke(
        "run",
        str(files[0]),
        "--journal",
        str(tmp_path / "j.db"),
        "--endpoint",
        "http://192.0.2.1:80",
        env=env,
    )
    assert code == 2
    assert "plain http" in err


@pytest.mark.parametrize(
    "endpoint",
    ["http://u:pa55word@127.0.0.1:1", "http://127.0.0.1:99999", "http://[::1:1"],
    ids=["user info", "port out of range", "unclosed bracket"],
)
def test_run_refuses_an_unusable_endpoint_before_journaling(
    files: tuple[Path, Path], tmp_path: Path, endpoint: str
) -> None:
    """--endpoint with user info or an invalid port exits 2 with one line, before the journal
    exists (so no task is ever marked in flight), and never shows a password."""
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    journal = tmp_path / "j.db"
    args = ("run", str(files[0]), "--journal", str(journal), "--endpoint", endpoint)
    code, out, err = invoke(*args, env=env)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: endpoint")
    assert "pa55word" not in err + out
    assert not journal.exists()


def test_sim_rejects_a_malformed_key() -> None:
    """runner sim --key must be ID:SECRET[:TOKEN]."""
    code, _, err = invoke("sim", "--key", "just-an-id")
    assert code == 2
    assert "ID:SECRET" in err


def test_plan_with_a_corrupt_journal_is_a_usage_error(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    """plan names the journal it cannot read instead of crashing."""
    bad = tmp_path / "j.db"
    bad.write_bytes(b"this is not a database" * 100)
    code, _, err = invoke("plan", str(files[0]), "--journal", str(bad))
    assert code == 2
    assert "j.db" in err


def test_unexpected_error_stops_with_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error no command expected exits 3 with one clear line, not a traceback."""
    from runner import cli as cli_module
    from runner.commands import status

    def explode(*args: object, **kwargs: object) -> int:
        raise ExceptionGroup("workers", [OSError("disk full")])

    monkeypatch.setattr(status, "execute", explode)
    monkeypatch.setattr("sys.argv", ["runner", "status"])
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    assert exited.value.code == 3
    assert "OSError: disk full" in capsys.readouterr().err


def test_summary_names_drifted_tasks() -> None:
    """The run summary tells the operator when done tasks no longer match the manifest."""
    from runner.commands.run import RunResult, summary_line

    result = RunResult(ExitCode.OK, planned={"drifted": 2, "skip": 5}, states={"created": 7})
    text = summary_line(result, Path("j.db"))
    assert "drifted: 2 done tasks differ" in text
    assert "details:" not in text


def test_summary_says_why_requests_failed_and_what_was_left() -> None:
    """Failed requests are summed up by code, the most frequent first, each with its first
    message (long ones cut); tasks left unresolved are named as such."""
    from runner.commands.run import RunResult, summary_line
    from runner.engine import RunStats
    from runner.phases.create import CreateStats

    stats = RunStats(
        create=CreateStats(unresolved=3),
        errors={"ServiceUnavailable": 2, "ConnectError": 9},
        first_errors={
            "ConnectError": "cannot connect to 127.0.0.1:1",
            "ServiceUnavailable": "x" * 500,
        },
    )
    result = RunResult(ExitCode.TASKS_FAILED, stats=stats, states={"pending": 3})
    text = summary_line(result, Path("j.db"))
    errors = next(line for line in text.splitlines() if line.startswith("request errors: "))
    assert errors.startswith(
        "request errors: ConnectError x9 (cannot connect to 127.0.0.1:1); ServiceUnavailable x2 ("
    )
    assert len(errors) < 300
    assert "unresolved: 3 tasks are left as they were" in text
    quiet = summary_line(RunResult(ExitCode.OK, states={"created": 1}), Path("j.db"))
    assert "request errors" not in quiet
    assert "unresolved" not in quiet


def test_sim_flags_reach_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `sim` flag lands in the simulator's config under its own name."""
    from runner.commands import sim as command
    from runner.sim.app import SimConfig

    seen: list[tuple[SimConfig, int]] = []
    monkeypatch.setattr(command, "run_forever", lambda config, port: seen.append((config, port)))
    args = (
        "sim --port 0 --key a:b --qps 7 --daily-quota 9 --error-rate 0.1 --timeout-rate 0.2"
        " --reset-rate 0.05 --applied-error-rate 0.15 --hang 3 --retry-after --latency 0.5"
        " --allow-duplicate-names --export-duration 2 --export-failure-rate 0.3"
        " --download-ttl 60 --missing-project 5 --missing-project 6 --seed 4 --hostile-rate 0.15"
    )
    result = CliRunner().invoke(cli, args.split(), standalone_mode=False)
    assert result.exception is None, result.output
    ((config, port),) = seen
    faults = config.faults
    assert (port, set(config.keys), config.seed) == (0, {"a"}, 4)
    assert (faults.qps_limit, faults.daily_quota, faults.retry_after) == (7, 9, True)
    assert (faults.error_rate, faults.timeout_rate, faults.reset_rate) == (0.1, 0.2, 0.05)
    assert (faults.applied_error_rate, faults.hang_seconds, faults.latency) == (0.15, 3.0, 0.5)
    assert (faults.export_failure_rate, faults.missing_projects) == (0.3, frozenset({5, 6}))
    assert faults.hostile_rate == 0.15
    assert not config.unique_names
    assert (config.export_duration, config.download_ttl) == (2.0, 60.0)
    imports = (
        "sim --import-duration 3 --import-failure-rate 0.2 --import-partial-rate 0.1"
        " --upload-reset-rate 0.3 --upload-policy-ttl 90 --upload-max-bytes 1000"
        " --faults-only-on CreateImportMigration --faults-only-on StartMigration"
    )
    result = CliRunner().invoke(cli, imports.split(), standalone_mode=False)
    assert result.exception is None, result.output
    config = seen[-1][0]
    faults = config.faults
    assert (config.import_duration, config.upload_max_bytes) == (3.0, 1000)
    assert (faults.import_failure_rate, faults.import_partial_rate) == (0.2, 0.1)
    assert (faults.upload_reset_rate, faults.upload_policy_ttl) == (0.3, 90.0)
    assert faults.faults_only_on == {"CreateImportMigration", "StartMigration"}


def test_run_flags_reach_the_run_as_one_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `run` flag lands in the RunRequest; --download implies the download stage."""
    from runner.commands import run as command
    from runner.phases import Stage

    seen: list[command.RunRequest] = []

    def capture(request: command.RunRequest) -> ExitCode:
        seen.append(request)
        return ExitCode.OK

    monkeypatch.setattr(command, "execute", capture)
    args = (
        "run m.yaml --journal j.db --endpoint http://127.0.0.1:1 --rate 7 --read-rate 9"
        " --concurrency 3 --timeout 4 --signature-version v1 --only-failed --profile p"
        " --adopt-existing --download pk --wait-timeout 5 --poll-interval 6"
        " --max-package-size 500M --no-progress"
    )
    result = CliRunner().invoke(cli, args.split(), standalone_mode=False)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = CliRunner().invoke(cli, ["run", "m.yaml"], standalone_mode=False)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    request, default = seen
    assert (request.progress, default.progress) == (False, True)
    assert (request.manifests, request.journal) == (("m.yaml",), Path("j.db"))
    assert (request.endpoint, request.rate, request.read_rate) == ("http://127.0.0.1:1", 7, 9)
    assert (request.concurrency, request.timeout, request.signature_version) == (3, 4, "v1")
    assert (request.only_failed, request.adopt_existing, request.profile) == (True, True, "p")
    assert (request.download, request.wait_timeout, request.poll_interval) == (Path("pk"), 5, 6)
    assert request.stage is Stage.DOWNLOAD
    assert request.max_package_size == 500 * 1024**2


def test_import_flag_implies_the_whole_chain_and_a_packages_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run --import` asks for the import stage and saves packages beside the journal unless
    --download names a folder."""
    from runner.commands import run as command
    from runner.phases import Stage

    seen: list[command.RunRequest] = []

    def capture(request: command.RunRequest) -> ExitCode:
        seen.append(request)
        return ExitCode.OK

    monkeypatch.setattr(command, "execute", capture)
    for args in ("run m.yaml --journal d/j.db --import", "run m.yaml --import --download pk"):
        CliRunner().invoke(cli, args.split(), standalone_mode=False)
    plain, named = seen
    assert plain.stage is named.stage is Stage.IMPORT
    assert plain.packages == Path("d") / "packages"
    assert named.packages == Path("pk")


@pytest.mark.parametrize(
    ("text", "size"),
    [("123", 123), ("4G", 4 * 1024**3), ("4GiB", 4 * 1024**3), ("512mb", 512 * 1024**2)],
)
def test_sizes_are_read_in_binary_units(text: str, size: int) -> None:
    """--max-package-size takes bytes or a K/M/G/T size."""
    from runner.commands.common import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "-1", "1.5G", "4X", "9" * 40])
def test_a_size_that_is_not_one_exits_2(text: str, tmp_path: Path) -> None:
    """A --max-package-size that is not a size is a usage error (exit 2), not a crash."""
    code, _, err = invoke("run", "m.yaml", "--max-package-size", text)
    assert code == 2
    assert "max-package-size" in err


@pytest.mark.parametrize(
    "flags",
    [
        ("--rate", "nan"),
        ("--rate", "inf"),
        ("--read-rate", "nan"),
        ("--timeout", "inf"),
        ("--wait", "--poll-interval", "nan"),
        ("--wait", "--poll-interval", "inf"),
        ("--wait-timeout", "nan"),
        ("--visibility-window", "nan"),
    ],
)
def test_a_number_flag_that_is_not_finite_exits_2(
    files: tuple[Path, Path], tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """nan and inf are refused before anything starts (nan passes every `> 0` check; inf
    would overflow a timer or wait forever), naming the flag."""
    journal = tmp_path / "j.db"
    code, _, err = invoke("run", str(files[0]), "--journal", str(journal), *flags)
    assert code == 2
    assert "finite" in err
    assert flags[-2] in err
    assert not journal.exists()


@pytest.mark.parametrize("workers", ["0", "1025", "1000000"])
def test_concurrency_out_of_bounds_exits_2(
    files: tuple[Path, Path], tmp_path: Path, workers: str
) -> None:
    """--concurrency is 1 to 1024: a million workers would take gigabytes before one request."""
    code, _, err = invoke(
        "run", str(files[0]), "--journal", str(tmp_path / "j.db"), "--concurrency", workers
    )
    assert code == 2
    assert "--concurrency" in err


def test_a_request_made_in_code_refuses_nan_too(tmp_path: Path) -> None:
    """RunRequest.check, which callers other than the CLI go through, refuses nan as well."""
    from runner.commands.common import UsageError
    from runner.commands.run_request import RunRequest

    for request in (
        RunRequest(manifests=("m.yaml",), journal=tmp_path / "j.db", rate=float("nan")),
        RunRequest(manifests=("m.yaml",), journal=tmp_path / "j.db", poll_interval=float("inf")),
        RunRequest(manifests=("m.yaml",), journal=tmp_path / "j.db", concurrency=5000),
    ):
        with pytest.raises(UsageError):
            request.check()


def test_settings_concurrency_above_the_bound_is_a_manifest_problem(tmp_path: Path) -> None:
    """settings.concurrency above 1024 is reported at its line, as every manifest problem."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(GOOD + "settings:\n  concurrency: 1000000000\n")
    code, _, err = invoke("validate", str(manifest))
    assert code == 2
    assert f"{manifest}:12:16: settings.concurrency is at most 1024" in err


@pytest.mark.parametrize(
    ("flags", "told"),
    [
        (("--qps", "0"), "--qps must be at least 1"),
        (("--max-page-size", "7"), "--max-page-size must be within [10, 100]"),
        (("--hang", "-1"), "--hang"),
    ],
)
def test_sim_refuses_a_bad_value_naming_the_flag(flags: tuple[str, str], told: str) -> None:
    """A simulator setting out of range exits 2 naming the flag typed, not a field name."""
    code, _, err = invoke("sim", *flags)
    assert code == 2
    assert told in err
    assert "qps_limit" not in err
    assert "hang_seconds" not in err


def test_a_manifest_with_no_task_is_valid_but_said(tmp_path: Path) -> None:
    """`workspaces: []` is valid (exit 0), and validate says there is nothing to do."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("version: 1\nworkspaces: []\n")
    code, _, err = invoke("validate", str(empty))
    assert code == 0
    assert "hold no task" in err
