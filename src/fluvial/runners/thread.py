"""The default runner: task runs on a bounded pool of threads in this process.

A run is queued only when its upstream futures are done (a done-callback on the last one
dispatches it), and a worker that must wait anyway (on a future, or before a retry) steps aside
so another thread can take its place. A bounded pool is therefore safe for dependency chains,
tasks that submit tasks, and map-then-reduce; Prefect makes its pool unbounded instead.

Async tasks run on one long-lived event loop per worker thread, not a new loop per task.
"""

from __future__ import annotations

__all__ = ("ConcurrentTaskRunner", "ThreadPoolTaskRunner")

import contextvars
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, Self

from .._blocking import set_current_pool
from ..engine.lifecycle import crash_state
from ..engine.resolve import needs_resolution, unfinished_upstream
from ..engine.task_engine import new_task_run, run_task_async, run_task_sync
from ..futures import Future
from ..states import Cancelled, State, StateDetails
from .base import TaskRunner

if TYPE_CHECKING:
    import asyncio

    from .._runs import TaskRun
    from ..tasks import Task


class _WorkerPool:
    """Threads that take jobs from one queue; ``max_workers`` of them busy at most."""

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self._name = name
        self._queue: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        # One token per finished job of a worker now waiting for the next: deque append/pop
        # are atomic, and cost a tenth of threading.Semaphore (a Python-level Condition).
        self._idle: deque[None] = deque()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stepped_aside = 0
        self._closed = False
        self._numbers = itertools.count()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue *job*; start a thread when none is idle and the limit allows."""
        self._queue.put(job)
        try:
            self._idle.pop()
        except IndexError:
            pass
        else:
            return
        with self._lock:
            self._grow()

    def _grow(self) -> None:
        # Called with the lock held. After shutdown began no thread may start: it would take
        # a stop marker meant for one of the threads shutdown is joining.
        if self._closed:
            return
        if len(self._threads) - self._stepped_aside < self.max_workers:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{next(self._numbers)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def release_slot(self) -> None:
        """The calling worker is about to block: let another thread take its place."""
        with self._lock:
            self._stepped_aside += 1
            if not self._queue.empty():
                self._grow()

    def reacquire_slot(self) -> None:
        """The calling worker is working again."""
        with self._lock:
            self._stepped_aside -= 1

    def _work(self) -> None:
        set_current_pool(self)
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                job()
                del job
                if self._retire_if_surplus():
                    return
                self._idle.append(None)
        finally:
            set_current_pool(None)
            _close_thread_loop()

    def _retire_if_surplus(self) -> bool:
        # Threads started while others stepped aside are surplus once those resume: the first
        # to finish a job leaves, so at most max_workers take new work.
        if len(self._threads) - self._stepped_aside <= self.max_workers:
            return False  # the common case, decided without the lock
        with self._lock:
            if len(self._threads) - self._stepped_aside > self.max_workers:
                self._threads.remove(threading.current_thread())
                return True
            return False

    def drain(self) -> list[Callable[[], None]]:
        """Remove and return every job not yet started."""
        jobs = []
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                jobs.append(job)
        return jobs

    def shutdown(self, wait: bool) -> None:
        """Stop the workers once the queue is empty; join them when *wait*."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


_thread_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    import asyncio

    loop: asyncio.AbstractEventLoop | None = getattr(_thread_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_local.loop = loop
    return loop


def _close_thread_loop() -> None:
    loop = getattr(_thread_local, "loop", None)
    if loop is not None and not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    _thread_local.loop = None


class _Job:
    """One submitted task run, waiting for its upstream futures or a worker."""

    __slots__ = ("context", "future", "parameters", "run", "runner", "started", "task", "wait_for")

    def __init__(
        self,
        runner: ThreadPoolTaskRunner,
        task: Task[..., Any],
        run: TaskRun,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        future: Future[Any],
    ) -> None:
        self.runner = runner
        self.task = task
        self.run = run
        self.parameters = parameters
        self.wait_for = wait_for
        self.future = future
        self.context = contextvars.copy_context()
        self.started = False

    def __call__(self) -> None:
        if self.started:
            return
        self.started = True
        try:
            state = self.context.run(self._execute)
        except BaseException as exc:  # a worker thread must survive SystemExit from a task
            state = crash_state(exc, StateDetails(task_run_id=self.run.id))
            self.run.set_state(state)
        self.runner._finished(self.future, state)

    def _execute(self) -> State[Any]:
        if self.task.isasync:
            coro = run_task_async(self.task, self.parameters, self.wait_for, "state", self.run)
            state: State[Any] = _thread_loop().run_until_complete(coro)
            return state
        result: State[Any] = run_task_sync(
            self.task, self.parameters, self.wait_for, "state", self.run
        )
        return result

    def cancel(self) -> None:
        """Finish the run as Cancelled without running it."""
        if self.started:
            return
        self.started = True
        state = Cancelled(
            message="The flow run ended before this task run started.",
            state_details=StateDetails(task_run_id=self.run.id),
        )
        self.run.set_state(state)
        self.runner._finished(self.future, state)


class ThreadPoolTaskRunner(TaskRunner):
    """Run tasks on up to *max_workers* threads of this process (the default runner).

    Args:
        max_workers: threads busy at once; default the ``thread_pool_max_workers`` setting
            (``FLUVIAL_THREAD_POOL_MAX_WORKERS``, 64): generous, since tasks that wait on I/O
            are common, and bounded, since threads are not free.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._pool: _WorkerPool | None = None
        self._pending: dict[Future[Any], _Job] = {}
        self._lock = threading.Lock()

    def _effective_max_workers(self) -> int:
        if self.max_workers is not None:
            return self.max_workers
        from .._config import run_config

        return run_config().thread_pool_max_workers

    def duplicate(self) -> Self:
        """Return an unstarted runner with the same ``max_workers``."""
        return type(self)(max_workers=self.max_workers)

    def submit(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> Future[Any]:
        """Queue a run of *task*; it starts when its upstream futures are done."""
        self._require_started()
        run = new_task_run(task, parameters)
        future: Future[Any] = Future(run)
        job = _Job(self, task, run, parameters, wait_for, future)
        # Plain dict operations are atomic under the GIL: no lock on this hot path.
        self._pending[future] = job
        upstream = (
            unfinished_upstream(parameters, wait_for)
            if (parameters or wait_for) and needs_resolution(parameters, wait_for)
            else None
        )
        pool = self._pool
        if upstream:
            _when_all_done(upstream, lambda: self._dispatch(job))
        elif pool is not None and self._started:
            pool.submit(job)  # _dispatch(job) for a started pool: a call fewer per task
        else:
            self._dispatch(job)
        return future

    def _dispatch(self, job: _Job) -> None:
        if not self._started:
            job.cancel()
            return
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = _WorkerPool(self._effective_max_workers(), "fluvial-worker")
                pool = self._pool
        pool.submit(job)

    def _finished(self, future: Future[Any], state: State[Any]) -> None:
        self._pending.pop(future, None)
        future.set_state(state)

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of runs that have not finished."""
        return list(self._pending)

    def __exit__(self, exc_type: object = None, *rest: object) -> None:
        """Stop the pool; after a crash, cancel runs that have not started."""
        pool, self._pool = self._pool, None
        super().__exit__(exc_type, *rest)
        if exc_type is not None:
            if pool is not None:
                pool.drain()
            jobs = list(self._pending.values())
            for job in jobs:
                job.cancel()
        if pool is not None:
            pool.shutdown(wait=exc_type is None)

    def __getstate__(self) -> dict[str, Any]:
        return {"max_workers": self.max_workers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_workers"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers})"


def _when_all_done(futures: list[Future[Any]], then: Callable[[], None]) -> None:
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(_: Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            then()

    for future in futures:
        future.add_done_callback(one_done)


#: Prefect's older name for the thread runner.
ConcurrentTaskRunner = ThreadPoolTaskRunner
