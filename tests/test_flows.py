"""Flows: parameters, names, subflows, returned states, retries and options."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import pydantic
import pytest

import fluvial.runtime
from fluvial import Flow, flow, task
from fluvial.context import FlowRunContext, get_run_context
from fluvial.exceptions import DefinitionError, ParameterTypeError, ReservedArgumentError
from fluvial.runners import ThreadPoolTaskRunner
from fluvial.states import Completed, Failed, State, StateType


@task
def double(x: int) -> int:
    return 2 * x


def test_flow_returns_its_value_and_state() -> None:
    @flow
    def my_flow(x: int) -> int:
        return double(x) + 1

    assert my_flow(3) == 7
    state = my_flow(3, return_state=True)
    assert state.is_completed()
    assert state.result() == 7
    assert state.state_details.flow_run_id is not None


def test_flow_failure_raises_the_user_exception() -> None:
    @flow
    def broken() -> None:
        raise ZeroDivisionError("nope")

    with pytest.raises(ZeroDivisionError, match="nope") as info:
        broken()
    assert any("flow run" in note for note in info.value.__notes__)
    state = broken(return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), ZeroDivisionError)


class Point(pydantic.BaseModel):
    x: float
    y: float


class Opaque:
    """A type pydantic knows nothing about."""


def test_parameters_are_coerced_with_pydantic() -> None:
    @flow
    def typed(
        count: int, when: datetime.date, point: Point, names: list[str] | None = None
    ) -> tuple[Any, ...]:
        return count, when, point, names

    count, when, point, names = typed("3", "2026-11-22", {"x": "1.5", "y": 2})  # type: ignore[arg-type]
    assert count == 3
    assert when == datetime.date(2026, 11, 22)
    assert point == Point(x=1.5, y=2.0)
    assert names is None


def test_invalid_parameters_give_parameter_type_error_and_a_failed_state() -> None:
    ran: list[int] = []

    @flow
    def typed(count: int) -> None:
        ran.append(count)

    with pytest.raises(ParameterTypeError, match="count") as info:
        typed("not a number")  # type: ignore[arg-type]
    assert "typed" in str(info.value)
    state = typed("x", return_state=True)  # type: ignore[arg-type]
    assert state.is_failed()
    assert ran == []


def test_validation_can_be_turned_off() -> None:
    @flow(validate_parameters=False)
    def untyped(count: int) -> Any:
        return count

    assert untyped("raw") == "raw"  # type: ignore[arg-type]


def test_parameters_with_unusual_names_and_arbitrary_types() -> None:
    thing = Opaque()

    @flow
    def odd(_private: int, model_fields: str, obj: Opaque) -> tuple[Any, ...]:
        return _private, model_fields, obj

    assert odd("1", "f", thing) == (1, "f", thing)  # type: ignore[arg-type]


def test_unresolvable_annotations_do_not_stop_the_others() -> None:
    class Local:
        pass

    @flow
    def partly_local(count: int, item: Local) -> tuple[Any, ...]:
        return count, item

    local = Local()
    assert partly_local("2", local) == (2, local)  # type: ignore[arg-type]


def test_reserved_names_rejected_for_flows() -> None:
    def uses_wait_for(wait_for: int) -> None:
        pass

    with pytest.raises(ReservedArgumentError):
        flow(uses_wait_for)


def test_flow_names_versions_and_run_names() -> None:
    @flow
    def my_etl_job() -> str:
        return str(fluvial.runtime.flow_run.name)

    assert my_etl_job.name == "my-etl-job"
    assert my_etl_job.version is not None
    assert len(my_etl_job.version) == 32
    assert flow(version="1.2")(lambda: None).version == "1.2"
    assert flow(lambda: None).name == "unknown-lambda"
    name = my_etl_job()
    assert isinstance(name, str)
    assert "-" in name

    @flow(flow_run_name="etl-{region}-{day:%Y%m%d}")
    def regional(region: str, day: datetime.date) -> str:
        return str(fluvial.runtime.flow_run.name)

    assert regional("eu", datetime.date(2026, 1, 2)) == "etl-eu-20260102"
    called = regional.with_options(flow_run_name=lambda: "fixed")
    assert called("us", datetime.date(2026, 1, 2)) == "fixed"


def test_subflow_is_a_child_run_with_its_own_state() -> None:
    seen: dict[str, Any] = {}

    @flow
    def child(x: int) -> int:
        seen["child_id"] = fluvial.runtime.flow_run.id
        seen["parent_id"] = fluvial.runtime.flow_run.parent_flow_run_id
        seen["root_id"] = fluvial.runtime.flow_run.root_flow_run_id
        return double(x)

    @flow
    def parent() -> tuple[int, State[Any]]:
        seen["outer_id"] = fluvial.runtime.flow_run.id
        value = child(2)
        failed_state = failing_child(return_state=True)
        seen["after"] = fluvial.runtime.flow_run.id
        return value, failed_state

    @flow
    def failing_child() -> None:
        raise ValueError("child failed")

    value, child_state = parent()
    assert value == 4
    assert child_state.is_failed()
    assert seen["parent_id"] == seen["outer_id"] == seen["root_id"] == seen["after"]
    assert seen["child_id"] != seen["outer_id"]


def test_subflow_failure_fails_the_parent_when_raised() -> None:
    @flow
    def child() -> None:
        raise ValueError("inner")

    @flow
    def parent() -> None:
        child()

    state = parent(return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="inner"):
        state.result()


def test_subflow_called_inside_a_task_runs() -> None:
    @flow
    def child() -> str:
        return str(fluvial.runtime.flow_run.flow_name)

    @task
    def wrapper() -> str:
        return child()

    @flow
    def parent() -> str:
        return wrapper.submit().result()

    assert parent() == "child"


def test_returned_states_follow_the_aggregation_rule() -> None:
    @task
    def fails() -> None:
        raise RuntimeError("no")

    @flow
    def returns_mixed() -> list[State[Any]]:
        return [double(1, return_state=True), fails(return_state=True)]

    state = returns_mixed(return_state=True)
    assert state.type is StateType.FAILED
    assert state.message == "1/2 states failed."
    with pytest.raises(RuntimeError, match="no"):
        state.result()

    @flow
    def returns_manual() -> State[Any]:
        return Completed(message="hand made", data=5)

    manual = returns_manual(return_state=True)
    assert manual.message == "hand made"
    assert manual.result() == 5

    @flow
    def returns_failed_manual() -> State[Any]:
        return Failed(message="told to fail")

    assert returns_failed_manual(return_state=True).message == "told to fail"


def test_flow_returning_futures_waits_for_them() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(2))
    def fan() -> Any:
        return double.map([1, 2, 3])

    states = fan()
    assert [s.result() for s in states] == [2, 4, 6]


def test_unreturned_failed_task_does_not_fail_the_flow() -> None:
    @task
    def fails() -> None:
        raise RuntimeError("ignored")

    @flow
    def my_flow() -> str:
        fails.submit()
        return "done"

    state = my_flow(return_state=True)
    assert state.is_completed()
    assert state.result() == "done"


def test_flow_retries_rerun_only_what_did_not_complete() -> None:
    calls: dict[str, int] = {"expensive": 0, "flaky": 0}

    @task
    def expensive(x: int) -> int:
        calls["expensive"] += 1
        return x * 10

    @task
    def flaky(x: int) -> int:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionError("first attempt fails")
        return x + 1

    @flow(retries=2)
    def pipeline() -> tuple[int, list[str]]:
        value = expensive(4)
        result = flaky(value)
        return result, [fluvial.runtime.flow_run.run_count]  # type: ignore[list-item]

    result, run_counts = pipeline()
    assert result == 41
    assert calls == {"expensive": 1, "flaky": 2}
    assert run_counts == [2]


def test_flow_retries_exhausted_fail() -> None:
    attempts: list[int] = []

    @flow(retries=2, retry_delay_seconds=0)
    def always_fails() -> None:
        attempts.append(1)
        raise RuntimeError("still broken")

    state = always_fails(return_state=True)
    assert state.is_failed()
    assert len(attempts) == 3


def test_with_options_on_flows() -> None:
    @flow(name="base", retries=1)
    def base() -> int:
        return 1

    other = base.with_options(name="other", retries=0, task_runner=ThreadPoolTaskRunner(3))
    assert isinstance(other, Flow)
    assert (other.name, other.retries) == ("other", 0)
    assert isinstance(other.task_runner, ThreadPoolTaskRunner)
    assert other.task_runner.max_workers == 3
    assert (base.name, base.retries) == ("base", 1)
    assert other() == 1


def test_task_runner_may_be_a_class_and_must_be_a_runner() -> None:
    runner_class_flow = flow(task_runner=ThreadPoolTaskRunner)(lambda: 1)
    assert isinstance(runner_class_flow.task_runner, ThreadPoolTaskRunner)
    with pytest.raises(DefinitionError, match="TaskRunner"):
        flow(task_runner="threads")(lambda: 1)  # type: ignore[arg-type]


def test_each_flow_run_gets_a_fresh_runner() -> None:
    runners: list[Any] = []
    shared = ThreadPoolTaskRunner(2)

    @flow(task_runner=shared)
    def my_flow() -> None:
        ctx = get_run_context()
        assert isinstance(ctx, FlowRunContext)
        runners.append(ctx.task_runner)

    my_flow()
    my_flow()
    assert runners[0] is not runners[1]
    assert shared not in runners


def test_wait_for_on_a_subflow() -> None:
    order: list[str] = []

    @task
    def first() -> None:
        order.append("task")

    @flow
    def child() -> None:
        order.append("child")

    @flow
    def parent() -> None:
        future = first.submit()
        child(wait_for=[future])

    parent()
    assert order == ["task", "child"]


@pytest.mark.anyio
async def test_async_flow_with_sync_and_async_tasks() -> None:
    @task
    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    @flow
    async def my_flow(n: int) -> list[int]:
        first = double(n)
        rest = await asyncio.gather(*(slow_double(i) for i in range(n)))
        submitted = await slow_double.submit(5)  # futures can be awaited
        return [first, *rest, submitted]

    assert await my_flow(3) == [6, 0, 2, 4, 10]
    state = await my_flow(1, return_state=True)
    assert state.is_completed()


def test_equal_calls_within_one_attempt_both_run_when_the_flow_has_retries() -> None:
    calls: list[int] = []

    @task
    def counted(x: int) -> int:
        calls.append(x)
        return x

    @flow(retries=1)
    def twice() -> None:
        counted(1)
        counted(1)

    twice()
    assert calls == [1, 1]


def test_flow_timeout_does_not_wait_for_running_tasks() -> None:
    import threading

    release = threading.Event()

    @task
    def blocked() -> None:
        release.wait(30)

    @flow(timeout_seconds=0.2)
    def times_out() -> None:
        blocked.submit()
        release.wait(30)

    try:
        started = time.monotonic()
        state = times_out(return_state=True)
        assert state.name == "TimedOut"
        assert time.monotonic() - started < 10
    finally:
        release.set()


def test_flow_returning_the_state_of_an_unfinished_run_fails() -> None:
    import threading

    started = threading.Event()

    @task
    def held() -> None:
        started.set()
        time.sleep(0.3)  # still running when the flow returns its state

    @flow
    def returns_live_state() -> State[Any]:
        future = held.submit()
        started.wait(10)
        return future.state

    state = returns_live_state(return_state=True)
    assert state.is_failed()
    assert state.message == "1/1 states are not final."


@pytest.mark.anyio
async def test_async_subflows() -> None:
    @flow
    async def child(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @flow
    def sync_child(x: int) -> int:
        return x * 10

    @flow
    async def parent() -> list[Any]:
        values = await asyncio.gather(child(1), child(2))
        state = await child(3, return_state=True)
        return [*values, state.result(), sync_child(4), fluvial.runtime.flow_run.flow_name]

    assert await parent() == [2, 3, 4, 40, "parent"]
