"""What runs inside each worker process of a ProcessPoolTaskRunner, and the wire format.

A worker reads messages from its pipe one at a time, in the order they were sent:

* ``(TASK, key, blob)``: a cloudpickled task, sent once per worker and then named by *key*;
* ``(CONTEXT, key, blob, forget)``: a cloudpickled :class:`~._remote.Submission` (the flow run
  and settings of the submitting code), likewise sent once; *forget* names one the worker may
  drop, so a long flow run does not pile them up;
* ``(RUN, task_key, context_key, run_id, run_name, tags, parameters)``: one task run, answered
  with one reply ``(state fields, run_count, run_name, log_records, seconds)``, the final
  state taken apart into plain values (see :func:`state_fields`), which pickle several times
  faster than the object.

Everything runs in the worker's main thread, strictly in order: a worker starts reading the next
message only after sending the reply to the previous run, so the flow process knows that of the
runs it sent, only the oldest unanswered one can have started.

What many runs share (the task object, a stand-in for the flow run, the settings, a thread
runner for tasks that submit tasks, the log handler, an event loop for async tasks) is built
once per worker, so a run costs little more than the task engine itself.
"""

from __future__ import annotations

__all__ = (
    "CONTEXT",
    "RUN",
    "TASK",
    "adopt_reply",
    "dumps",
    "state_fields",
    "state_from_fields",
    "worker_main",
)

import contextlib
import contextvars
import logging
import pickle
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

from .._config import _shipped
from .._runs import FlowRun, TaskRun
from ..context import FlowRunContext, _flow_run_context, _tags
from ..engine.task_engine import run_task_async, run_task_sync
from ..exceptions import SerializationError
from ..futures import wait
from ..states import Failed, State, StateDetails, StateType
from ._remote import Submission, _FlowStandIn, _portable, record_data

if TYPE_CHECKING:
    import asyncio
    from multiprocessing.connection import Connection

    from .thread import ThreadPoolTaskRunner

TASK, CONTEXT, RUN = "task", "context", "run"

_run_records: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "fluvial.process_run_records", default=None
)


def dumps(value: Any) -> bytes:
    """Pickle *value* with the standard pickler, or with cloudpickle where that is needed.

    The C pickler is several times faster, and gives the same bytes cloudpickle would for
    everything it can pickle by reference. cloudpickle is used instead when it pickles
    something differently: code from ``__main__`` (by value, as spawned workers may not be
    able to import it), modules registered to be pickled by value, and what the standard
    pickler refuses (lambdas, local functions and classes).
    """
    import cloudpickle

    data = None
    if not cloudpickle.list_registry_pickle_by_value():
        with contextlib.suppress(Exception):  # cloudpickle may manage, or explains why not
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if data is None or b"__main__" in data:
        data = cloudpickle.dumps(value)
    return data


def worker_main(conn: Connection) -> None:
    """Answer the messages the flow process sends until the pipe closes (in the worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the flow process's to handle
    from ..concurrency._select import mark_process_worker

    mark_process_worker()  # tasks here share concurrency limits with other processes via files
    worker = _Worker()
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        reply = worker.handle(message)
        if reply is not None:
            conn.send_bytes(reply)


class _Context:
    """One submission context, hydrated: settings, flow run context and its thread runner."""

    __slots__ = ("config", "flow_ctx", "flow_run_id", "runner")

    def __init__(self, submission: Submission) -> None:
        from .thread import ThreadPoolTaskRunner

        self.config = submission.config
        self.flow_ctx: FlowRunContext | None = None
        self.flow_run_id: uuid.UUID | None = None
        self.runner: ThreadPoolTaskRunner | None = None
        snapshot = submission.flow
        if snapshot is not None:
            flow: Any = _FlowStandIn(snapshot)  # has the attributes tasks read from a Flow
            flow_run = FlowRun(flow, snapshot.parameters, snapshot.tags)
            flow_run.id = self.flow_run_id = snapshot.flow_run_id
            flow_run.name = snapshot.flow_run_name
            flow_run.run_count = snapshot.run_count
            # Tasks that submit tasks on a worker get a thread runner of their own there.
            self.runner = ThreadPoolTaskRunner().__enter__()
            self.flow_ctx = FlowRunContext(
                flow,
                flow_run,
                self.runner,
                snapshot.parameters,
                snapshot.log_prints,
                snapshot.persist_result,
            )

    def wait_for_submitted(self) -> None:
        """Wait for the runs that the last task submitted (and those they submitted)."""
        if self.runner is None:
            return
        while pending := self.runner.pending_futures():
            wait(pending)

    def close(self) -> None:
        """Stop the thread runner."""
        if self.runner is not None:
            self.runner.__exit__(None, None, None)


class _Worker:
    """The worker's memory between messages: tasks and contexts by key, an event loop."""

    def __init__(self) -> None:
        self.tasks: dict[int, Any] = {}
        self.contexts: dict[int, _Context] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        logger = logging.getLogger("fluvial")
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.addHandler(_RunLogs())

    def handle(self, message: tuple[Any, ...]) -> bytes | None:
        """Act on one message; return the reply to send, if it calls for one."""
        kind = message[0]
        if kind == RUN:
            return self.run(*message[1:])
        import cloudpickle

        if kind == TASK:
            _, key, blob = message
            try:
                self.tasks[key] = cloudpickle.loads(blob)
            except Exception as exc:  # reported by each run of the task
                self.tasks[key] = exc
        elif kind == CONTEXT:
            _, key, blob, forget = message
            self.contexts[key] = _Context(cloudpickle.loads(blob))
            if forget is not None:
                self.contexts.pop(forget).close()
        return None

    def run(
        self,
        task_key: int,
        context_key: int,
        run_id: bytes,
        run_name: str | None,
        tags: frozenset[str],
        parameters: dict[str, Any],
    ) -> bytes:
        """Run one task run through the engine and return the pickled reply."""
        started = time.perf_counter()
        task = self.tasks[task_key]
        if isinstance(task, Exception):
            return _unloadable_task(task, run_name)
        context = self.contexts[context_key]
        run = TaskRun(task, parameters, tags, context.flow_run_id)
        run.id = uuid.UUID(bytes=run_id)
        if run_name is not None:
            run.name = run_name
        run.set_state(State(StateType.PENDING))
        records: list[dict[str, Any]] = []
        # In a copy of the worker's context, dropped afterwards: what the run sets there
        # (its flow run, tags, settings, and anything the task sets) does not outlive it.
        state = contextvars.copy_context().run(self._in_context, context, run, parameters, records)
        seconds = time.perf_counter() - started
        return _reply(str(task.name), state, run.run_count, run._name, records, seconds)

    def _in_context(
        self,
        context: _Context,
        run: TaskRun,
        parameters: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> State[Any]:
        _tags.set(run.tags)
        _shipped.set(context.config)
        _flow_run_context.set(context.flow_ctx)
        _run_records.set(records)
        state = self._run_engine(run.task, parameters, run)
        context.wait_for_submitted()
        return state

    def _run_engine(self, task: Any, parameters: dict[str, Any], run: TaskRun) -> State[Any]:
        if not task.isasync:
            state: State[Any] = run_task_sync(task, parameters, None, "state", run)
            return state
        if self.loop is None:
            import asyncio

            # One loop for the worker's life, as the thread runner keeps one per thread:
            # asyncio.run would build and tear down a loop for every run.
            self.loop = asyncio.new_event_loop()
        state = self.loop.run_until_complete(run_task_async(task, parameters, None, "state", run))
        return state


class _RunLogs(logging.Handler):
    """Collects the records of the run in progress, found through the context.

    Matching on the context rather than the thread also catches records from the helper
    thread a sync task with a timeout runs on (it runs in a copy of the run's context), and
    sends records from a thread abandoned by an earlier run to that run's list, not this one.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        records = _run_records.get()
        if records is not None:
            records.append(record_data(record))


def _reply(
    task_name: str,
    state: State[Any],
    run_count: int,
    run_name: str | None,
    records: list[dict[str, Any]],
    seconds: float,
) -> bytes:
    """Pickle the outcome of a run; a state or logs that cannot travel become a clear failure."""
    if isinstance(state.data, BaseException):
        state = _portable(state, task_name)  # also checks that the exception can be rebuilt
    try:
        return dumps((state_fields(state), run_count, run_name, records, seconds))
    except Exception:
        state = _portable(state, task_name)  # explains an unpicklable return value
    try:
        return dumps((state_fields(state), run_count, run_name, records, seconds))
    except Exception:  # the state travels, but some log record (an `extra=` value) does not
        plain = [_plain_record(record) for record in records]
    try:
        return dumps((state_fields(state), run_count, run_name, plain, seconds))
    except Exception as exc:
        error = SerializationError(f"task {task_name!r}: its outcome cannot be sent: {exc}")
        failed = Failed(data=error, message=str(error))
        return dumps((state_fields(failed), run_count, run_name, [], seconds))


def _plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """Return *record* with every value that may not pickle replaced by its repr."""
    return {
        key: value if value is None or type(value) in _PLAIN_LOG_VALUES else repr(value)
        for key, value in record.items()
    }


_PLAIN_LOG_VALUES = frozenset({str, int, float, bool})


StateFields = tuple[str, str, str | None, Any, float, StateDetails | None]


def state_fields(state: State[Any]) -> StateFields:
    """Take *state* apart into plain values; its run ids stay: the flow process has its own."""
    return (state.type.name, state.name, state.message, state.data, state._ts, state._details)


def state_from_fields(fields: StateFields) -> State[Any]:
    """Rebuild a state taken apart by :func:`state_fields`."""
    type_name, name, message, data, timestamp, details = fields
    state: State[Any] = State(StateType[type_name], name, message, data, details)
    state._ts = timestamp
    return state


def adopt_reply(
    run: Any, run_count: int, run_name: str | None, records: list[dict[str, Any]]
) -> None:
    """Give *run* (in the flow process) what its worker reported: attempts, name and logs."""
    run.run_count = run_count
    if run_name is not None:
        run.name = run_name
    for record in records:  # re-emitted here, in order, as if logged in this process
        emitted = logging.makeLogRecord(record)
        logging.getLogger(emitted.name).handle(emitted)


def _unloadable_task(exc: Exception, run_name: str | None) -> bytes:
    error = SerializationError(
        f"the task could not be unpickled in the worker process: {type(exc).__name__}: {exc}. "
        "Define tasks at module level in a module the worker can import (and guard the "
        "script's entry point with `if __name__ == '__main__':`)."
    )
    return dumps((state_fields(Failed(data=error, message=str(error))), 0, run_name, [], 0.0))
