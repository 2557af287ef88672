"""``fluvial run``: flows from files and modules, parameters, runners, storage, exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fluvial import flow, task
from fluvial.cli._progress import TaskStates, live_progress
from fluvial.runs import add_listener, list_runs

from .conftest import FLOWS, HERE, ROOT, Result, assert_user_error, fluvial_command

ADD = f"{FLOWS}:add"


def test_runs_the_readme_example_file(shell: Callable[..., Result]) -> None:
    example = ROOT / "examples" / "hello_flow.py"
    result = shell("run", f"{example}:weather_report", "--param", 'cities=["Lyon", "Oslo"]')
    assert result.code == 0, result.err
    assert "finished Completed" in result.out
    assert "'Lyon':" in result.out
    assert "'Oslo':" in result.out
    assert "tasks: " in result.out


def test_runs_a_flow_by_module_from_the_current_directory(
    shell: Callable[..., Result], tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    shutil.copy(FLOWS, workdir / "my_flows.py")
    result = shell("run", "my_flows:add", "-p", "a=2", "-p", "b=3", cwd=workdir)
    assert result.code == 0, result.err
    assert "result: {'sum': 5}" in result.out
    relative = shell("run", "./my_flows.py:add", "-p", "a=2", cwd=workdir)
    assert "result: {'sum': 2}" in relative.out


def test_flow_name_or_function_name(cli: Callable[..., Result]) -> None:
    assert "result: 7" in cli("run", f"{FLOWS}:async_add", "-p", "a=3", "-p", "b=4").out
    # The flow's name ("fan-out") finds it as well as the function's name.
    result = cli("run", f"{FLOWS}:fan-out", "-p", "n=4")
    assert result.code == 0
    assert "result: 12" in result.out
    assert "tasks: 4 Completed" in result.out


def test_parameters_are_json_when_they_parse(cli: Callable[..., Result]) -> None:
    result = cli(
        "run",
        f"{FLOWS}:echo",
        "--params",
        '{"items": [1, 2], "text": "from json"}',
        "-p",
        'options={"deep": [true, null]}',
        "-p",
        "text=plain words",  # --param wins over --params
    )
    assert result.code == 0, result
    assert "result: [[1, 2], {'deep': [True, None]}, 'plain words']" in result.out
    coerced = cli("run", ADD, "-p", "a=01", "-p", "label=7")  # "01" is no JSON: text, coerced
    assert "result: {'7': 1}" in coerced.out


def test_a_failing_flow_exits_1_with_its_error(shell: Callable[..., Result]) -> None:
    result = shell("run", f"{FLOWS}:failing", "-p", "x=5")
    assert result.code == 1
    assert "finished Failed" in result.out
    assert "ValueError: broken on 5" in result.out
    assert "tasks: 1 Completed · 1 Failed" in result.out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([ADD], "flow 'add' needs a value for parameter 'a'"),
        ([ADD, "-p", "a=1", "-p", "c=2"], "hint: its parameters: a, b, label"),
        ([ADD, "-p", "a=one"], "Input should be a valid integer"),
        ([ADD, "-p", "a"], "--param expects NAME=VALUE, got 'a'"),
        ([ADD, "--params", "{a: 1}"], "--params is not valid JSON"),
        ([ADD, "--params", "[1]"], "--params must be a JSON object, not list"),
        ([f"{FLOWS}"], "does not say which flow to run"),
        ([f"{FLOWS}:nope"], "hint: flows there: add, async_add, caching, chain"),
        ([f"{FLOWS}:plain_function"], "'plain_function' in"),
        (["missing.py:add"], "no file missing.py"),
        (["no_such_module_here:add"], "no module named 'no_such_module_here'"),
        ([ADD, "-p", "a=1", "--storage", "nope://x"], "is not a usable URL"),
    ],
)
def test_bad_input_is_one_line_and_runs_nothing(
    cli: Callable[..., Result], argv: list[str], fragment: str
) -> None:
    seen: list[object] = []
    remove = add_listener(seen.append)
    try:
        result = cli("run", *argv)
    finally:
        remove()
    assert_user_error(result, fragment)
    assert result.out == ""
    assert seen == [], "nothing may run"


def test_a_module_that_raises_on_import(cli: Callable[..., Result], tmp_path: Path) -> None:
    script = tmp_path / "broken_flows.py"
    script.write_text("import fluvial\n\nVALUE = 1 / 0\n")
    result = cli("run", f"{script}:anything")
    assert_user_error(result, "importing")
    assert f"ZeroDivisionError: division by zero ({script}:3)" in result.err


def test_a_package_file_is_run_as_a_module(
    cli: Callable[..., Result], shell: Callable[..., Result], tmp_path: Path
) -> None:
    package = tmp_path / "proj" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("OFFSET = 100\n")
    (package / "flows.py").write_text(
        "from fluvial import flow\n\nfrom .helpers import OFFSET\n\n\n"
        "@flow\ndef shifted(x: int) -> int:\n    return x + OFFSET\n"
    )
    by_file = cli("run", f"{package / 'flows.py'}:shifted", "-p", "x=1")
    assert_user_error(by_file, "hint: the file belongs to a package: run it as package.module")
    by_module = shell("run", "pkg.flows:shifted", "-p", "x=1", cwd=tmp_path / "proj")
    assert by_module.code == 0, by_module.err
    assert "result: 101" in by_module.out


def test_process_runner_gets_a_file_flow_by_value(shell: Callable[..., Result]) -> None:
    result = shell("run", f"{FLOWS}:fan_out", "-p", "n=3", "--runner", "process")
    assert result.code == 0, result.err
    assert "result: 6" in result.out


def test_storage_persists_and_journals_the_run(cli: Callable[..., Result], tmp_path: Path) -> None:
    storage = tmp_path / "results"
    result = cli("run", ADD, "-p", "a=1", "-p", "b=2", "--storage", str(storage))
    assert result.code == 0, result
    [run] = list_runs(str(storage))
    assert (run.flow_name, run.state_name) == ("add", "Completed")
    assert f"run id: {run.id} (see it with: fluvial runs show {run.id} --storage" in result.out
    assert run.task_counts == {"Completed": 2}


def test_memory_storage_within_one_process(cli: Callable[..., Result]) -> None:
    storage = "memory://cli-run-test"
    assert cli("run", ADD, "-p", "a=4", "--storage", storage).code == 0
    assert [run.flow_name for run in list_runs(storage)] == ["add"]


def test_progress_bar_counts_task_states(cli: Callable[..., Result]) -> None:
    result = cli("run", f"{FLOWS}:fan_out", "-p", "n=5", "--progress")
    assert result.code == 0
    assert "5/5" in result.err
    assert "5 Completed" in result.err
    assert "5/5" not in cli("run", f"{FLOWS}:fan_out", "-p", "n=5", "--no-progress").err


def test_task_states_follow_every_task_run() -> None:
    gate = threading.Event()

    @task
    def wait_then(x: int) -> int:
        gate.wait(10)
        if x == 2:
            raise RuntimeError("two")
        return x

    @flow
    def group() -> list[int]:
        futures = wait_then.map(range(3))
        gate.set()
        return [f.result(raise_on_failure=False) for f in futures]

    with live_progress(False) as states:
        group(return_state=True)
    assert isinstance(states, TaskStates)
    finished, seen, by_name = states.counts()
    assert (finished, seen) == (3, 3)
    assert by_name == {"Completed": 2, "Failed": 1}
    assert states.summary() == "2 Completed · 1 Failed"
    assert states.flow_run_name is not None


def test_flows_file_is_not_a_test_module() -> None:
    # The flows file must stay out of pytest's collection (and of the examples' imports).
    assert not FLOWS.name.startswith("test_")
    assert FLOWS.parent == HERE


@pytest.mark.usefixtures("sigint_not_ignored")
def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    process = subprocess.Popen(
        [*fluvial_command(), "run", f"{FLOWS}:sleepy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CLI_MARKS": str(marks)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (marks / "nap-started").exists():
            assert time.monotonic() < deadline, "the task never started"
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, (out, err)
    assert "Traceback" not in err


@pytest.mark.slow
def test_dask_runner_on_a_running_cluster(cli: Callable[..., Result], dask_cluster: Any) -> None:
    address = dask_cluster.scheduler_address
    result = cli("run", f"{FLOWS}:fan_out", "-p", "n=3", "--runner", "dask", "--address", address)
    assert result.code == 0, result
    assert "result: 6" in result.out
    assert "tasks: 3 Completed" in result.out


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_ray_runner_reuses_the_running_ray(cli: Callable[..., Result]) -> None:
    import ray

    result = cli("run", f"{FLOWS}:fan_out", "-p", "n=3", "--runner", "ray")
    assert result.code == 0, result
    assert "result: 6" in result.out
    assert "tasks: 3 Completed" in result.out
    assert ray.is_initialized(), "the command shut down a Ray it did not start"


def test_address_needs_a_cluster_runner(cli: Callable[..., Result]) -> None:
    result = cli("run", ADD, "-p", "a=1", "--address", "tcp://127.0.0.1:1")
    assert_user_error(result, "--address names a Dask or Ray cluster")
    assert "hint: add --runner dask or --runner ray" in result.err
