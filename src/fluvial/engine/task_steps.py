"""The full task run engine: one lifecycle for sync and async tasks, on every runner.

Runs that need none of its optional steps take the short path instead (see short_path and
task_engine, which chooses).

Order of steps for one task run:

1. resolve inputs: wait for upstream futures (runners have usually done so before dispatch),
   replace futures and states with values; an upstream that did not complete gives
   ``Pending("NotReady")`` and the function never runs;
2. name the run (``task_run_name``) and enter its ``TaskRunContext``;
3. replay: inside a flow with retries, a task that already completed with the same inputs in an
   earlier attempt of the flow run is ``Cached`` instead of re-run;
4. attempts: Running (or Retrying) → ``on_running`` hooks → call the function within its
   timeout → Completed, or Failed/TimedOut; a failure with retries left whose
   ``retry_condition_fn`` agrees waits (``AwaitingRetry``) and tries again;
5. final state → ``on_completion`` / ``on_failure`` hooks.

Invariants: a run's states are appended to its history in order; hooks never change a state;
the user's exception is the failed state's data, unchanged apart from one note. A
``BaseException`` (KeyboardInterrupt, SystemExit, cancellation) makes the run Crashed or
Cancelled and is re-raised.
"""

from __future__ import annotations

__all__ = ("task_steps",)

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._runs import TaskRun
from ..concurrency._tags import tag_slots
from ..context import (
    FlowRunContext,
    TaskRunContext,
    _flow_run_context,
    _reset_task_context,
    _set_task_context,
)
from ..exceptions import (
    ConcurrencySlotAcquisitionError,
    DefinitionError,
    FluvialError,
    SerializationError,
    StorageError,
    TaskRunTimeoutError,
    UpstreamTaskError,
)
from ..logging.loggers import enable_print_capture
from ..states import DROPPED, Cached, Failed, NotReady, Retrying, State, StateType
from .caching import CacheLookup, PersistedResult, PersistResult, ResultPlan, plan_results
from .effects import CallFunction, Steps, WaitFor
from .lifecycle import call_hooks, crash_state, note_failure, retry_wait, should_retry
from .naming import render_run_name
from .outcomes import completed_state, failed_state, give_up, run_details, run_logger
from .resolve import needs_resolution, resolve_parameters, unfinished_upstream

if TYPE_CHECKING:
    from ..concurrency._tags import TagSlots
    from ..tasks import Task

_engine_logger = logging.getLogger("fluvial.engine")


def task_steps(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None,
) -> Steps[State[Any]]:
    """The engine for one task run, as a generator of effects (see the module docstring)."""
    flow_ctx = _flow_run_context.get()
    if needs_resolution(parameters, wait_for):
        try:
            pending = unfinished_upstream(parameters, wait_for)
            if pending:
                params = parameters
                parameters = yield WaitFor(pending, lambda: resolve_parameters(params, wait_for))
            else:
                parameters = resolve_parameters(parameters, wait_for)
        except UpstreamTaskError as exc:
            return _finish(run, NotReady(message=str(exc), state_details=run_details(run)))
    run.parameters = parameters
    log_prints = task.log_prints
    if log_prints is None:
        log_prints = flow_ctx.log_prints if flow_ctx is not None else False
    if log_prints:
        # Also on workers, where the flow's setting arrives with the run but the flow engine
        # never ran to install the capture.
        enable_print_capture()
    ctx = TaskRunContext(task, run, parameters, log_prints)
    token = _set_task_context(ctx)
    try:
        if task.task_run_name is not None:
            # Named inside the run's context: a naming callable may read fluvial.runtime.
            try:
                run.name = render_run_name(task.task_run_name, parameters)
            except DefinitionError as exc:
                return _finish(
                    run, Failed(data=exc, message=str(exc), state_details=run_details(run))
                )
        plan = _plan(task, run, ctx, flow_ctx)
        memo = flow_ctx._memo if flow_ctx is not None else None
        if isinstance(plan, State):  # caching could not be set up: the run fails, saying why
            state = plan
        elif plan is not None:
            state = yield from _cached_or_run(task, run, parameters, flow_ctx, plan)
        elif memo is None or flow_ctx is None:
            state = yield from _attempt_loop(task, run, parameters, flow_ctx)
        else:
            state = yield from _replay_or_run(task, run, parameters, flow_ctx, memo)
        _finish(run, state)
        hooks = _final_hooks(task, state)
        if hooks:
            yield from call_hooks(hooks, task, run, state, lambda: run_logger(run, flow_ctx))
    except BaseException as exc:
        _finish(run, crash_state(exc, run_details(run)))
        raise
    finally:
        _reset_task_context(token)
    return state


def _plan(
    task: Task[..., Any], run: TaskRun, ctx: TaskRunContext, flow_ctx: FlowRunContext | None
) -> ResultPlan | State[Any] | None:
    if task.persist_result is False:
        return None
    try:
        return plan_results(task, run, ctx, flow_ctx)
    except (FluvialError, ValueError) as exc:
        # Unhashable inputs with tasks_unhashable_inputs="error", a storage URL fsspec cannot
        # use, SERIALIZABLE without a lock manager...
        note_failure(Failed(data=exc), f"task run {run.name!r}", 1, 1)
        return Failed(
            data=exc, message=f"Caching could not be set up: {exc}", state_details=run_details(run)
        )


def _cached_or_run(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    plan: ResultPlan,
) -> Steps[State[Any]]:
    try:
        try:
            record = yield CacheLookup(plan)
        except StorageError as exc:
            return _storage_failure(run, exc)
        if record is not None:
            data = PersistedResult(
                plan.store, record.metadata.storage_key, record.result, plan.keep_in_memory
            )
            run.return_value = record.result
            return Cached(data=data, state_details=run_details(run))
        state = yield from _attempt_loop(task, run, parameters, flow_ctx)
        if state.type is StateType.COMPLETED:
            value = run.return_value if state.data is DROPPED else state.data
            try:
                state.data = yield PersistResult(plan, value)
            except StorageError as exc:
                return _storage_failure(run, exc)
            except SerializationError as exc:
                run_logger(run, flow_ctx).warning(
                    "the result could not be persisted (%s); it is kept in memory only", exc
                )
            run.return_value = value
        return state
    finally:
        plan.release()


def _storage_failure(run: TaskRun, exc: BaseException) -> State[Any]:
    return Failed(data=exc, message=f"Result storage failed: {exc}", state_details=run_details(run))


def _replay_or_run(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext,
    memo: dict[str, tuple[int, Any]],
) -> Steps[State[Any]]:
    key = _memo_key(task, parameters)
    attempt = flow_ctx.flow_run.run_count
    if key is not None and key in memo:
        completed_in, value = memo[key]
        # Only earlier attempts count: two equal calls in one attempt both run.
        if completed_in < attempt:
            return Cached(
                data=value,
                message="Completed in an earlier attempt of this flow run",
                state_details=run_details(run),
            )
    state = yield from _attempt_loop(task, run, parameters, flow_ctx)
    if key is not None and state.type is StateType.COMPLETED and state.data is not DROPPED:
        memo.setdefault(key, (attempt, state.data))
    return state


def _attempt_loop(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
) -> Steps[State[Any]]:
    # A plain function, not a generator: a run whose tags have no limit adds no layer.
    if not run.tags:
        return _attempts(task, run, parameters, flow_ctx, None)
    try:
        slots = tag_slots(run.tags)
    except ConcurrencySlotAcquisitionError as exc:  # a tag limit of 0: fail, never wait
        return _refused(run, exc)
    if slots is None:
        return _attempts(task, run, parameters, flow_ctx, None)
    return _holding_slots(task, run, parameters, flow_ctx, slots)


def _refused(run: TaskRun, exc: BaseException) -> Steps[State[Any]]:
    note_failure(Failed(data=exc), f"task run {run.name!r}", 1, 1)
    yield from ()  # a generator, as callers expect; it has nothing to ask for
    return Failed(data=exc, message=str(exc), state_details=run_details(run))


def _holding_slots(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    slots: TagSlots,
) -> Steps[State[Any]]:
    """Attempts with the run's tag-limit slots, given back whatever happens."""
    try:
        return (yield from _attempts(task, run, parameters, flow_ctx, slots))
    finally:
        slots.release()


def _attempts(
    task: Task[..., Any],
    run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    slots: TagSlots | None,
) -> Steps[State[Any]]:
    args, kwargs = task._signature.to_call(parameters)
    while True:
        if slots is not None:
            yield slots  # the tag-limit slots, held for this attempt only
        run.run_count += 1
        running = State(StateType.RUNNING) if run.run_count == 1 else Retrying()
        run.set_state(running)
        if task.on_running_hooks:
            yield from call_hooks(
                task.on_running_hooks, task, run, running, lambda: run_logger(run, flow_ctx)
            )
        try:
            value = yield CallFunction(
                task.fn, args, kwargs, task.timeout_seconds, TaskRunTimeoutError
            )
        except Exception as exc:  # TaskRunTimeoutError included: failed_state makes it TimedOut
            failed = failed_state(task, exc)
        else:
            state = completed_state(task, run, value)
            if state.type is not StateType.FAILED:
                return state
            failed = state
        if run.run_count <= task.retries:
            retry = yield from should_retry(
                task.retry_condition_fn, (task, run, failed), lambda: run_logger(run, flow_ctx)
            )
            if retry:
                if slots is not None:
                    slots.release()  # retry delays hold no tag slot
                yield from retry_wait(
                    run,
                    failed,
                    task._retry_delays,
                    task.retry_jitter_factor,
                    task.retries,
                    run_logger(run, flow_ctx),
                )
                continue
        return give_up(task, run, failed, flow_ctx)


def _finish(run: TaskRun, state: State[Any]) -> State[Any]:
    run.finish(state)
    return state


def _final_hooks(task: Task[..., Any], state: State[Any]) -> list[Any]:
    if state.type is StateType.COMPLETED:
        return task.on_completion_hooks
    if state.type is StateType.FAILED:
        return task.on_failure_hooks
    return []


def _memo_key(task: Task[..., Any], parameters: dict[str, Any]) -> str | None:
    from .._hashing import UnhashableInputError, stable_hash

    try:
        return stable_hash(task.task_key, parameters)
    except UnhashableInputError:
        _engine_logger.debug(
            "task %r has inputs that cannot be hashed; a flow retry will re-run it", task.name
        )
        return None
