"""Run one task now: the entry points every call and every runner goes through.

Each run takes one of two paths. Most runs need none of the engine's optional steps (upstream
futures, caching, retries, timeouts, hooks, naming, print capture, tag limits): for those,
:func:`run_task_sync` and :func:`run_task_async` run the function themselves, written out,
because at a few microseconds per run every Python call counts (DESIGN.md, Performance). The
rest go through the full engine, :func:`~fluvial.engine.task_steps.task_steps`, which is the
reference for what a run does; ``tests/test_short_path.py`` checks the short path against it.
"""

from __future__ import annotations

__all__ = (
    "new_task_run",
    "run_generator_task_async",
    "run_generator_task_sync",
    "run_task_async",
    "run_task_sync",
)

import inspect
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from types import AsyncGeneratorType, CoroutineType
from typing import TYPE_CHECKING, Any, Literal

from .._runs import TaskRun
from ..context import TaskRunContext, _flow_run_context, _tags, _task_run_context
from ..states import DROPPED, State, StateType
from .caching import PersistedResult
from .effects import drive_async, drive_async_stream, drive_sync, drive_sync_stream
from .outcomes import PLAIN_TYPES as _PLAIN
from .short_path import call_function, end_crashed, end_raised, end_returned, takes_short_path
from .task_steps import task_steps

if TYPE_CHECKING:
    from ..tasks import Task

COMPLETED = StateType.COMPLETED
ReturnType = Literal["result", "state"]


def new_task_run(task: Task[..., Any], parameters: dict[str, Any], pending: bool = True) -> TaskRun:
    """Create the record of a task run in the current flow run (if any).

    A submitted run starts Pending (it waits for its inputs and a worker); a direct call
    starts running at once, so it skips that state and its cost.
    """
    flow_ctx = _flow_run_context.get()
    tags = _tags.get()
    if task.tags:
        tags = tags | task.tags
    flow_run_id = None
    if flow_ctx is not None:
        cell = flow_ctx.flow_run._cell  # the id's cell, read directly: this runs for every task
        flow_run_id = cell.value if cell.value is not None else cell.get()
    run = TaskRun(task, parameters, tags, flow_run_id)
    if pending:
        run.set_state(State(StateType.PENDING))
    return run


def run_task_sync(
    task: Task[..., Any],
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None = None,
    return_type: ReturnType = "result",
    task_run: TaskRun | None = None,
) -> Any:
    """Run a task in the calling thread and return its result (or final state)."""
    run = task_run if task_run is not None else new_task_run(task, parameters, False)
    flow_ctx = _flow_run_context.get()
    if not takes_short_path(task, run, parameters, wait_for, flow_ctx):
        state = drive_sync(task_steps(task, run, parameters, wait_for))
        return _outcome(run, state, return_type)
    # The short path, written out as in run_task_async (its twin: keep the two alike).
    run.parameters = parameters
    token = _task_run_context.set(TaskRunContext(task, run, parameters, False))
    run.run_count += 1
    run.set_state(State(StateType.RUNNING))
    try:
        try:
            if task._signature.simple:
                value = task.fn(**parameters)
            else:
                value = call_function(task, parameters)
        except Exception as exc:
            state = end_raised(task, run, exc, flow_ctx)
        else:
            if value.__class__ in _PLAIN and task.cache_result_in_memory:
                state = State(COMPLETED, None, None, value)
                run._end = time.time()
                run.set_state(state)
            else:
                state = end_returned(task, run, value, flow_ctx)
    except BaseException as exc:
        end_crashed(run, exc)
        raise
    finally:
        _task_run_context.reset(token)
    if state.data.__class__ in _PLAIN and return_type == "result" and state.type is COMPLETED:
        return state.data
    return _outcome(run, state, return_type)


async def run_task_async(
    task: Task[..., Any],
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None = None,
    return_type: ReturnType = "result",
    task_run: TaskRun | None = None,
) -> Any:
    """Run a task on the running event loop and return its result (or final state)."""
    # The run record is made when the coroutine starts, not when it is created: code that
    # creates thousands of coroutines before gathering them should not hold thousands of runs.
    run = task_run if task_run is not None else new_task_run(task, parameters, False)
    flow_ctx = _flow_run_context.get()
    if not takes_short_path(task, run, parameters, wait_for, flow_ctx):
        state = await drive_async(task_steps(task, run, parameters, wait_for))
        return _outcome(run, state, return_type)
    # The short path, inlined here rather than awaited: one coroutine per run is the budget,
    # and its steps are written out (Python calls are most of the cost). run_task_sync is
    # its twin: keep the two alike.
    run.parameters = parameters
    token = _task_run_context.set(TaskRunContext(task, run, parameters, False))
    run.run_count += 1
    run.set_state(State(StateType.RUNNING))
    try:
        try:
            if task._signature.simple:  # call_function(), written out for the common case
                value = task.fn(**parameters)
            else:
                value = call_function(task, parameters)
            if value.__class__ is CoroutineType or inspect.isawaitable(value):
                value = await value
            elif value.__class__ is AsyncGeneratorType:  # run to completion, items kept
                value = [item async for item in value]
        except Exception as exc:
            state = end_raised(task, run, exc, flow_ctx)
        else:
            if value.__class__ in _PLAIN and task.cache_result_in_memory:
                # end_returned() for a plain value, written out.
                state = State(COMPLETED, None, None, value)  # positional: cheaper to bind
                run._end = time.time()
                run.set_state(state)
            else:
                state = end_returned(task, run, value, flow_ctx)
    except BaseException as exc:  # cancellation too: recorded as Cancelled, then re-raised
        end_crashed(run, exc)
        raise
    finally:
        _task_run_context.reset(token)
    if state.data.__class__ in _PLAIN and return_type == "result" and state.type is COMPLETED:
        return state.data  # what _outcome() would return, without its two calls
    return _outcome(run, state, return_type)


def run_generator_task_sync(
    task: Task[..., Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
) -> Generator[Any, None, Any]:
    """Run a generator task, yielding its items to the caller as they are produced."""
    run = new_task_run(task, parameters, pending=False)
    state = yield from drive_sync_stream(task_steps(task, run, parameters, wait_for))
    return _outcome(run, state, "result")


def run_generator_task_async(
    task: Task[..., Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
) -> AsyncGenerator[Any, None]:
    """Run an async generator task, yielding its items to the caller as they are produced."""
    run = new_task_run(task, parameters, pending=False)
    return drive_async_stream(task_steps(task, run, parameters, wait_for))


def _outcome(run: TaskRun, state: State[Any], return_type: ReturnType) -> Any:
    if return_type == "state":
        return state
    if state.type is StateType.COMPLETED and (
        state.data is DROPPED or type(state.data) is PersistedResult
    ):
        # The value was kept out of the state (cache_result_in_memory=False), but the direct
        # caller still gets it, as in Prefect.
        value, run.return_value = run.return_value, None
        return value
    return state.result()
