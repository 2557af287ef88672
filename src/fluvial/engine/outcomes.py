"""How one attempt of a task run becomes a state, shared by the full engine and the short path.

An attempt ends in one of three ways: the function returned (:func:`completed_state`, which may
still be Failed when the function returned a failed state), it raised (:func:`failed_state`), or
the run gives up after its last attempt (:func:`give_up`: the note, the error log line and the
run's ids on the state).
"""

from __future__ import annotations

__all__ = ("PLAIN_TYPES", "completed_state", "failed_state", "give_up", "run_details", "run_logger")

from types import GeneratorType
from typing import TYPE_CHECKING, Any

from ..exceptions import TaskRunTimeoutError
from ..logging.loggers import RunLoggerAdapter, task_run_logger
from ..states import (
    DROPPED,
    Failed,
    State,
    StateDetails,
    StateType,
    TimedOut,
    return_value_to_state,
)
from .lifecycle import note_failure

if TYPE_CHECKING:
    from .._runs import FlowRun, TaskRun
    from ..context import FlowRunContext
    from ..tasks import Task

# A function that returns states (or a collection of them, first item a state) sets its run's
# final state from them instead of completing with them as its value.
_COLLECTIONS = (list, tuple, set)
#: Values that are never states nor stand-ins: returned as they are, with nothing to inspect.
PLAIN_TYPES = frozenset({type(None), bool, int, float, str, bytes, dict})


def completed_state(task: Task[..., Any], run: TaskRun, value: Any) -> State[Any]:
    """Return the state for an attempt whose function returned *value*."""
    state: State[Any] | None = None
    kind = type(value)
    if kind not in PLAIN_TYPES:  # most values are plain: nothing to unpack or inspect
        if kind is GeneratorType:
            # As in Prefect: a returned generator is consumed and its items kept as a list.
            value = list(value)
            kind = list
        if kind in _COLLECTIONS:
            if value and isinstance(next(iter(value)), State):
                state = return_value_to_state(value)
        elif isinstance(value, State):
            state = return_value_to_state(value)
    if state is None:
        state = State(StateType.COMPLETED, data=value)
    if not task.cache_result_in_memory and state.type is StateType.COMPLETED:
        run.return_value = state.data
        state.data = DROPPED
    return state


def failed_state(task: Task[..., Any], exc: Exception) -> State[Any]:
    """Return the state for an attempt whose function raised *exc* (or ran out of time)."""
    if isinstance(exc, TaskRunTimeoutError):
        return TimedOut(
            data=exc, message=f"Task run exceeded timeout of {task.timeout_seconds:g} second(s)"
        )
    return Failed(
        data=exc, message=f"Task run encountered an exception {type(exc).__name__}: {exc}"
    )


def give_up(
    task: Task[..., Any], run: TaskRun, failed: State[Any], flow_ctx: FlowRunContext | None
) -> State[Any]:
    """Make *failed* the run's final state: note the attempt, log the error, attach the ids."""
    note_failure(failed, f"task run {run.name!r}", run.run_count, task.retries + 1)
    data = failed.data
    exc_info = data if isinstance(data, BaseException) else None
    run_logger(run, flow_ctx).error("Finished in state %s", failed, exc_info=exc_info)
    failed.state_details = run_details(run)
    return failed


def run_details(run: TaskRun) -> StateDetails:
    """Return state details carrying the run's ids."""
    return StateDetails(task_run_id=run._cell, flow_run_id=run.flow_run_id)


def run_logger(run: TaskRun, flow_ctx: FlowRunContext | None) -> RunLoggerAdapter:
    """Return the logger for *run*, bound to its flow run when there is one."""
    flow_run: FlowRun | None = flow_ctx.flow_run if flow_ctx is not None else None
    return task_run_logger(run, flow_run=flow_run)
