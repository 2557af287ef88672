"""Task runs in worker processes on this machine, for CPU-bound work the GIL would serialise.

Workers are spawned processes fed by one dispatcher thread of the flow process (see
:mod:`fluvial.runners._process_pool`). Because the pool knows which run each worker holds, a
worker that dies (``os._exit``, a segfault, SIGKILL from the OOM killer) fails exactly the run
it was running, as ``Crashed``, and is replaced; the other runs carry on. Python's
ProcessPoolExecutor cannot do this: one dead worker breaks the whole pool.

Arguments are resolved in the flow process before dispatch (a task starts only when its inputs
are done) and pickled; the task object, the flow run's context and the settings are pickled
once per runner and sent to each worker once. The engine runs in the worker (see
:mod:`fluvial.runners._process_worker`).
"""

from __future__ import annotations

__all__ = ("ProcessPoolTaskRunner",)

import itertools
import multiprocessing
import os
import pickle
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from .._config import run_config
from ..context import _flow_run_context
from ..engine.resolve import needs_resolution, resolve_parameters, unfinished_upstream
from ..engine.task_engine import new_task_run
from ..exceptions import SerializationError, UpstreamTaskError
from ..futures import Future
from ..states import Cancelled, Failed, NotReady, State
from ._process_pool import ProcessPool
from ._process_worker import RUN, adopt_reply, dumps, state_from_fields
from ._remote import Submission, capture_submission, crashed_outcome, pickling_error
from .base import NOT_STARTED, TaskRunner
from .thread import _when_all_done

if TYPE_CHECKING:
    from .._runs import TaskRun
    from ..tasks import Task

# How long past a task's own time limits the flow process waits before ending a stuck worker:
# room for cache lookups, lock waits and persisting the result.
_HARD_TIMEOUT_GRACE = 30.0
_START_METHODS = ("spawn", "forkserver")


class _TaskEntry:
    """A task as the runner sends it: its key, pickled form and hard time limit."""

    __slots__ = ("blob", "key", "limit", "task")

    def __init__(self, task: Task[..., Any], key: int) -> None:
        import cloudpickle

        self.task = task
        self.key = key
        self.blob: bytes = cloudpickle.dumps(task)
        self.limit = _hard_limit(task)


class _Job:
    """One submitted run on its way to a worker."""

    __slots__ = (
        "context_key",
        "expected",
        "future",
        "limit",
        "message",
        "parameters",
        "run",
        "runner",
        "started",
        "submission",
        "task",
        "task_blob",
        "task_key",
        "wait_for",
        "wire",
    )

    def __init__(
        self,
        runner: ProcessPoolTaskRunner,
        task: Task[..., Any],
        run: TaskRun,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        future: Future[Any],
    ) -> None:
        self.runner = runner
        # Captured in the submitting thread, for its flow run context and settings.
        self.context_key, self.submission = runner._submission()
        self.started = False  # running on a worker (not just queued in its pipe)
        self.task = task
        self.run = run
        self.parameters = parameters
        self.wait_for = wait_for
        self.future = future
        self.message = b""
        self.task_key = 0
        self.task_blob = b""
        self.limit: float | None = None
        self.wire = 0  # bytes sent to the worker for this run
        self.expected: float | None = None  # seconds it should take, when the pool knows

    def prepare(self) -> State[Any] | None:
        """Resolve the arguments and pickle the run; a final state instead if it cannot go."""
        if self.message:
            return None
        try:
            parameters = resolve_parameters(self.parameters, self.wait_for)
        except UpstreamTaskError as exc:
            return NotReady(message=str(exc))
        entry = self.runner._task_entry(self.task)
        if isinstance(entry, State):
            return entry
        self.task_key, self.task_blob, self.limit = entry.key, entry.blob, entry.limit
        context = self.runner._context_blob(self.context_key, self.submission)
        if isinstance(context, State):
            return context
        run = self.run
        message = (RUN, entry.key, self.context_key, run.id.bytes, run._name, run.tags, parameters)
        try:
            self.message = dumps(message)
        except Exception as exc:
            failure = pickling_error(self.task, parameters, exc, "a worker process")
            return Failed(data=failure, message=str(failure))
        return None

    def context_blob(self) -> bytes:
        """Return the pickled submission context (:meth:`prepare` checked that it pickles)."""
        blob = self.runner._context_blob(self.context_key, self.submission)
        if isinstance(blob, State):
            raise SerializationError(str(blob.message))
        return blob

    def finish(self, state: State[Any]) -> None:
        """Record the final state and resolve the future."""
        self.runner._finish(self, state)


class ProcessPoolTaskRunner(TaskRunner):
    """Run tasks in up to *max_workers* worker processes.

    Args:
        max_workers: worker processes at most; default the ``process_pool_max_workers``
            setting (``FLUVIAL_PROCESS_POOL_MAX_WORKERS``), else the number of CPUs.
        mp_context: the multiprocessing start method, "spawn" (default) or "forkserver".
    """

    def __init__(self, max_workers: int | None = None, mp_context: str = "spawn") -> None:
        super().__init__()
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        if mp_context not in _START_METHODS:
            raise ValueError(
                f"mp_context must be one of {', '.join(map(repr, _START_METHODS))}, got "
                f"{mp_context!r}: workers must not inherit the flow process's threads (fork)"
            )
        self.max_workers = max_workers
        self.mp_context = mp_context
        self._pool: ProcessPool | None = None
        self._pending: dict[Future[Any], _Job] = {}
        self._keys = itertools.count(1)
        self._tasks: dict[int, _TaskEntry] = {}
        self._contexts: dict[int, bytes | State[Any]] = {}
        self._last_context: tuple[Any, ...] = ()

    def duplicate(self) -> Self:
        """Return an unstarted runner with the same configuration."""
        return type(self)(self.max_workers, self.mp_context)

    def __enter__(self) -> Self:
        super().__enter__()
        size = self.max_workers or run_config().process_pool_max_workers or os.cpu_count() or 1
        context = multiprocessing.get_context(self.mp_context)
        self._pool = ProcessPool(size, context, self._complete, self._crash)
        return self

    def __exit__(self, exc_type: object = None, *rest: object) -> None:
        """Stop the workers; after a crash, cancel runs that have not started."""
        super().__exit__(exc_type, *rest)
        pool, self._pool = self._pool, None
        if exc_type is not None:
            self._abandon()
        if pool is not None:
            pool.close(abandon=exc_type is not None)
        self._tasks.clear()
        self._contexts.clear()
        self._last_context = ()

    def _abandon(self) -> None:
        # The flow run is over (crash, cancel, timeout): runs still queued are cancelled, runs
        # on workers crash with them, and the workers are ended at once.
        for job in list(self._pending.values()):
            if job.started:
                state = crashed_outcome(job.run, "the flow run ended while this task ran")
            else:
                state = Cancelled(message="The flow run ended before this task run started.")
            self._finish(job, state)

    @property
    def size(self) -> int | None:
        """The number of worker processes the started runner may use, or None if not started."""
        return None if self._pool is None else self._pool.size

    def submit(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> Future[Any]:
        """Queue a run of *task*; it goes to a worker once its upstream futures are done."""
        pool = self._pool
        if pool is None:
            raise RuntimeError(NOT_STARTED)
        run = new_task_run(task, parameters)
        future: Future[Any] = Future(run)
        job = _Job(self, task, run, parameters, wait_for, future)
        self._pending[future] = job
        upstream = (
            unfinished_upstream(parameters, wait_for)
            if needs_resolution(parameters, wait_for)
            else None
        )
        if upstream:
            _when_all_done(upstream, lambda: pool.put(job))
        else:
            pool.put(job)
        return future

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of runs that have not finished."""
        return list(self._pending)

    # --- used by jobs and the pool -----------------------------------------------------------

    def _submission(self) -> tuple[int, Submission]:
        # Runs submitted from the same flow run attempt with the same settings share one
        # context, pickled and sent to each worker once.
        flow_ctx = _flow_run_context.get()
        config = run_config()
        attempt = flow_ctx.flow_run.run_count if flow_ctx is not None else 0
        last = self._last_context
        if last and last[0] is flow_ctx and last[1] == attempt and last[2] is config:
            return last[3], last[4]
        key, submission = next(self._keys), capture_submission()
        self._last_context = (flow_ctx, attempt, config, key, submission)
        return key, submission

    def _context_blob(self, key: int, submission: Submission) -> bytes | State[Any]:
        blob = self._contexts.get(key)
        if blob is None:
            import cloudpickle

            try:
                blob = cloudpickle.dumps(submission)
            except Exception as exc:
                error = SerializationError(
                    f"the flow run's context (its parameters, result storage or settings) "
                    f"cannot be pickled to send it to a worker process: {exc}"
                )
                blob = Failed(data=error, message=str(error))
            if len(self._contexts) >= 64:  # a job whose context was dropped pickles it again
                self._contexts.pop(next(iter(self._contexts)))
            self._contexts[key] = blob
        return blob

    def _task_entry(self, task: Task[..., Any]) -> _TaskEntry | State[Any]:
        entry = self._tasks.get(id(task))
        if entry is None or entry.task is not task:
            try:
                entry = _TaskEntry(task, next(self._keys))
            except Exception as exc:
                error = SerializationError(
                    f"task {task.name!r} cannot be pickled to send it to a worker process: {exc}"
                )
                return Failed(data=error, message=str(error))
            self._tasks[id(task)] = entry
        return entry

    def _complete(self, job: _Job, data: bytes) -> tuple[State[Any], float]:
        try:
            fields, run_count, run_name, records, seconds = pickle.loads(data)
            state = state_from_fields(fields)
        except Exception as exc:
            error = SerializationError(
                f"task {job.task.name!r}: the result of run {job.run.name!r} could not be "
                f"unpickled in the flow process: {type(exc).__name__}: {exc}"
            )
            state, run_count, run_name, records, seconds = Failed(data=error), 0, None, [], 0.0
        adopt_reply(job.run, run_count, run_name, records)
        self._finish(job, state)
        return state, seconds

    def _crash(self, job: _Job, reason: str) -> None:
        self._finish(job, crashed_outcome(job.run, reason))

    def _finish(self, job: _Job, state: State[Any]) -> None:
        if job.future.done():
            return
        job.run.finish(state)
        self._pending.pop(job.future, None)
        job.future.set_state(state)

    def __getstate__(self) -> dict[str, Any]:
        return {"max_workers": self.max_workers, "mp_context": self.mp_context}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_workers"], state["mp_context"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self.max_workers})"


def _hard_limit(task: Task[..., Any]) -> float | None:
    """Return the seconds after which a worker running *task* is stuck, or None for no limit.

    The task's engine enforces ``timeout_seconds`` itself; this only catches a worker that is
    wedged (in C code holding the GIL, say), allowing every attempt its full timeout and the
    longest possible retry delays.
    """
    timeout = task.timeout_seconds
    if timeout is None:
        return None
    from ..engine.retries import retry_delay

    jitter = 1.0 + (task.retry_jitter_factor or 0.0)
    delays = sum(retry_delay(task._retry_delays, n) for n in range(1, task.retries + 1))
    return timeout * (task.retries + 1) + delays * jitter + _HARD_TIMEOUT_GRACE
