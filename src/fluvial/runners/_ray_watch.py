"""The Ray runner's finisher: one thread that turns finished Ray tasks into final states.

Each run's ``ObjectRef`` gets a completion callback from Ray (``ObjectRef._on_completed``,
what ``ref.future()`` is built on, without the ``concurrent.futures.Future`` and its
callback machinery around it; ``ref.future()`` where a Ray lacks it). The callback, on a Ray
thread, only queues the value; the finisher thread takes what is queued in batches and calls
``complete(job, value)``, so logs replay and futures finish outside Ray's threads.
"""

from __future__ import annotations

__all__ = ("Finisher", "failure_state", "outcome_state")

import logging
import queue
import re
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..exceptions import SerializationError
from ..states import Cancelled, Failed, State
from ._remote import crashed_outcome

if TYPE_CHECKING:
    from .._runs import TaskRun

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours some error messages


class Finisher:
    """Calls ``complete(job, value)`` for each finished Ray task, where value is the task's
    return value, or the exception Ray gives for it (the worker died, it was cancelled…)."""

    def __init__(self, complete: Callable[[Any, object], None]) -> None:
        self._complete = complete
        self._done: queue.SimpleQueue[tuple[Any, object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fluvial-ray-finisher", daemon=True)
        self._thread.start()

    def add(self, ref: Any, job: Any) -> None:
        """Watch *ref*, the Ray task of *job* (safe from any thread)."""
        on_completed = getattr(ref, "_on_completed", None)
        if on_completed is not None:
            on_completed(partial(self._queue, job))
        else:
            ref.future().add_done_callback(partial(self._queue_future, job))

    def stop(self) -> None:
        """Stop (the runs still out were ended by the runner) and join the thread."""
        self._done.put(None)
        self._thread.join()

    def _queue(self, job: Any, value: object) -> None:
        self._done.put((job, value))

    def _queue_future(self, job: Any, future: Any) -> None:
        try:
            value = future.result()
        except Exception as exc:
            value = exc
        self._done.put((job, value))

    def _run(self) -> None:
        while True:
            item = self._done.get()
            if item is None:
                return
            self._complete(*item)
            del item  # hold no finished outcome


def outcome_state(run: TaskRun, blob: object) -> State[Any]:
    """Return the final state in a Ray task's reply (see ``_ray_engine``); replay its logs."""
    import pickle

    from ._process_worker import state_from_fields

    try:
        fields, run_count, run_name, records, _ = pickle.loads(blob)  # type: ignore[arg-type]
        state = state_from_fields(fields)
    except Exception as exc:
        error = SerializationError(
            f"the outcome of task run {run.name!r} cannot be unpickled in the flow process: {exc}"
        )
        return Failed(data=error, message=str(error))
    run.run_count = run_count
    if run_name is not None:
        run.name = run_name
    for record in records:  # re-emitted here, in order, as if logged in this process
        emitted = logging.makeLogRecord(record)
        logging.getLogger(emitted.name).handle(emitted)
    return state


def failure_state(run: TaskRun, exc: Exception, ray: Any) -> State[Any]:
    """Return the state of a run whose Ray task failed with *exc* (not a task error)."""
    errors = ray.exceptions
    if isinstance(exc, errors.TaskCancelledError):
        return Cancelled(message=f"Ray cancelled task run {run.name!r}.", data=exc)
    if isinstance(exc, errors.OutOfMemoryError):
        what = "was killed by Ray's memory monitor (the node ran out of memory)"
    elif isinstance(exc, errors.WorkerCrashedError | errors.RayActorError):
        what = "died before the run finished"
    elif isinstance(exc, errors.ObjectLostError):
        what = "finished, but Ray lost the run's outcome (ObjectLostError)"
    else:
        what = "failed in Ray"
    lines = [line for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    detail = f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__
    reason = f"the Ray worker running task run {run.name!r} {what} ({detail})"
    return crashed_outcome(run, reason, exc)
