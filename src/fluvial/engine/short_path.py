"""The short path: task runs that need none of the engine's optional steps, run directly.

Most task calls have no upstream futures, no caching, no retries, no timeout, no hooks, no run
name template, no print capture and no tag limit. For them the full engine
(:func:`~fluvial.engine.task_engine.task_steps`: two generators driven by a coroutine) costs
more than the rest of the run, and the async budget (≤ 2× ``asyncio.gather``) cannot be met
through it. :func:`takes_short_path` vouches for a run; :func:`run_short_sync` (and
``run_task_async``, which inlines the async twin to save a coroutine per run) then give it the
same states, context, failure note and log line the full engine would. Anything not vouched for
takes the full engine.
"""

from __future__ import annotations

__all__ = (
    "call_function",
    "end_crashed",
    "end_raised",
    "end_returned",
    "run_short_sync",
    "start_short",
    "takes_short_path",
)

import time
from typing import TYPE_CHECKING, Any

from ..concurrency._tags import any_tag_limited
from ..context import TaskRunContext, _reset_task_context, _task_run_context
from ..states import State, StateType
from .caching import persists
from .lifecycle import crash_state
from .outcomes import completed_state, failed_state, give_up, run_details
from .resolve import needs_resolution

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._runs import TaskRun
    from ..context import FlowRunContext
    from ..tasks import Task


def takes_short_path(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None,
    flow_ctx: FlowRunContext | None,
) -> bool:
    """Return whether the run needs none of the steps only the full engine performs."""
    if (
        wait_for
        or task.retries
        or task.timeout_seconds is not None
        or task.task_run_name is not None
        or task.isgenerator
        or task.on_running_hooks
        or task.on_completion_hooks
        or task.on_failure_hooks
    ):
        return False
    log_prints = task.log_prints
    if flow_ctx is not None:
        if flow_ctx._memo is not None:  # a flow with retries replays completed runs
            return False
        if log_prints is None:
            log_prints = flow_ctx.log_prints
    if log_prints:
        return False
    if run.tags and any_tag_limited(run.tags):
        return False
    if parameters and needs_resolution(parameters, None):
        return False
    persist = task.persist_result
    if persist is None and flow_ctx is not None:
        persist = flow_ctx._task_persist  # persists() decides it once per flow run
    return not (persists(task, flow_ctx) if persist is None else persist)


def run_short_sync(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
) -> State[Any]:
    """Run a vouched-for task run in this thread and return its final state."""
    token = start_short(task, run, parameters)
    try:
        try:
            value = call_function(task, parameters)
        except Exception as exc:
            return end_raised(task, run, exc, flow_ctx)
        return end_returned(task, run, value, flow_ctx)
    except BaseException as exc:
        end_crashed(run, exc)
        raise
    finally:
        _reset_task_context(token)


def call_function(task: Task[..., Any], parameters: dict[str, Any]) -> Any:
    """Call the task's function with *parameters* (bound, so they fit its signature)."""
    signature = task._signature
    if signature.simple:  # no positional-only, *args or **kwargs: the names are the keywords
        return task.fn(**parameters)
    args, kwargs = signature.to_call(parameters)
    return task.fn(*args, **kwargs)


def start_short(task: Task[..., Any], run: TaskRun, parameters: dict[str, Any]) -> Any:
    """Enter the run's context and make it Running; return the token that leaves the context."""
    run.parameters = parameters
    token = _task_run_context.set(TaskRunContext(task, run, parameters, False))
    run.run_count += 1
    run.set_state(State(StateType.RUNNING))
    return token


def end_returned(
    task: Task[..., Any], run: TaskRun, value: Any, flow_ctx: FlowRunContext | None
) -> State[Any]:
    """Finish the run whose function returned *value*; return its final state."""
    state = completed_state(task, run, value)
    if state.type is StateType.FAILED:  # the function returned a failed state
        state = give_up(task, run, state, flow_ctx)
    run._end = time.time()  # run.finish(state), inlined: this is every successful run's path
    run.set_state(state)
    return state


def end_raised(
    task: Task[..., Any], run: TaskRun, exc: Exception, flow_ctx: FlowRunContext | None
) -> State[Any]:
    """Finish the run whose function raised *exc*; return its final (failed) state."""
    state = give_up(task, run, failed_state(task, exc), flow_ctx)
    run.finish(state)
    return state


def end_crashed(run: TaskRun, exc: BaseException) -> None:
    """Finish the run interrupted by *exc* (a cancellation or a BaseException) as the engine does."""
    run.finish(crash_state(exc, run_details(run)))
