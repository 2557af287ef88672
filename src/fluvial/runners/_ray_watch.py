"""The Ray runner's finisher: one thread that waits for the runs' Ray tasks in batches and
turns them into final states.

It asks Ray with ``ray.wait`` which of the oldest outstanding tasks are done and reads those
with one ``ray.get``, so the work per finished task is a share of two calls. A completion
callback per task (``ObjectRef._on_completed``, what ``ref.future()`` is built on) costs
more: Ray's IO thread takes the GIL once per task, from the thread submitting tasks too, and
fluvial fell a third behind raw Ray at 10k tasks. Tasks finish roughly in the order they were
sent, so the finisher watches the oldest ones; a full sweep catches any that finish out of
order, whenever the oldest make no progress and at least every ``_SWEEP_EVERY`` seconds.
"""

from __future__ import annotations

__all__ = ("Finisher", "failure_state", "outcome_state")

import pickle
import queue
import re
import threading
import time
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..exceptions import SerializationError
from ..states import Cancelled, Failed, State
from ._process_worker import adopt_reply, state_from_fields
from ._remote import crashed_outcome

if TYPE_CHECKING:
    from .._runs import TaskRun

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours some error messages
# How many of the oldest outstanding tasks each ray.wait looks at (its cost grows with it).
_WINDOW = 64
# How long one ray.wait blocks before the finisher looks for new tasks.
_POLL = 0.02
# Look at all outstanding tasks this often (more often when the oldest make no progress),
# and for at most 1/_SWEEP_COST_RATIO of the time.
_SWEEP_EVERY = 1.0
_SWEEP_STUCK = 0.1
_SWEEP_COST_RATIO = 50
# While more tasks than this are out, let a batch grow this long before reading it.
_LINGER_ABOVE = 8
_LINGER = 0.02


class Finisher:
    """Calls ``complete(job, value)`` for each finished Ray task, where value is the task's
    return value, or the exception Ray gives for it (the worker died, it was cancelled…)."""

    def __init__(self, ray: Any, complete: Callable[[Any, object], None]) -> None:
        self._ray = ray
        self._complete = complete
        self._new: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._pending: dict[Any, Any] = {}  # ObjectRef -> job, oldest first (finisher only)
        self._swept = 0.0
        self._sweep_cost = 0.0
        self._thread = threading.Thread(target=self._run, name="fluvial-ray-finisher", daemon=True)
        self._thread.start()

    def add(self, ref: Any, job: Any) -> None:
        """Watch *ref*, the Ray task of *job* (safe from any thread)."""
        self._new.put((ref, job))

    def stop(self) -> None:
        """Stop (the runs still out were ended by the runner) and join the thread."""
        self._new.put(None)
        self._thread.join()

    def _run(self) -> None:
        while self._take_new():
            try:
                ready = self._ready()
            except Exception as exc:  # Ray itself failed (shut down underneath the runner?)
                for job in self._pending.values():
                    self._complete(job, exc)
                self._pending.clear()
                continue
            self._finish(ready)
            del ready  # hold no ObjectRef while waiting: Ray may free the outcomes
        self._pending.clear()

    def _ready(self) -> list[Any]:
        """Return the tasks found done: among the oldest, or, now and then, among all."""
        pending = self._pending
        if len(pending) > _LINGER_ABOVE:
            time.sleep(_LINGER)  # let a batch grow: a ray.wait costs the same whatever it finds
        window = list(islice(pending, _WINDOW))
        ready = self._wait(window, len(window), 0)
        if not ready:  # sleep in Ray until one is done (a blocking wait costs more per ref)
            ready = self._wait(window, 1, _POLL)
        if len(pending) > _WINDOW:
            # Sooner when the oldest are stuck; and never more than 1/_SWEEP_COST_RATIO of
            # the time, as a sweep costs in proportion to the tasks out.
            gap = _SWEEP_STUCK if not ready else _SWEEP_EVERY
            if time.monotonic() - self._swept > max(gap, _SWEEP_COST_RATIO * self._sweep_cost):
                ready = self._sweep()
        return ready

    def _sweep(self) -> list[Any]:
        started = time.monotonic()
        everything = list(self._pending)
        ready = self._wait(everything, len(everything), 0)
        self._swept = time.monotonic()
        self._sweep_cost = self._swept - started
        return ready

    def _take_new(self) -> bool:
        """Move newly added tasks in (waiting for one when none is out); False once stopped."""
        block = not self._pending
        while True:
            try:
                item = self._new.get(block=block)
            except queue.Empty:
                return True
            if item is None:
                return False
            self._pending[item[0]] = item[1]
            block = False

    def _wait(self, refs: list[Any], count: int, timeout: float) -> list[Any]:
        ready: list[Any] = self._ray.wait(
            refs, num_returns=count, timeout=timeout, fetch_local=False
        )[0]
        return ready

    def _finish(self, ready: list[Any]) -> None:
        if not ready:
            return
        try:
            values: list[object] = self._ray.get(ready)
        except Exception:  # some task failed in Ray: read them one at a time
            values = [self._one(ref) for ref in ready]
        pending = self._pending
        for ref, value in zip(ready, values, strict=True):
            self._complete(pending.pop(ref), value)

    def _one(self, ref: Any) -> object:
        try:
            value: object = self._ray.get(ref)
        except Exception as exc:
            return exc
        return value


def outcome_state(run: TaskRun, blob: object) -> State[Any]:
    """Return the final state in a Ray task's reply (see ``_ray_engine``); replay its logs."""
    try:
        fields, run_count, run_name, records, _ = pickle.loads(blob)  # type: ignore[arg-type]
        state = state_from_fields(fields)
    except Exception as exc:
        error = SerializationError(
            f"the outcome of task run {run.name!r} cannot be unpickled in the flow process: {exc}"
        )
        return Failed(data=error, message=str(error))
    adopt_reply(run, run_count, run_name, records)
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
