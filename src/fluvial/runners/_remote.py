"""Running the task engine on another worker: what travels there, and what comes back.

Runners that leave the flow process (process pool, Dask, Ray) send a :class:`TaskPayload`: the
task, its run id, tags and arguments (already resolved, or as the backend's own futures, which
the backend resolves to upstream *states* before the call), and a snapshot of the flow run and
settings. :func:`run_payload` runs the whole engine there (retries, timeouts, caching,
persistence) and returns a :class:`RemoteOutcome`: the final state, the attempt count, and the
log records the run emitted, which :func:`replay_outcome` re-emits in the flow process so the
logs of a task appear together and in order.
"""

from __future__ import annotations

__all__ = (
    "FlowSnapshot",
    "RemoteOutcome",
    "Submission",
    "TaskPayload",
    "capture_submission",
    "crashed_outcome",
    "make_payload",
    "pickling_error",
    "record_data",
    "replay_outcome",
    "run_payload",
)

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._config import RunConfig, run_config, use_config
from .._runs import FlowRun, TaskRun
from ..context import (
    FlowRunContext,
    _current_tags,
    _flow_run_context,
    _reset_flow_context,
    _set_flow_context,
    _tags,
)
from ..exceptions import SerializationError
from ..states import Crashed, State, StateType

if TYPE_CHECKING:
    import uuid

    from ..tasks import Task


@dataclass(slots=True)
class FlowSnapshot:
    """What a worker needs of the flow run a task belongs to."""

    flow_name: str
    flow_run_id: uuid.UUID
    flow_run_name: str
    parameters: dict[str, Any]
    tags: frozenset[str]
    run_count: int
    persist_result: bool
    log_prints: bool
    result_storage: Any
    result_serializer: Any
    version: str | None


class _FlowStandIn:
    """Takes the place of the Flow object on a worker: the attributes tasks read from it."""

    retries = 0
    cache_result_in_memory = True

    def __init__(self, snapshot: FlowSnapshot) -> None:
        self.name = snapshot.flow_name
        self.result_storage = snapshot.result_storage
        self.result_serializer = snapshot.result_serializer
        self.version = snapshot.version
        self.persist_result = snapshot.persist_result


@dataclass(slots=True)
class TaskPayload:
    """One task run, ready to be pickled and run by :func:`run_payload` on a worker."""

    task: Task[..., Any]
    task_run_id: uuid.UUID
    task_run_name: str | None
    tags: frozenset[str]
    parameters: dict[str, Any]
    flow: FlowSnapshot | None
    config: RunConfig


@dataclass(slots=True)
class RemoteOutcome:
    """What comes back from a worker: the final state, attempts made and the run's logs."""

    state: State[Any]
    run_count: int
    run_name: str
    logs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Submission:
    """The context of a submit call, captured in the submitting thread."""

    flow: FlowSnapshot | None
    config: RunConfig


# The last submission captured, with what it was made from: the flow run (and its context
# object), its attempt and the settings object. A flow run's snapshot does not change within an
# attempt, so its runs share one: this runs for every submit. Only ids are kept of the flow run
# context, which must not outlive its flow run here; the tuple is replaced whole (thread-safe).
_last: tuple[int, object, int, RunConfig, Submission] | None = None


def capture_submission() -> Submission:
    """Capture the flow run and settings in effect here, for a payload built later elsewhere."""
    global _last
    flow_ctx = _flow_run_context.get()
    config = run_config()
    flow_run = None if flow_ctx is None else flow_ctx.flow_run
    run_id = None if flow_run is None else flow_run.id
    attempt = 0 if flow_run is None else flow_run.run_count
    last = _last
    if (
        last is not None
        and last[0] == id(flow_ctx)
        and last[1] == run_id
        and last[2] == attempt
        and last[3] is config
    ):
        return last[4]
    submission = Submission(_flow_snapshot(), config)
    _last = (id(flow_ctx), run_id, attempt, config, submission)
    return submission


def make_payload(
    task: Task[..., Any], run: TaskRun, parameters: dict[str, Any], submission: Submission
) -> TaskPayload:
    """Describe *run* of *task* for a worker."""
    name = run._name if task.task_run_name is None else None
    return TaskPayload(task, run.id, name, run.tags, parameters, submission.flow, submission.config)


def _flow_snapshot() -> FlowSnapshot | None:
    flow_ctx = _flow_run_context.get()
    snapshot = None
    if flow_ctx is not None:
        flow_run = flow_ctx.flow_run
        snapshot = FlowSnapshot(
            flow_name=flow_run.flow_name,
            flow_run_id=flow_run.id,
            flow_run_name=flow_run.name,
            parameters=dict(flow_ctx.parameters),
            tags=flow_run.tags,
            run_count=flow_run.run_count,
            persist_result=flow_ctx.persist_result,
            log_prints=flow_ctx.log_prints,
            result_storage=flow_ctx.flow.result_storage,
            result_serializer=flow_ctx.flow.result_serializer,
            version=None,
        )
    return snapshot


def run_payload(payload: TaskPayload) -> RemoteOutcome:
    """Run one task run on this worker and return its outcome (never raises for task errors)."""
    from ..engine.task_engine import run_task_async, run_task_sync

    task = payload.task
    run = TaskRun(
        task,
        payload.parameters,
        payload.tags,
        payload.flow.flow_run_id if payload.flow else None,
    )
    run.id = payload.task_run_id
    if payload.task_run_name is not None:
        run.name = payload.task_run_name
    run.set_state(State(StateType.PENDING))
    with _capture_logs() as logs, _hydrated(payload):
        if task.isasync:
            import asyncio

            state = asyncio.run(run_task_async(task, payload.parameters, None, "state", run))
        else:
            state = run_task_sync(task, payload.parameters, None, "state", run)
    return RemoteOutcome(_portable(state, str(task.name)), run.run_count, run.name, logs)


@contextmanager
def _hydrated(payload: TaskPayload) -> Iterator[None]:
    """Enter the flow run context, tags and settings the task had where it was submitted."""
    from .thread import ThreadPoolTaskRunner

    tags_token = _tags.set(payload.tags | _current_tags())
    flow_token = None
    if payload.flow is not None:
        snapshot = payload.flow
        flow: Any = _FlowStandIn(snapshot)  # has the attributes tasks read from a Flow
        flow_run = FlowRun(flow, snapshot.parameters, snapshot.tags)
        flow_run.id = snapshot.flow_run_id
        flow_run.name = snapshot.flow_run_name
        flow_run.run_count = snapshot.run_count
        # Tasks that submit tasks on a worker get a thread runner of their own there.
        runner = ThreadPoolTaskRunner().__enter__()
        ctx = FlowRunContext(
            flow,
            flow_run,
            runner,
            snapshot.parameters,
            snapshot.log_prints,
            snapshot.persist_result,
        )
        flow_token = _set_flow_context(ctx)
    try:
        with use_config(payload.config):
            yield
    finally:
        if flow_token is not None:
            _reset_flow_context(flow_token)
            runner.__exit__(None, None, None)  # waits for anything the task submitted
        _tags.reset(tags_token)


_capturing: ContextVar[object | None] = ContextVar("fluvial.log_capture", default=None)


class _LogCapture(logging.Handler):
    """Collects the records of fluvial's run loggers emitted within this run's context.

    Matching on the context rather than the thread also catches records from the helper
    thread a sync task with a timeout runs on (it runs in a copy of this context).
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if _capturing.get() is not self:
            return
        self.records.append(record_data(record))


def record_data(record: logging.LogRecord) -> dict[str, Any]:
    """Return *record* as a picklable dict that :func:`logging.makeLogRecord` turns back."""
    data = dict(record.__dict__)
    data["msg"] = record.getMessage()
    data["args"] = None
    data["exc_info"] = None
    if record.exc_info and record.exc_info[1] is not None:
        data["exc_text"] = "".join(traceback.format_exception(*record.exc_info))
    return data


@contextmanager
def _capture_logs() -> Iterator[list[dict[str, Any]]]:
    logger = logging.getLogger("fluvial")
    handler = _LogCapture()
    previous_level = logger.level
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    token = _capturing.set(handler)
    try:
        yield handler.records
    finally:
        _capturing.reset(token)
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _portable(state: State[Any], task_name: str) -> State[Any]:
    """Make sure the state can travel back; an unpicklable value becomes a clear failure.

    Exceptions are also unpickled here: one that pickles but cannot be rebuilt (its
    ``__init__`` takes other arguments than it passes to ``Exception``) would otherwise fail
    in the flow process, where the traceback is lost.
    """
    import cloudpickle

    try:
        data = cloudpickle.dumps(state.data)
        if isinstance(state.data, BaseException):
            cloudpickle.loads(data)
        return state
    except Exception as exc:
        what = "exception" if isinstance(state.data, BaseException) else "return value"
        detail = "".join(traceback.format_exception(state.data)) if what == "exception" else ""
        error = SerializationError(
            f"task {task_name!r}: its {what} ({type(state.data).__name__}) cannot be sent back "
            f"from the worker: {exc}. Return plain data, or persist the result "
            f"(persist_result=True) so only a reference travels.\n{detail}"
        )
        return State(StateType.FAILED, message=str(error).splitlines()[0], data=error)


def replay_outcome(run: TaskRun, outcome: RemoteOutcome) -> State[Any]:
    """Apply a worker's outcome to the flow process's record of the run; re-emit its logs."""
    run.run_count = outcome.run_count
    run.name = outcome.run_name
    for data in outcome.logs:
        record = logging.makeLogRecord(data)
        logging.getLogger(record.name).handle(record)
    return outcome.state


def crashed_outcome(run: TaskRun, reason: str, cause: BaseException | None = None) -> State[Any]:
    """Return the Crashed state for a run whose worker died or could not be reached."""
    from ..exceptions import WorkerCrashed

    error = WorkerCrashed(reason)
    if cause is not None:
        error.__cause__ = cause
    return Crashed(message=reason, data=error)


def pickling_error(
    task: Task[..., Any], parameters: dict[str, Any], exc: Exception, where: str
) -> SerializationError:
    """Explain why a run could not be pickled for *where*, naming the parameter at fault."""
    import cloudpickle

    for name, value in parameters.items():
        try:
            cloudpickle.dumps(value)
        except Exception as inner:
            return SerializationError(
                f"task {task.name!r}: parameter {name!r} ({type(value).__name__}) cannot be "
                f"pickled to send it to {where}: {inner}. Pass something picklable, or use the "
                "thread runner for this task."
            )
    return SerializationError(
        f"task {task.name!r} or its arguments cannot be pickled to send to {where}: {exc}"
    )
