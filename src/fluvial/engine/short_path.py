"""The short path: task runs that need none of the engine's optional steps, run directly.

Most task calls have no upstream futures, no caching, no retries, no timeout, no hooks, no run
name template, no print capture and no tag limit. For them the full engine
(:func:`~fluvial.engine.task_steps.task_steps`: two generators driven by a coroutine) costs
more than the rest of the run, and the async budget (≤ 2× ``asyncio.gather``) cannot be met
through it. :func:`takes_short_path` vouches for a run; ``run_task_sync`` and ``run_task_async``
then run it themselves, written out (a Python call costs as much as a step of the run), with
the helpers below for the less common endings, and give it the same states, context, failure
note and log line the full engine would (tests/test_short_path.py compares the two). Anything
not vouched for takes the full engine.
"""

from __future__ import annotations

__all__ = (
    "call_function",
    "end_crashed",
    "end_raised",
    "end_returned",
    "takes_short_path",
)

import time
from typing import TYPE_CHECKING, Any

from ..concurrency._tags import any_tag_limited
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


def call_function(task: Task[..., Any], parameters: dict[str, Any]) -> Any:
    """Call the task's function with *parameters* (bound, so they fit its signature)."""
    signature = task._signature
    if signature.simple:  # no positional-only, *args or **kwargs: the names are the keywords
        return task.fn(**parameters)
    args, kwargs = signature.to_call(parameters)
    return task.fn(*args, **kwargs)


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
