"""Crashes and cancellation: interrupts, SystemExit, SIGTERM and event-loop cancellation.

The signal tests run a real flow in a child process and really signal it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from fluvial import flow, task
from fluvial.states import State


def _recorder(into: list[str]) -> Any:
    def hook(subject: Any, run: Any, state: State[Any]) -> None:
        into.append(f"{subject.name}:{state.type.value}")

    return hook


def test_keyboard_interrupt_in_a_flow_crashes_it_and_propagates() -> None:
    calls: list[str] = []
    runs: list[Any] = []

    @flow(on_crashed=[_recorder(calls)], on_failure=[_recorder(calls)])
    def interrupted() -> None:
        from fluvial.context import get_run_context

        runs.append(get_run_context().flow_run)  # type: ignore[union-attr]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert calls == ["interrupted:CRASHED"]
    assert runs[0].state.is_crashed()
    assert "interrupt" in (runs[0].state.message or "")


def test_system_exit_in_a_task_crashes_task_and_flow() -> None:
    calls: list[str] = []
    task_runs: list[Any] = []

    @task
    def exits() -> None:
        from fluvial.context import TaskRunContext

        task_runs.append(TaskRunContext.get().task_run)  # type: ignore[union-attr]
        sys.exit(3)

    @flow(on_crashed=[_recorder(calls)])
    def parent() -> None:
        exits()

    with pytest.raises(SystemExit):
        parent()
    assert task_runs[0].state.is_crashed()
    assert calls == ["parent:CRASHED"]


def test_crash_in_a_subflow_crashes_both_runs() -> None:
    calls: list[str] = []

    @flow(on_crashed=[_recorder(calls)])
    def child() -> None:
        raise KeyboardInterrupt

    @flow(on_crashed=[_recorder(calls)])
    def parent() -> None:
        child()

    with pytest.raises(KeyboardInterrupt):
        parent()
    assert calls == ["child:CRASHED", "parent:CRASHED"]


@pytest.mark.anyio
async def test_cancelling_an_async_flow_marks_it_cancelled_and_runs_hooks() -> None:
    calls: list[str] = []
    started = asyncio.Event()

    async def async_hook(subject: Any, run: Any, state: State[Any]) -> None:
        await asyncio.sleep(0)  # hooks run even though the run was cancelled
        calls.append(f"async:{state.type.value}")

    @flow(on_cancellation=[_recorder(calls), async_hook], on_crashed=[_recorder(calls)])
    async def long_running() -> None:
        started.set()
        await asyncio.sleep(30)

    runner = asyncio.create_task(long_running())
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert calls == ["long-running:CANCELLED", "async:CANCELLED"]


@pytest.mark.anyio
async def test_cancelled_async_task_is_cancelled_not_crashed() -> None:
    started = asyncio.Event()
    states: list[Any] = []

    @task
    async def sleeper() -> None:
        from fluvial.context import TaskRunContext

        states.append(TaskRunContext.get().task_run)  # type: ignore[union-attr]
        started.set()
        await asyncio.sleep(30)

    runner = asyncio.create_task(sleeper())
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert states[0].state.is_cancelled()


def test_crashed_flow_cancels_queued_task_runs() -> None:
    import threading

    from fluvial.runners import ThreadPoolTaskRunner

    release = threading.Event()
    futures: list[Any] = []

    @task
    def blocker() -> None:
        release.wait(30)

    @task
    def queued() -> None:
        pass

    @flow(task_runner=ThreadPoolTaskRunner(1))
    def crashing() -> None:
        futures.append(blocker.submit())
        futures.append(queued.submit())
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            crashing()
        assert futures[1].state.is_cancelled()
    finally:
        release.set()
    futures[0].wait(10)


CHILD_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from fluvial import flow, task

    out = sys.argv[1]

    def record(kind):
        def hook(flow_, run, state):
            with open(out, "a") as handle:
                handle.write(json.dumps([kind, state.type.value, state.message]) + "\\n")
        return hook

    @task
    def step(i):
        return i

    @flow(on_crashed=[record("crashed")], on_cancellation=[record("cancelled")],
          on_completion=[record("completed")], on_failure=[record("failed")])
    def long_flow():
        step(1)
        print("ready", flush=True)
        time.sleep(60)

    long_flow()
    """
)


def _run_child(tmp_path: Path, sig: int) -> tuple[int, list[list[Any]], str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD_SCRIPT)
    out = tmp_path / "hooks.jsonl"
    env = {**os.environ, "FLUVIAL_LOGGING_SETUP": "false"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    time.sleep(0.1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    records = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return proc.returncode, records, stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_crashes_the_flow_runs_hooks_and_still_ends_the_process(tmp_path: Path) -> None:
    returncode, records, stderr = _run_child(tmp_path, signal.SIGTERM)
    assert records == [["crashed", "CRASHED", records[0][2]]], stderr
    # The signal is re-delivered to the previous (default) handler: the process dies of it.
    assert returncode == -signal.SIGTERM


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.usefixtures("sigint_not_ignored")
def test_sigint_crashes_the_flow_and_raises_keyboard_interrupt(tmp_path: Path) -> None:
    returncode, records, stderr = _run_child(tmp_path, signal.SIGINT)
    assert [r[:2] for r in records] == [["crashed", "CRASHED"]], stderr
    assert "interrupt" in records[0][2]
    assert "KeyboardInterrupt" in stderr
    assert returncode != 0
