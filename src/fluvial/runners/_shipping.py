"""Pickling task runs for the Dask and Ray runners, with what repeats pickled once.

A :class:`~fluvial.runners._remote.TaskPayload` is mostly the same from one run to the next:
the task, the flow run's snapshot and the settings. :class:`Packer` pickles those once per
runner (and flow run attempt) into blobs named by a digest, and each run's message carries
only its own part: run id, name, tags, arguments and ``wait_for``. On a worker,
:func:`unpack` unpickles each blob once per process (kept by digest) and rebuilds the payload.
"""

from __future__ import annotations

__all__ = ("Blob", "Packer", "unpack")

import hashlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._process_worker import dumps
from ._remote import Submission, TaskPayload

if TYPE_CHECKING:
    from .._runs import TaskRun
    from ..tasks import Task

# (digest, pickled bytes): the digest names the bytes in a worker's cache.
Blob = tuple[bytes, bytes]


def _blob(value: object) -> Blob:
    import cloudpickle

    data: bytes = cloudpickle.dumps(value)
    return hashlib.blake2b(data, digest_size=16).digest(), data


class Packer:
    """Pickles the runs one runner sends; tasks and contexts once each (flow-process side)."""

    def __init__(self) -> None:
        self._tasks: dict[int, tuple[object, Blob]] = {}
        self._context: tuple[tuple[object, ...], object, Blob] | None = None

    def task(self, task: Task[..., Any]) -> Blob:
        """Return *task* pickled (once per runner)."""
        cached = self._tasks.get(id(task))
        if cached is None or cached[0] is not task:
            cached = (task, _blob(task))
            self._tasks[id(task)] = cached
        return cached[1]

    def context(self, submission: Submission) -> Blob:
        """Return the flow-run snapshot and settings of *submission* pickled; once per flow
        run attempt and settings object (the snapshot does not change within an attempt)."""
        flow = submission.flow
        key = (None, 0) if flow is None else (flow.flow_run_id, flow.run_count)
        cached = self._context
        if cached is None or cached[0] != key or cached[1] is not submission.config:
            cached = (key, submission.config, _blob((flow, submission.config)))
            self._context = cached
        return cached[2]

    def message(
        self, run: TaskRun, task: Task[..., Any], parameters: dict[str, Any], wait_for: Any,
        submission: Submission,
    ) -> bytes:  # fmt: skip
        """Return what is particular to *run*, pickled (raises if it cannot be pickled): with
        the standard pickler where it can (several times faster), cloudpickle where needed."""
        name = run._name if task.task_run_name is None else None  # else named on the worker
        return dumps((run.id, name, run.tags, parameters, wait_for))

    def clear(self) -> None:
        """Forget the pickled tasks and context (when the runner exits)."""
        self._tasks.clear()
        self._context = None


_cache: dict[bytes, Any] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 256


def _cached(digest: bytes, load: Callable[[], bytes]) -> Any:
    value = _cache.get(digest)
    if value is None:
        import cloudpickle

        value = cloudpickle.loads(load())
        with _cache_lock:
            if len(_cache) >= _CACHE_SIZE:
                del _cache[next(iter(_cache))]
            _cache[digest] = value
    return value


def unpack(
    task: tuple[bytes, Callable[[], bytes]], context: Blob, message: bytes
) -> tuple[TaskPayload, Any]:
    """Rebuild a run's payload and ``wait_for`` on a worker (task and context kept by digest;
    the task's bytes are loaded only when this process has not seen it)."""
    import cloudpickle

    task_value = _cached(task[0], task[1])
    flow, config = _cached(context[0], lambda: context[1])
    run_id, name, tags, parameters, wait_for = cloudpickle.loads(message)
    return TaskPayload(task_value, run_id, name, tags, parameters, flow, config), wait_for
