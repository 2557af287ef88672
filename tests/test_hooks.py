"""State hooks on tasks and flows: which run when, sync or async, and failing hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fluvial.runtime
from fluvial import flow, task
from fluvial.states import State


class Recorder:
    """A hook that records (kind, subject name, state name) and the current run name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def hook(self, kind: str) -> Any:
        def record(subject: Any, run: Any, state: State[Any]) -> None:
            self.calls.append((kind, subject.name, state.name))

        record.__name__ = f"record_{kind}"
        return record


def test_task_hooks_for_completion_failure_and_running() -> None:
    rec = Recorder()

    @task(
        on_completion=[rec.hook("completion")],
        on_failure=[rec.hook("failure")],
        on_running=[rec.hook("running")],
    )
    def maybe(fail: bool) -> None:
        if fail:
            raise ValueError("asked to")

    maybe(False)
    maybe(True, return_state=True)
    assert rec.calls == [
        ("running", "maybe", "Running"),
        ("completion", "maybe", "Completed"),
        ("running", "maybe", "Running"),
        ("failure", "maybe", "Failed"),
    ]


def test_failure_hook_runs_once_after_retries() -> None:
    rec = Recorder()

    @task(retries=2, on_failure=[rec.hook("failure")], on_running=[rec.hook("running")])
    def broken() -> None:
        raise RuntimeError("no")

    broken(return_state=True)
    assert rec.calls == [
        ("running", "broken", "Running"),
        ("running", "broken", "Retrying"),
        ("running", "broken", "Retrying"),
        ("failure", "broken", "Failed"),
    ]


def test_hooks_registered_with_decorators_and_seeing_the_run() -> None:
    seen: list[str] = []

    @task
    def work(x: int) -> int:
        return x

    @work.on_completion
    def after(task_: Any, task_run: Any, state: State[Any]) -> None:
        seen.append(f"{task_run.name}:{state.result()}")

    work(7)
    assert len(seen) == 1
    assert seen[0].startswith("work-")
    assert seen[0].endswith(":7")


def test_failing_hook_is_logged_and_does_not_change_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()

    def broken_hook(*_: Any) -> None:
        raise RuntimeError("hook bug")

    @task(on_completion=[broken_hook, rec.hook("completion")])
    def fine() -> str:
        return "value"

    state = fine(return_state=True)
    assert state.is_completed()
    assert state.result() == "value"
    assert rec.calls == [("completion", "fine", "Completed")]  # later hooks still run
    assert "broken_hook" in caplog.text
    assert "hook bug" in caplog.text


def test_async_hooks_on_sync_tasks_and_flows() -> None:
    seen: list[str] = []

    async def async_hook(subject: Any, run: Any, state: State[Any]) -> None:
        await asyncio.sleep(0)
        seen.append(f"{subject.name}:{state.name}:{fluvial.runtime.flow_run.flow_name}")

    @task(on_completion=[async_hook])
    def work() -> None:
        pass

    @flow(on_completion=[async_hook])
    def my_flow() -> None:
        work()

    my_flow()
    assert seen == ["work:Completed:my-flow", "my-flow:Completed:None"]


@pytest.mark.anyio
async def test_hooks_on_async_tasks_and_flows() -> None:
    seen: list[str] = []

    def sync_hook(subject: Any, run: Any, state: State[Any]) -> None:
        seen.append(f"sync:{subject.name}:{state.name}")

    async def async_hook(subject: Any, run: Any, state: State[Any]) -> None:
        seen.append(f"async:{subject.name}:{state.name}")

    @task(on_failure=[sync_hook, async_hook])
    async def fails() -> None:
        raise KeyError("x")

    @flow(on_failure=[async_hook])
    async def my_flow() -> None:
        await fails()

    state = await my_flow(return_state=True)
    assert state.is_failed()
    assert seen == ["sync:fails:Failed", "async:fails:Failed", "async:my-flow:Failed"]


def test_flow_hooks_completion_failure_running() -> None:
    rec = Recorder()

    @flow(
        on_completion=[rec.hook("completion")],
        on_failure=[rec.hook("failure")],
        on_running=[rec.hook("running")],
        retries=1,
    )
    def sometimes(fail_first: list[bool]) -> None:
        if fail_first.pop(0):
            raise RuntimeError("first attempt")

    sometimes([True, False])
    sometimes([True, True], return_state=True)
    assert rec.calls == [
        ("running", "sometimes", "Running"),
        ("running", "sometimes", "Retrying"),
        ("completion", "sometimes", "Completed"),
        ("running", "sometimes", "Running"),
        ("running", "sometimes", "Retrying"),
        ("failure", "sometimes", "Failed"),
    ]


def test_flow_failure_hook_for_invalid_parameters() -> None:
    rec = Recorder()

    @flow(on_failure=[rec.hook("failure")])
    def typed(n: int) -> None:
        pass

    typed("abc", return_state=True)  # type: ignore[arg-type]
    assert rec.calls == [("failure", "typed", "Failed")]


def test_flow_hook_decorators() -> None:
    rec = Recorder()

    @flow
    def my_flow() -> None:
        pass

    my_flow.on_completion(rec.hook("completion"))
    my_flow.on_running(rec.hook("running"))
    my_flow()
    assert [call[0] for call in rec.calls] == ["running", "completion"]
