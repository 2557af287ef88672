"""Task runs in worker processes on this machine, for CPU-bound work the GIL would serialise.

Each worker is a spawned process that runs one task run at a time; a thread in the flow process
feeds it over a pipe and watches it. Because the pool knows which run each worker holds, a
worker that dies (``os._exit``, a segfault, SIGKILL from the OOM killer) fails exactly that run
as ``Crashed`` and is replaced; the other runs carry on. Python's ProcessPoolExecutor cannot do
this: one dead worker breaks the whole pool.

Arguments are resolved in the flow process before dispatch (a task starts only when its inputs
are done) and cloudpickled; the task object itself is pickled once per runner and sent to each
worker once. The engine runs in the worker (see :mod:`fluvial.runners._remote`).
"""

from __future__ import annotations

__all__ = ("ProcessPoolTaskRunner",)

import hashlib
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Self

from ..engine.resolve import needs_resolution, resolve_parameters, unfinished_upstream
from ..engine.task_engine import new_task_run
from ..exceptions import SerializationError, UpstreamTaskError
from ..futures import Future
from ..states import Cancelled, Failed, NotReady, State
from ._remote import (
    RemoteOutcome,
    capture_submission,
    crashed_outcome,
    make_payload,
    pickling_error,
    replay_outcome,
    run_payload,
)
from .base import TaskRunner
from .thread import _when_all_done

if TYPE_CHECKING:
    from .._runs import TaskRun
    from ..tasks import Task

# How long past a task's own time limits the flow process waits before ending a stuck worker:
# room for cache lookups, lock waits and persisting the result.
_HARD_TIMEOUT_GRACE = 30.0


def _worker_main(conn: Connection) -> None:
    """Run payloads sent by the flow process until the pipe closes (in the worker process)."""
    import cloudpickle

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the flow process's to handle
    tasks: dict[bytes, Any] = {}
    while True:
        try:
            digest, blob, payload = cloudpickle.loads(conn.recv_bytes())
        except EOFError:
            return
        if blob is not None:
            tasks[digest] = cloudpickle.loads(blob)
        payload.task = tasks[digest]
        outcome = run_payload(payload)
        try:
            data = cloudpickle.dumps(outcome)
        except Exception as exc:  # the state passed _portable, but the logs may not
            outcome.logs = []
            outcome.state = Failed(data=SerializationError(str(exc)), message=str(exc))
            data = cloudpickle.dumps(outcome)
        conn.send_bytes(data)


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, context: Any) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.known: set[bytes] = set()

    def run(self, message: bytes, limit: float | None) -> bytes | None:
        """Send one run and wait for its outcome; None if the worker died or was ended."""
        ready: list[Any] = []
        try:
            self.conn.send_bytes(message)
            ready = wait([self.conn, self.process.sentinel], timeout=limit)
            if self.conn in ready:
                data: bytes = self.conn.recv_bytes()
                return data
        except (EOFError, OSError):
            pass
        if not ready and self.process.is_alive():  # past the hard timeout: end the stuck worker
            self.stop()
        return None

    def describe_death(self) -> str:
        """Say how the worker ended."""
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def stop(self) -> None:
        """End the worker process."""
        try:
            self.conn.close()
        except OSError:
            pass
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class _Job:
    """One submitted run on its way to a worker."""

    __slots__ = ("future", "parameters", "run", "started", "submission", "task", "wait_for")

    def __init__(
        self,
        task: Task[..., Any],
        run: TaskRun,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        future: Future[Any],
    ) -> None:
        self.submission = capture_submission()  # in the submitting thread, for its context
        self.started = False
        self.task = task
        self.run = run
        self.parameters = parameters
        self.wait_for = wait_for
        self.future = future


class ProcessPoolTaskRunner(TaskRunner):
    """Run tasks in up to *max_workers* worker processes (default: the number of CPUs).

    Args:
        max_workers: worker processes; default ``os.cpu_count()``.
        mp_context: the multiprocessing start method, "spawn" (default) or "forkserver".
    """

    def __init__(self, max_workers: int | None = None, mp_context: str = "spawn") -> None:
        super().__init__()
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self.mp_context = mp_context
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._feeders: list[threading.Thread] = []
        self._workers: list[_Worker] = []
        self._pending: dict[Future[Any], _Job] = {}
        self._blobs: dict[int, tuple[Any, bytes, bytes]] = {}
        self._lock = threading.Lock()

    def duplicate(self) -> Self:
        """Return an unstarted runner with the same configuration."""
        return type(self)(self.max_workers, self.mp_context)

    def __enter__(self) -> Self:
        super().__enter__()
        context = multiprocessing.get_context(self.mp_context)
        for number in range(self.max_workers or os.cpu_count() or 1):
            thread = threading.Thread(
                target=self._feed,
                args=(context,),
                name=f"fluvial-process-feeder-{number}",
                daemon=True,
            )
            self._feeders.append(thread)
            thread.start()
        return self

    def __exit__(self, exc_type: object = None, *rest: object) -> None:
        """Stop the workers; after a crash, cancel runs that have not started."""
        super().__exit__(exc_type, *rest)
        if exc_type is not None:
            self._abandon()
        for _ in self._feeders:
            self._queue.put(None)
        for thread in self._feeders:
            thread.join(timeout=None if exc_type is None else 5)
        for worker in list(self._workers):
            worker.stop()
        self._feeders.clear()
        self._workers.clear()

    def _abandon(self) -> None:
        # The flow run is over (crash, cancel, timeout): runs still queued are cancelled, runs
        # on workers crash with them, and the workers are ended at once so no feeder waits.
        for job in list(self._pending.values()):
            if job.started:
                state = crashed_outcome(job.run, "the flow run ended while this task ran")
            else:
                state = Cancelled(message="The flow run ended before this task run started.")
            self._finish(job, state)
        for worker in list(self._workers):
            worker.stop()

    def submit(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> Future[Any]:
        """Queue a run of *task*; it goes to a worker once its upstream futures are done."""
        if not self._started:
            raise RuntimeError("The task runner must be started (entered) before submitting work")
        run = new_task_run(task, parameters)
        future: Future[Any] = Future(run)
        job = _Job(task, run, parameters, wait_for, future)
        self._pending[future] = job
        upstream = (
            unfinished_upstream(parameters, wait_for)
            if needs_resolution(parameters, wait_for)
            else None
        )
        if upstream:
            _when_all_done(upstream, lambda: self._queue.put(job))
        else:
            self._queue.put(job)
        return future

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of runs that have not finished."""
        return list(self._pending)

    def _feed(self, context: Any) -> None:
        worker: _Worker | None = None
        while True:
            job = self._queue.get()
            if job is None:
                break
            if job.future.done():
                continue
            try:
                worker = self._run_job(job, worker, context)
            except BaseException as exc:  # never leave a future unfinished
                self._finish(
                    job, crashed_outcome(job.run, f"the process runner failed: {exc}", exc)
                )

    def _run_job(self, job: _Job, worker: _Worker | None, context: Any) -> _Worker | None:
        if worker is None or not worker.process.is_alive():
            if worker is not None:
                self._forget(worker)
            worker = self._new_worker(context)
        message = self._message(job, worker)
        if isinstance(message, State):
            self._finish(job, message)
            return worker
        job.started = True
        data = worker.run(message, _hard_limit(job.task))
        if data is None:
            reason = worker.describe_death()
            self._forget(worker)
            self._finish(
                job,
                crashed_outcome(
                    job.run,
                    f"the worker process running task run {job.run.name!r} died "
                    f"({reason}) before the run finished",
                ),
            )
            return None
        import cloudpickle

        outcome: RemoteOutcome = cloudpickle.loads(data)
        state = replay_outcome(job.run, outcome)
        self._finish(job, state)
        if state.name == "TimedOut":
            # The timed-out code may still be running on an abandoned thread: recycle the worker.
            worker.stop()
            self._forget(worker)
            return None
        return worker

    def _message(self, job: _Job, worker: _Worker) -> bytes | State[Any]:
        import cloudpickle

        try:
            parameters = resolve_parameters(job.parameters, job.wait_for)
        except UpstreamTaskError as exc:
            return NotReady(message=str(exc))
        try:
            task_digest, blob = self._task_blob(job.task)
        except Exception as exc:
            error = SerializationError(
                f"task {job.task.name!r} cannot be pickled to send it to a worker process: {exc}"
            )
            return Failed(data=error, message=str(error))
        payload = make_payload(job.task, job.run, parameters, job.submission)
        payload.task = None  # type: ignore[assignment]  # sent separately, once per worker
        send_blob = None if task_digest in worker.known else blob
        try:
            message: bytes = cloudpickle.dumps((task_digest, send_blob, payload))
        except Exception as exc:
            failure = pickling_error(job.task, parameters, exc, "a worker process")
            return Failed(data=failure, message=str(failure))
        worker.known.add(task_digest)
        return message

    def _task_blob(self, task: Task[..., Any]) -> tuple[bytes, bytes]:
        import cloudpickle

        cached = self._blobs.get(id(task))
        if cached is None or cached[0] is not task:
            blob = cloudpickle.dumps(task)
            cached = (task, hashlib.blake2b(blob, digest_size=16).digest(), blob)
            self._blobs[id(task)] = cached
        return cached[1], cached[2]

    def _new_worker(self, context: Any) -> _Worker:
        worker = _Worker(context)
        with self._lock:
            self._workers.append(worker)
        return worker

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)

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
