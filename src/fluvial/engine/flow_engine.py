"""The flow run engine: one lifecycle for sync and async flows, subflows included.

Order of steps for one flow run:

1. validate and coerce parameters with pydantic (``ParameterTypeError`` → Failed, no run body);
2. name the run, enter a fresh copy of the flow's task runner and the ``FlowRunContext``; on the
   main thread, SIGTERM is turned into ``TerminationSignal`` for the duration;
3. attempts: Running (or Retrying) → ``on_running`` hooks → call the function within its
   timeout → wait for any futures it returned → final state by the aggregation rule; a failure
   with retries left waits ``retry_delay_seconds`` and runs the body again, in-process. Tasks
   that completed in an earlier attempt are replayed from memory (see the task engine);
4. wait for every task still running on the runner, then close the runner;
5. final state → ``on_completion`` / ``on_failure`` hooks.

A ``BaseException`` in the body makes the run Crashed (``on_crashed``) or, for a cancellation,
Cancelled (``on_cancellation``); queued tasks are cancelled and the exception propagates. A
SIGTERM is then re-delivered to the handler that was there before, so the process still ends
the way it would have without fluvial.
"""

from __future__ import annotations

__all__ = ("new_flow_run", "run_flow_async", "run_flow_sync")

import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .._config import run_config
from .._runs import FlowRun
from ..context import (
    FlowRunContext,
    _current_tags,
    _flow_run_context,
    _reset_flow_context,
    _reset_task_context,
    _set_flow_context,
    _set_task_context,
    _task_run_context,
)
from ..exceptions import (
    DefinitionError,
    FlowRunTimeoutError,
    ParameterTypeError,
    SerializationError,
    StorageError,
    TerminationSignal,
    UpstreamTaskError,
)
from ..futures import resolve_futures_to_states
from ..logging.loggers import RunLoggerAdapter, flow_run_logger, setup_logging
from ..states import (
    DROPPED,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    StateDetails,
    StateType,
    TimedOut,
    return_value_to_state,
)
from .caching import PersistedResult, PersistResult, plan_flow_results
from .effects import CallFunction, Steps, WaitFor, drive_async, drive_sync
from .lifecycle import call_hooks, crash_state, is_cancellation, note_failure, retry_wait
from .naming import render_run_name
from .resolve import needs_resolution, resolve_parameters, unfinished_upstream, upstream_futures

if TYPE_CHECKING:
    import uuid

    from ..flows import Flow
    from ..runners.base import TaskRunner

ReturnType = Literal["result", "state"]


def new_flow_run(
    flow: Flow[..., Any], parameters: dict[str, Any], run_id: uuid.UUID | None = None
) -> FlowRun:
    """Create the record of a flow run, a child of the current flow run if there is one.

    *run_id* gives the run a known id instead of a new one (resuming a recorded run).
    """
    parent_ctx = _flow_run_context.get()
    parent = parent_ctx.flow_run if parent_ctx is not None else None
    run = FlowRun(flow, parameters, _current_tags(), parent)
    if run_id is not None:
        run.id = run_id
    if parent is None:
        run.root_flow_run_id = run.id
    task_ctx = _task_run_context.get()
    if task_ctx is not None:
        run.parent_task_run_id = task_ctx.task_run.id
    run.set_state(Pending())
    return run


def run_flow_sync(
    flow: Flow[..., Any],
    parameters: dict[str, Any],
    return_type: ReturnType = "result",
    flow_run: FlowRun | None = None,
) -> Any:
    """Run a sync flow in the calling thread and return its result (or final state)."""
    run = flow_run if flow_run is not None else new_flow_run(flow, parameters)
    state = drive_sync(flow_steps(flow, run, parameters))
    return _outcome(run, state, return_type)


async def run_flow_async(
    flow: Flow[..., Any],
    parameters: dict[str, Any],
    return_type: ReturnType = "result",
    flow_run: FlowRun | None = None,
) -> Any:
    """Run an async flow on the running event loop and return its result (or final state)."""
    run = flow_run if flow_run is not None else new_flow_run(flow, parameters)
    state: State[Any] = await drive_async(flow_steps(flow, run, parameters))
    return _outcome(run, state, return_type)


def _outcome(run: FlowRun, state: State[Any], return_type: ReturnType) -> Any:
    if return_type == "state":
        return state
    if state.type is StateType.COMPLETED and (
        state.data is DROPPED or type(state.data) is PersistedResult
    ):
        value, run.return_value = run.return_value, None
        return value
    return state.result()


def flow_steps(flow: Flow[..., Any], run: FlowRun, parameters: dict[str, Any]) -> Steps[State[Any]]:
    """The engine for one flow run, as a generator of effects (see the module docstring)."""
    setup_logging()
    logger = flow_run_logger(run)
    try:
        if needs_resolution(parameters, None):
            # A subflow may be given futures of the parent's tasks: it gets their values.
            pending = unfinished_upstream(parameters, None)
            params = parameters
            parameters = yield WaitFor(pending, lambda: resolve_parameters(params, None))
        parameters = flow.validate_parameters(parameters)
    except (ParameterTypeError, UpstreamTaskError) as exc:
        state = Failed(data=exc, message=f"Flow run received unusable parameters: {exc}")
        return (yield from _conclude(flow, run, state, logger))
    run.parameters = parameters
    runner = flow.task_runner.duplicate()
    log_prints = bool(flow.log_prints)
    if log_prints:
        from ..logging.loggers import enable_print_capture

        enable_print_capture()
    config = run_config()
    persist = flow.persist_result
    if persist is None:
        persist = config.results_persist_by_default
    if persist:
        _open_journal(flow, run, config.results_journal)
    flow_ctx = FlowRunContext(flow, run, runner, parameters, log_prints, persist)
    flow_token = _set_flow_context(flow_ctx)
    task_token = _set_task_context(None)
    if flow.flow_run_name is not None:
        # Named inside the run's context: a naming callable may read fluvial.runtime.
        try:
            run.name = render_run_name(flow.flow_run_name, parameters)
        except DefinitionError as exc:
            _reset_task_context(task_token)
            _reset_flow_context(flow_token)
            state = Failed(data=exc, message=str(exc))
            return (yield from _conclude(flow, run, state, logger))
    logger = flow_run_logger(run)
    logger.info("Beginning flow run %r for flow %r", run.name, flow.name)
    previous_sigterm = _capture_sigterm()
    runner.__enter__()
    try:
        state = yield from _attempt_loop(flow, run, parameters, logger)
        if state.name == "TimedOut":
            # The run is over at its deadline: queued tasks are cancelled, running ones are
            # left to finish in the background rather than waited for.
            runner.__exit__(FlowRunTimeoutError, state.data, None)
        else:
            yield from _drain(runner)
            runner.__exit__(None, None, None)
    except BaseException as exc:
        runner.__exit__(type(exc), exc, exc.__traceback__)
        yield from _crashed(flow, run, exc, logger)
        if isinstance(exc, TerminationSignal) and previous_sigterm is not None:
            signal.signal(exc.signal, previous_sigterm)
            previous_sigterm = None
            os.kill(os.getpid(), exc.signal)
        raise
    finally:
        _restore_sigterm(previous_sigterm)
        _reset_task_context(task_token)
        _reset_flow_context(flow_token)
    if persist and state.type is StateType.COMPLETED:
        state = yield from _persist(flow, run, state, logger)
    return (yield from _conclude(flow, run, state, logger))


def _persist(
    flow: Flow[..., Any], run: FlowRun, state: State[Any], logger: RunLoggerAdapter
) -> Steps[State[Any]]:
    value = run.return_value if state.data is DROPPED else state.data
    try:
        plan = plan_flow_results(flow)
        state.data = yield PersistResult(plan, value)
    except StorageError as exc:
        return Failed(data=exc, message=f"Result storage failed: {exc}")
    except SerializationError as exc:
        logger.warning("the flow's result could not be persisted (%s); kept in memory only", exc)
    run.return_value = value
    return state


def _drain(runner: TaskRunner) -> Steps[None]:
    # Tasks may submit tasks, so keep waiting until nothing is left.
    while True:
        pending = runner.pending_futures()
        if not pending:
            return
        yield WaitFor(pending, _nothing)


def _nothing() -> None:
    return None


def _attempt_loop(
    flow: Flow[..., Any], run: FlowRun, parameters: dict[str, Any], logger: RunLoggerAdapter
) -> Steps[State[Any]]:
    args, kwargs = flow._signature.to_call(parameters)
    while True:
        run.run_count += 1
        running = Running() if run.run_count == 1 else Retrying()
        run.set_state(running)
        if flow.on_running_hooks:
            yield from call_hooks(flow.on_running_hooks, flow, run, running, lambda: logger)
        try:
            value = yield CallFunction(
                flow.fn, args, kwargs, flow.timeout_seconds, FlowRunTimeoutError
            )
            returned = upstream_futures({"value": value}, None)
            if returned:
                value = yield WaitFor(returned, _resolver(value))
        except FlowRunTimeoutError as exc:
            failed = TimedOut(
                data=exc,
                message=f"Flow run exceeded timeout of {flow.timeout_seconds:g} second(s)",
            )
        except Exception as exc:
            failed = Failed(
                data=exc, message=f"Flow run encountered an exception. {type(exc).__name__}: {exc}"
            )
        else:
            state = _returned_state(flow, run, value)
            if state.type is not StateType.FAILED:
                return state
            failed = state
        if run.run_count <= flow.retries:
            yield from retry_wait(run, failed, flow._retry_delays, None, flow.retries, logger)
            continue
        note_failure(failed, f"flow run {run.name!r}", run.run_count, flow.retries + 1)
        return failed


def _resolver(value: Any) -> Callable[[], Any]:
    return lambda: resolve_futures_to_states(value)


def _returned_state(flow: Flow[..., Any], run: FlowRun, value: Any) -> State[Any]:
    state = return_value_to_state(value)
    if not flow.cache_result_in_memory and state.type is StateType.COMPLETED:
        run.return_value = state.data
        state.data = DROPPED
    return state


def _details(run: FlowRun) -> StateDetails:
    return StateDetails(flow_run_id=run._cell)


def _conclude(
    flow: Flow[..., Any], run: FlowRun, state: State[Any], logger: RunLoggerAdapter
) -> Steps[State[Any]]:
    if state._details is None:
        state.state_details = _details(run)
    run.finish(state)
    if state.type is StateType.COMPLETED:
        logger.info("Finished in state %s", state)
        hooks = flow.on_completion_hooks
    else:
        data = state.data
        logger.error(
            "Finished in state %s",
            state,
            exc_info=data if isinstance(data, BaseException) else None,
        )
        hooks = flow.on_failure_hooks if state.type is StateType.FAILED else []
    if state.type is StateType.CANCELLED:
        hooks = flow.on_cancellation_hooks
    if hooks:
        yield from call_hooks(hooks, flow, run, state, lambda: logger)
    return state


def _crashed(
    flow: Flow[..., Any], run: FlowRun, exc: BaseException, logger: RunLoggerAdapter
) -> Steps[None]:
    state = crash_state(exc, _details(run))
    run.finish(state)
    logger.error("Finished in state %s", state)
    hooks = flow.on_cancellation_hooks if is_cancellation(exc) else flow.on_crashed_hooks
    if hooks:
        yield from call_hooks(hooks, flow, run, state, lambda: logger)


def _open_journal(flow: Flow[..., Any], run: FlowRun, enabled: bool) -> None:
    # Runs of flows that persist are recorded next to their results (fluvial.runs).
    from ..runs._journal import open_journal

    open_journal(flow, run, enabled)


def _raise_termination(signum: int, _frame: Any) -> None:
    raise TerminationSignal(signum)


def _capture_sigterm() -> Any:
    """Turn SIGTERM into TerminationSignal while the outermost flow on the main thread runs."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is _raise_termination:
        return None
    try:
        signal.signal(signal.SIGTERM, _raise_termination)
    except ValueError:  # not allowed here (e.g. some embedded interpreters)
        return None
    return previous


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
