"""The memory a Ray or Dask worker keeps between task runs, so a run costs little more than its
engine.

What many runs share is built once per worker process, as the process runner's workers do
(see :mod:`fluvial.runners._process_worker`, whose pieces this reuses): the log handler that
collects a run's records (adding and removing a handler, and setting the ``fluvial`` logger's
level, clear the cache of every logger in the process, and a Ray or Dask worker has many).
What a run may not share with a run in another thread is kept per thread: the flow run
stand-ins with their thread runners for tasks that submit tasks (per flow context digest),
and an event loop for async tasks. Ray runs a worker's tasks one after another in its main
thread; a Dask worker may run several at once, one per thread of its pool. The outcome goes
back as plain values, which pickle several times faster than the state object.
"""

from __future__ import annotations

__all__ = ("outcome_reply", "run_engine")

import contextvars
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .._runs import TaskRun
from ..engine.lifecycle import crash_state
from ..states import State, StateDetails, StateType
from ._process_worker import _Context, _reply, _Worker
from ._remote import Submission

if TYPE_CHECKING:
    from ._remote import TaskPayload

# Flow contexts kept per thread; a new flow run (or attempt) brings a new one.
_CONTEXTS = 8
_local = threading.local()
_lock = threading.Lock()
_handler_installed = False


class _ThreadWorker(_Worker):
    """A thread's share of the worker: its own event loop; the process's log handler."""

    def __init__(self) -> None:  # _Worker() would add a second handler: records twice
        self.tasks = {}
        self.contexts = {}
        self.loop = None


def run_engine(payload: TaskPayload, context_digest: bytes) -> bytes:
    """Run *payload* through the task engine on this worker; return the pickled reply.

    The reply is what the process runner's workers send: the final state's fields, the
    attempts made, the run's name, its log records and the seconds it took.
    """
    started = time.perf_counter()
    worker, context = _hydrated(payload, context_digest)
    task = payload.task
    run = TaskRun(task, payload.parameters, payload.tags, context.flow_run_id)
    run.id = payload.task_run_id
    if payload.task_run_name is not None:
        run.name = payload.task_run_name
    run.set_state(State(StateType.PENDING))
    records: list[dict[str, Any]] = []
    # In a copy of the worker's context, dropped afterwards, as on the process runner.
    ctx = contextvars.copy_context()
    try:
        state = ctx.run(worker._in_context, context, run, payload.parameters, records)
    except BaseException as exc:  # SystemExit from a task: report it, keep the worker
        state = crash_state(exc, StateDetails(task_run_id=run.id))
    seconds = time.perf_counter() - started
    return _reply(str(task.name), state, run.run_count, run._name, records, seconds)


def outcome_reply(state: State[Any], run_name: str | None) -> bytes:
    """Return the reply for a run that ended before its engine ran (0 attempts)."""
    return _reply("", state, 0, run_name, [], 0.0)


def _hydrated(payload: TaskPayload, digest: bytes) -> tuple[_Worker, _Context]:
    """Return this thread's worker memory and the hydrated flow context *digest* names."""
    memory: tuple[_Worker, OrderedDict[bytes, _Context]] | None = getattr(_local, "memory", None)
    if memory is None:
        memory = _local.memory = (_new_worker(), OrderedDict())
    worker, contexts = memory
    context = contexts.get(digest)
    if context is None:
        context = contexts[digest] = _Context(Submission(payload.flow, payload.config))
        if len(contexts) > _CONTEXTS:
            contexts.popitem(last=False)[1].close()
    else:
        contexts.move_to_end(digest)
    return worker, context


def _new_worker() -> _Worker:
    """The first thread's worker installs the run log handler on the fluvial logger."""
    global _handler_installed
    with _lock:
        worker = _ThreadWorker() if _handler_installed else _Worker()
        _handler_installed = True
    return worker
