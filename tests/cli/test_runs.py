"""``fluvial runs ls|show|resume|rm`` against real storage: a local directory and memory://."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fluvial.cli.runs import parse_since
from fluvial.exceptions import RunStillRunning
from fluvial.runs import list_runs, read_run, resume

from .conftest import FLOWS, Result, assert_user_error, fluvial_command


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return str(tmp_path / "results")


def _run(cli: Callable[..., Result], storage: str, flow: str, *params: str) -> str:
    """Run a flow of cli_flows.py into *storage*; return its run id."""
    argv = ["run", f"{FLOWS}:{flow}", "--storage", storage]
    for param in params:
        argv += ["-p", param]
    cli(*argv)
    return str(list_runs(storage, flow_name=flow.replace("_", "-"), limit=1)[0].id)


def test_ls_lists_newest_first_with_filters(cli: Callable[..., Result], storage: str) -> None:
    first = _run(cli, storage, "add", "a=1")
    failed = _run(cli, storage, "failing")
    table = cli("runs", "ls", "--storage", storage)
    assert table.code == 0
    assert table.out.index(failed) < table.out.index(first)
    assert "1 Completed, 1 Failed" in table.out

    def ids(*filters: str) -> list[str]:
        listed = cli("runs", "ls", "--storage", storage, "--json", *filters)
        assert listed.code == 0, listed
        return [run["id"] for run in json.loads(listed.out)]

    assert ids() == [failed, first]
    assert ids("--flow", "add") == [first]
    assert ids("--state", "failed") == [failed]
    assert ids("--state", "COMPLETED") == [first]
    assert ids("--since", "1h") == [failed, first]
    assert ids("--since", "2999-01-01") == []
    assert ids("--limit", "1") == [failed]
    assert (
        "No flow runs matching the filters"
        in cli("runs", "ls", "--storage", storage, "--flow", "other").out
    )


def test_ls_of_an_empty_storage(cli: Callable[..., Result], storage: str) -> None:
    assert cli("runs", "ls", "--storage", storage).out.startswith("No flow runs in file://")


def test_since_reads_durations_and_times() -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    assert parse_since("30m", now) == now - dt.timedelta(minutes=30)
    assert parse_since("1.5h", now) == now - dt.timedelta(hours=1.5)
    assert parse_since("7d", now) == now - dt.timedelta(days=7)
    assert parse_since("2026-01-01T08:00+00:00") == dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    local = parse_since("2026-01-01")
    assert local.tzinfo is not None  # a time without a zone is local time


def test_show_draws_the_task_tree(cli: Callable[..., Result], storage: str) -> None:
    run_id = _run(cli, storage, "failing", "x=3")
    shown = cli("runs", "show", run_id, "--storage", storage)
    assert shown.code == 0, shown
    out = shown.out
    assert f"({run_id})  Failed" in out
    assert "parameters: x=3" in out
    assert "attempt 1: Failed" in out
    assert "step-" in out
    assert "Completed" in out
    assert "2 attempts" in out  # broken has one retry
    assert "ValueError: broken on 3" in out
    data = json.loads(cli("runs", "show", run_id, "--storage", storage, "--json").out)
    assert data["state_name"] == "Failed"
    assert data["parameters"] == {"x": "3"}
    assert sorted(t["state_name"] for t in data["task_runs"]) == ["Completed", "Failed"]


def test_ids_may_be_shortened(cli: Callable[..., Result], storage: str) -> None:
    run_id = _run(cli, storage, "add", "a=1")
    assert cli("runs", "show", run_id[:13], "--storage", storage).code == 0
    other = _run(cli, storage, "add", "a=2")
    common = next(i for i, (x, y) in enumerate(zip(run_id, other, strict=True)) if x != y)
    assert_user_error(
        cli("runs", "show", run_id[:common], "--storage", storage), "names 2 flow runs"
    )
    assert_user_error(
        cli("runs", "show", "ffff", "--storage", storage), "no flow run id starts with 'ffff'"
    )
    missing = "01a20173-b4ab-7090-8384-3470b64dbcbf"
    assert_user_error(cli("runs", "show", missing, "--storage", storage), "no flow run")


def test_rm_removes_the_journal_and_keeps_results(cli: Callable[..., Result], storage: str) -> None:
    keep = _run(cli, storage, "add", "a=1")
    gone = _run(cli, storage, "add", "a=2")
    records = cli("cache", "ls", "--storage", storage, "--json").out
    result = cli("runs", "rm", gone, "--storage", storage)
    assert result.out == f"Removed flow run {gone} from file://{storage}.\n"
    assert [str(run.id) for run in list_runs(storage)] == [keep]
    assert not (Path(storage) / "runs" / gone).exists()
    assert cli("cache", "ls", "--storage", storage, "--json").out == records
    assert_user_error(cli("runs", "rm", gone, "--storage", storage), f"no flow run {gone}")


def test_memory_storage_within_one_process(cli: Callable[..., Result]) -> None:
    storage = "memory://cli-runs-test"
    run_id = _run(cli, storage, "chain", "n=3")
    assert run_id in cli("runs", "ls", "--storage", storage).out
    assert "Completed" in cli("runs", "show", run_id, "--storage", storage).out
    resumed = cli("runs", "resume", run_id, "--storage", storage)
    assert resumed.code == 0
    assert "result: 30" in resumed.out  # a completed run gives back its stored result
    assert cli("runs", "rm", run_id, "--storage", storage).code == 0
    assert list_runs(storage) == []


def test_resume_after_kill_9_from_another_directory_and_home(
    shell: Callable[..., Result], tmp_path: Path
) -> None:
    storage = str(tmp_path / "shared-results")
    marks = tmp_path / "marks"
    first = shell(
        "run",
        f"{FLOWS}:chain",
        "-p",
        "n=5",
        "--storage",
        storage,
        env={"CLI_MARKS": str(marks), "CLI_KILL_AT": "3"},
    )
    assert first.code == -signal.SIGKILL, first
    [killed] = list_runs(storage)
    assert killed.state_name == "Running"  # nobody was left to record the end
    run_id = str(killed.id)
    # Its process was on this machine and is gone: the listings say so.
    listing = shell("runs", "ls", "--storage", storage).out
    assert "Running *" in listing
    assert "* its process on this machine ended without recording an end" in listing
    shown = shell("runs", "show", run_id, "--storage", storage).out
    assert f"`fluvial runs resume {run_id}` finishes it" in " ".join(shown.split())
    [listed] = json.loads(shell("runs", "ls", "--storage", storage, "--json").out)
    assert listed["process_gone"] is True

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = shell(
        "runs",
        "resume",
        run_id[:18],
        "--storage",
        storage,
        cwd=elsewhere,
        env={"CLI_MARKS": str(marks), "FLUVIAL_HOME": str(tmp_path / "other-home")},
    )
    assert resumed.code == 0, resumed.err
    assert "result: 100" in resumed.out  # 0 + 10 + 20 + 30 + 40, as without the kill
    counts = {path.name: len(path.read_text()) for path in marks.iterdir()}
    # Steps 0-2 finished before the kill and are not run again; step 3 died and reruns.
    assert counts == {"step-0": 1, "step-1": 1, "step-2": 1, "step-3": 2, "step-4": 1}
    record = read_run(run_id, storage)
    assert [attempt.attempt for attempt in record.attempts] == [1, 2]
    assert record.state_name == "Completed"
    shown = shell("runs", "show", run_id, "--storage", storage).out
    assert "attempt 2: Completed" in shown
    assert "cache hit" in shown


def test_resume_of_a_failed_run_exits_1(cli: Callable[..., Result], storage: str) -> None:
    run_id = _run(cli, storage, "failing", "x=2")
    resumed = cli("runs", "resume", run_id, "--storage", storage, "--runner", "thread")
    assert resumed.code == 1
    assert "finished Failed" in resumed.out
    assert "ValueError: broken on 2" in resumed.out


def test_a_file_named_like_an_installed_module_resumes_from_its_path(
    cli: Callable[..., Result], shell: Callable[..., Result], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    script = project / "pytest.py"  # "import pytest" would find the real one
    script.write_text(FLOWS.read_text())
    storage = str(tmp_path / "results")
    assert cli("run", f"{script}:failing", "--storage", storage).code == 1
    [run] = list_runs(storage)
    assert run.import_path is not None
    assert run.import_path.startswith("_fluvial_file_pytest_")
    resumed = shell("runs", "resume", str(run.id), "--storage", storage)
    assert resumed.code == 1, resumed.err  # the flow ran again (and failed again)
    assert "ValueError: broken on 1" in resumed.out
    assert "tasks: 1 Cached · 1 Failed" in resumed.out


def test_resume_refuses_a_run_that_is_still_running(
    shell: Callable[..., Result], tmp_path: Path
) -> None:
    storage = str(tmp_path / "results")
    marks = tmp_path / "marks"
    process = subprocess.Popen(
        [*fluvial_command(), "run", f"{FLOWS}:sleepy", "--storage", storage],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CLI_MARKS": str(marks)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (marks / "nap-started").exists():
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        [run] = list_runs(storage)
        listing = shell("runs", "ls", "--storage", storage, "--json").out
        assert json.loads(listing)[0]["process_gone"] is False  # alive: plainly Running
        assert "Running *" not in shell("runs", "ls", "--storage", storage).out
        refused = shell("runs", "resume", str(run.id), "--storage", storage)
        assert_user_error(refused, f"is still running, in process {process.pid}")
        assert "--force" in refused.err
        # The Python API refuses too, and says how to insist.
        with pytest.raises(RunStillRunning, match=f"in process {process.pid}.*force=True"):
            resume(run.id, storage)
    finally:
        process.kill()
        process.wait(30)
    assert (marks / "nap-started").read_text() == "x", "the refused resume ran nothing"
    assert "Running *" in shell("runs", "ls", "--storage", storage).out


def test_show_cuts_long_task_lists_unless_all(cli: Callable[..., Result], storage: str) -> None:
    run_id = _run(cli, storage, "fan_out", "n=130")
    shown = cli("runs", "show", run_id, "--storage", storage).out
    assert shown.count("double-") == 100
    assert "… and 30 more task runs (--all shows them)" in shown
    everything = cli("runs", "show", run_id, "--storage", storage, "--all").out
    assert everything.count("double-") == 130
    assert "more task runs" not in everything
