"""Tasks: calling inside and outside flows, options, names, tags and argument binding."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fluvial.runtime
from fluvial import Task, flow, tags, task
from fluvial.exceptions import (
    DefinitionError,
    MissingContextError,
    ParameterBindError,
    ReservedArgumentError,
)
from fluvial.states import State, StateType
from fluvial.tasks import exponential_backoff


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
async def async_add(x: int, y: int = 1) -> int:
    await asyncio.sleep(0)
    return x + y


def test_task_call_outside_a_flow_returns_the_value() -> None:
    assert add(1, 2) == 3
    assert add(x=5) == 6


def test_task_call_inside_a_flow_returns_the_value() -> None:
    @flow
    def my_flow() -> int:
        return add(add(1), y=10)

    assert my_flow() == 12


def test_return_state_gives_the_final_state() -> None:
    state = add(1, return_state=True)
    assert isinstance(state, State)
    assert state.is_completed()
    assert state.result() == 2
    assert state.state_details.task_run_id is not None


def test_user_exception_reaches_the_caller_unchanged_with_a_note() -> None:
    class Boom(Exception):
        pass

    @task
    def explode() -> None:
        raise Boom("bang")

    with pytest.raises(Boom, match="bang") as info:
        explode()
    assert any("task run 'explode-" in note for note in info.value.__notes__)


def test_failed_task_with_return_state_does_not_raise() -> None:
    @task
    def explode() -> None:
        raise KeyError("k")

    state = explode(return_state=True)
    assert state.is_failed()
    assert state.type is StateType.FAILED
    assert isinstance(state.result(raise_on_failure=False), KeyError)


@pytest.mark.anyio
async def test_async_task_returns_a_coroutine() -> None:
    coro = async_add(2)
    assert asyncio.iscoroutine(coro)
    assert await coro == 3
    state = await async_add(2, return_state=True)
    assert state.result() == 3


@pytest.mark.anyio
async def test_async_tasks_inside_an_async_flow_run_concurrently() -> None:
    started = asyncio.Event()

    @task
    async def waiter() -> str:
        await asyncio.wait_for(started.wait(), 5)
        return "woke"

    @task
    async def setter() -> str:
        started.set()
        return "set"

    @flow
    async def my_flow() -> list[str]:
        return list(await asyncio.gather(waiter(), setter()))

    assert await my_flow() == ["woke", "set"]


def test_fn_is_the_plain_function() -> None:
    assert add.fn(1, 1) == 2
    assert add.fn.__name__ == "add"


def test_binding_errors_name_the_task() -> None:
    with pytest.raises(ParameterBindError, match="task 'add'"):
        add(1, 2, 3)
    with pytest.raises(ParameterBindError):
        add(z=1)
    with pytest.raises(TypeError):  # ParameterBindError is a TypeError, as in Prefect
        add()


def test_varargs_kwargs_keyword_only_and_positional_only_bind() -> None:
    @task
    def everything(a: int, /, b: int, *rest: int, c: int = 0, **extra: int) -> tuple[Any, ...]:
        return a, b, rest, c, extra

    assert everything(1, 2, 3, 4, c=5, d=6) == (1, 2, (3, 4), 5, {"d": 6})
    state = everything(1, 2, return_state=True)
    assert state.result() == (1, 2, (), 0, {})


@pytest.mark.parametrize("name", ["return_state", "wait_for"])
def test_reserved_parameter_names_are_rejected_at_decoration(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def fn({name}): return 1", namespace)  # noqa: S102 - builds the signature under test
    with pytest.raises(ReservedArgumentError, match=name):
        task(namespace["fn"])


def test_decorator_options_are_validated() -> None:
    with pytest.raises(DefinitionError):
        task(retries=-1)(lambda: None)
    with pytest.raises(DefinitionError):
        task(retry_jitter_factor=-0.5)(lambda: None)
    with pytest.raises(DefinitionError, match="at most 50"):
        task(retries=60, retry_delay_seconds=list(range(60)))(lambda: None)
    with pytest.raises(DefinitionError, match="callables"):
        task(on_completion=["not callable"])(lambda: None)  # type: ignore[list-item]


def test_defaults_match_prefect() -> None:
    @task
    def documented() -> None:
        """Does nothing, documentedly."""

    assert documented.name == "documented"
    assert documented.description == "Does nothing, documentedly."
    assert documented.retries == 0
    assert documented.timeout_seconds is None
    assert documented.cache_result_in_memory is True
    assert documented.log_prints is None  # inherit from the flow
    assert Task(lambda: None).log_prints is False
    assert documented.tags == frozenset()


def test_with_options_returns_a_new_task_and_replaces_tags() -> None:
    base = task(name="base", tags=["a"], retries=1)(lambda: 1)
    changed = base.with_options(name="changed", tags=["b"], retries=3)
    assert changed is not base
    assert (changed.name, changed.tags, changed.retries) == ("changed", frozenset({"b"}), 3)
    assert (base.name, base.tags, base.retries) == ("base", frozenset({"a"}), 1)
    assert changed() == 1
    with pytest.raises(DefinitionError, match="unknown option"):
        base.with_options(retires=2)


def test_exponential_backoff_delays() -> None:
    assert exponential_backoff(backoff_factor=10)(3) == [10, 20, 40]
    slow = task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2))(lambda: 1)
    assert slow._retry_delays == (2.0, 4.0, 8.0)


def test_task_run_name_template_and_callables() -> None:
    names: list[str] = []

    @task(task_run_name="fetch-{city}-{day}")
    def fetch(city: str, day: int = 1) -> None:
        names.append(fluvial.runtime.task_run.name)

    def from_parameters(parameters: dict[str, Any]) -> str:
        return f"param-{parameters['city']}"

    fetch("lyon")
    fetch.with_options(task_run_name=lambda: "no-args")("x")
    fetch.with_options(task_run_name=from_parameters)("oslo")
    assert names == ["fetch-lyon-1", "no-args", "param-oslo"]


def test_task_run_name_errors_are_clear() -> None:
    bad = task(task_run_name="run-{missing}")(lambda x: x)
    state = None
    with pytest.raises(DefinitionError, match="missing"):
        state = bad(1)
    assert state is None
    not_a_string = task(task_run_name=lambda: 42)(lambda: 1)  # type: ignore[arg-type, return-value]
    with pytest.raises(DefinitionError, match="must return a str"):
        not_a_string()


def test_default_task_run_names_are_task_name_and_a_suffix() -> None:
    seen: list[str] = []

    @task
    def named() -> None:
        seen.append(fluvial.runtime.task_run.name)

    named()
    named()
    assert all(name.startswith("named-") and len(name) == len("named-") + 3 for name in seen)


def test_tags_from_decorator_and_context_manager_are_merged() -> None:
    seen: list[list[str]] = []

    @task(tags=["db"])
    def tagged() -> None:
        seen.append(fluvial.runtime.task_run.tags)

    @flow
    def my_flow() -> None:
        tagged()
        with tags("nightly"):
            tagged()

    with tags("outer") as current:
        assert current == {"outer"}
        my_flow()
    tagged()
    assert seen == [["db", "outer"], ["db", "nightly", "outer"], ["db"]]


def test_submit_outside_a_flow_is_a_clear_error() -> None:
    with pytest.raises(MissingContextError, match="inside a @flow"):
        add.submit(1)
    with pytest.raises(MissingContextError):
        add.map([1, 2])


def test_task_defined_on_a_class_binds_like_a_method() -> None:
    class Counter:
        def __init__(self) -> None:
            self.total = 10

        @task
        def bump(self, by: int) -> int:
            self.total += by
            return self.total

    counter = Counter()
    assert counter.bump(5) == 15
    assert counter.total == 15


def test_task_returning_a_failed_state_fails() -> None:
    from fluvial.states import Failed

    @task
    def chooses_failure() -> State[Any]:
        return Failed(message="chosen")

    state = chooses_failure(return_state=True)
    assert state.is_failed()
    assert state.message == "chosen"


def test_cache_result_in_memory_false_keeps_value_out_of_the_state() -> None:
    from fluvial.exceptions import MissingResult

    @task(cache_result_in_memory=False)
    def big() -> list[int]:
        return [1, 2, 3]

    @flow
    def my_flow() -> tuple[list[int], State[Any]]:
        future = big.submit()
        future.wait()
        return big(), future.state

    value, state = my_flow()
    assert value == [1, 2, 3]  # the direct caller still gets the value
    assert state.is_completed()
    with pytest.raises(MissingResult, match="persist_result"):
        state.result()


def test_generator_of_states_history_is_recorded() -> None:
    @task(retries=1)
    def once_flaky(box: list[int]) -> int:
        box.append(1)
        if len(box) == 1:
            raise RuntimeError("first")
        return len(box)

    @flow
    def my_flow() -> Any:
        future = once_flaky.submit([])
        future.wait()
        return [s.name for s in future.task_run.state_history]

    assert my_flow() == ["Pending", "Running", "Retrying", "Completed"]


def test_generator_task_streams_items_while_running() -> None:
    from fluvial.context import TaskRunContext

    seen_states: list[str] = []

    @task
    def numbers(n: int) -> Any:
        for i in range(n):
            ctx = TaskRunContext.get()
            assert ctx is not None
            seen_states.append(ctx.task_run.state.name)  # type: ignore[union-attr]
            yield i

    stream = numbers(3)
    assert next(stream) == 0  # lazily produced
    assert list(stream) == [1, 2]
    assert seen_states == ["Running", "Running", "Running"]


def test_generator_task_failure_raises_to_the_consumer_and_retries() -> None:
    attempts: list[int] = []

    @task(retries=1)
    def flaky_stream() -> Any:
        attempts.append(1)
        yield "first"
        if len(attempts) == 1:
            raise ConnectionError("mid-stream")
        yield "second"

    # The retry restarts the generator, so items from the failed attempt are repeated.
    assert list(flaky_stream()) == ["first", "first", "second"]

    @task
    def broken() -> Any:
        yield 1
        raise ValueError("broken stream")

    with pytest.raises(ValueError, match="broken stream"):
        list(broken())


@pytest.mark.anyio
async def test_async_generator_task_streams() -> None:
    @task
    async def ticks(n: int) -> Any:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    assert [i async for i in ticks(3)] == [0, 1, 2]


def test_submitted_generator_tasks_give_lists() -> None:
    @task
    def numbers(n: int) -> Any:
        yield from range(n)

    @task
    async def async_numbers(n: int) -> Any:
        for i in range(n):
            yield i

    @task
    def returns_generator() -> Any:
        return (i * i for i in range(3))

    @flow
    def my_flow() -> tuple[Any, ...]:
        return (
            numbers.submit(3).result(),
            async_numbers.submit(2).result(),
            returns_generator(),
            numbers(2, return_state=True).result(),
        )

    assert my_flow() == ([0, 1, 2], [0, 1], [0, 1, 4], [0, 1])


def test_task_runs_and_flow_runs_set_every_field_the_shared_base_declares() -> None:
    # TaskRun.__init__ writes _Run.__init__ out for speed: a field added to one must reach both.
    from fluvial._runs import FlowRun, TaskRun, _Run
    from fluvial.flows import Flow

    task_run = TaskRun(add, {"x": 1}, frozenset(), None)
    flow_run = FlowRun(Flow(lambda: None, name="f"), {}, frozenset())
    for field in _Run.__slots__:
        assert getattr(task_run, field, AttributeError) is not AttributeError, field
        assert getattr(flow_run, field, AttributeError) is not AttributeError, field
