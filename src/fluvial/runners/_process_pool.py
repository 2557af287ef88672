"""The flow-process side of a ProcessPoolTaskRunner: worker processes and the thread feeding them.

One dispatcher thread does all the talking: it sends each run to a worker over that worker's
pipe, reads the replies, and watches every worker's pipe and process sentinel in one
``multiprocessing.connection.wait``. Because it knows which runs each worker holds, a worker
that dies fails exactly the run it was running, as ``Crashed``, and is replaced.

Pipelining. A worker idles between sending a reply and receiving its next run, which for short
tasks is most of the time; and while the flow's own thread is busy submitting, the dispatcher
may wait for the GIL for a whole switch interval (5 ms). So runs are queued in a worker's pipe
behind the one it is running, as long as the runs it holds are expected to take at most
:data:`_QUEUE_AHEAD` seconds in all: their tasks have no timeout, and each run's expected time
is the recent run time of its task. A run queued behind a task that turns out to be slow
waits for it. A queued run has not started (a worker reads the next message only after
replying to the last), so when a worker dies, the runs queued behind the crashed one go back
to the front of the queue and run elsewhere.

No deadlock on full pipes: the dispatcher never blocks writing to a worker that may itself be
blocked writing a reply. It writes to an idle worker (which is reading), or queues a run only
when everything unread in that pipe fits in the socket's buffer; a large message to an idle
worker is written by a helper thread, so other workers' replies keep being read meanwhile.
"""

from __future__ import annotations

__all__ = ("ProcessPool",)

import os
import signal
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from ._process_worker import CONTEXT, TASK, dumps, worker_main

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ..states import State
    from .process import _Job

#: Expected seconds of work a worker may hold before another run is queued behind it: long
#: enough to bridge the dispatcher's waits for the GIL, short enough that a queued run does not
#: wait noticeably while another worker is free.
_QUEUE_AHEAD = 0.005
#: Runs a worker holds at most, however short.
_MAX_HELD = 64
#: Submission contexts a worker keeps; the oldest is dropped first.
_CONTEXTS_PER_WORKER = 16

Complete = Callable[["_Job", bytes], tuple["State[Any]", float]]
Crash = Callable[["_Job", str], None]


class _Worker:
    """One worker process, its pipe, and the runs it holds (the first one is running)."""

    __slots__ = (
        "conn",
        "contexts",
        "expected",
        "jobs",
        "process",
        "sender",
        "since",
        "tasks",
        "unknown",
        "unread",
    )

    def __init__(self, mp_context: Any) -> None:
        self.conn: Connection
        self.conn, child = mp_context.Pipe()
        self.process = mp_context.Process(target=worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.jobs: deque[_Job] = deque()
        self.unread = 0  # bytes sent for the runs it holds: at most this much sits in the pipe
        self.since = 0.0  # when the first run it holds started
        self.expected = 0.0  # expected seconds of the runs it holds whose time is known
        self.unknown = 0  # runs it holds of unknown length (new tasks, tasks with timeouts)
        self.tasks: set[int] = set()
        self.contexts: OrderedDict[int, None] = OrderedDict()
        self.sender: threading.Thread | None = None

    def send(self, frames: list[bytes]) -> None:
        """Write *frames*; a worker that died is noticed through its sentinel."""
        try:
            for frame in frames:
                self.conn.send_bytes(frame)
        except OSError:
            pass

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
        """End the worker process and close the pipe."""
        if self.process.is_alive():
            self.process.kill()
        if self.sender is not None:
            self.sender.join(timeout=5)  # its write fails now: the reader is gone
        self.conn.close()
        self.process.join(timeout=5)


class ProcessPool:
    """Up to *size* worker processes fed by one dispatcher thread."""

    def __init__(self, size: int, mp_context: Any, complete: Complete, crash: Crash) -> None:
        self.size = size
        self._mp_context = mp_context
        self._complete = complete
        self._crash = crash
        self._jobs: deque[_Job] = deque()
        self._workers: list[_Worker] = []
        self._recent: dict[int, float] = {}  # task key -> recent run time, seconds
        self._limit = 0  # bytes that fit unread in a pipe; measured on the first worker
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sleeping = False
        self._closing = False
        self._abandoned = False
        self._broken: str | None = None
        self._thread = threading.Thread(target=self._loop, name="fluvial-process-pool")
        self._thread.daemon = True
        self._thread.start()

    def put(self, job: _Job) -> None:
        """Queue *job* for the next free worker (from any thread)."""
        if self._broken is not None:
            self._crash(job, self._broken)
            return
        self._jobs.append(job)
        if self._sleeping:
            self._wake()

    def close(self, abandon: bool) -> None:
        """Stop the pool: after the queued runs finish, or at once when *abandon* is true."""
        self._closing = True
        self._abandoned = abandon
        self._wake()
        self._thread.join(timeout=5 if abandon else None)
        for worker in list(self._workers):
            worker.stop()
        self._workers.clear()
        if not self._thread.is_alive():  # else it may still wait on them: leave them open
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _wake(self) -> None:
        self._sleeping = False
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):  # already full of wake-ups, or closed
            pass

    # --- the dispatcher thread ----------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._abandoned:
                # From here on put() wakes the wait below; _dispatch sees every earlier run.
                self._sleeping = True
                self._dispatch()
                if self._closing and not self._jobs and not any(w.jobs for w in self._workers):
                    return
                self._wait()
        except BaseException as exc:  # never leave a future unfinished
            self._broken = f"the process runner failed: {exc!r}"
            self._fail_everything(self._broken)

    def _wait(self) -> None:
        owners: dict[Any, _Worker] = {}
        for worker in self._workers:
            owners[worker.conn] = owners[worker.process.sentinel] = worker
        ready = wait([self._wake_r, *owners], timeout=self._next_deadline())
        self._sleeping = False
        for obj in ready:
            if obj == self._wake_r:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            worker = owners[obj]
            if worker not in self._workers:
                continue  # already lost, through its other handle
            if obj is worker.conn:
                self._read(worker)
            else:
                self._lost(worker)
        self._enforce_deadlines()

    def _dispatch(self) -> None:
        while self._jobs and not self._abandoned:
            job = self._jobs[0]
            if job.future.done():  # cancelled, or finished by flow exit
                self._jobs.popleft()
                continue
            try:
                early = job.prepare()
                if early is not None:
                    self._jobs.popleft()
                    job.finish(early)
                    continue
                worker = self._choose(job)
                if worker is None:
                    return
                self._jobs.popleft()
                self._send(worker, job)
            except Exception as exc:
                if self._jobs and self._jobs[0] is job:
                    self._jobs.popleft()
                self._crash(job, f"the process runner failed: {exc!r}")

    def _choose(self, job: _Job) -> _Worker | None:
        for worker in self._workers:
            if not worker.jobs:
                return worker
        if len(self._workers) < self.size:
            return self._spawn()
        best: _Worker | None = None
        for worker in self._workers:
            if worker.unknown or worker.expected > _QUEUE_AHEAD or len(worker.jobs) >= _MAX_HELD:
                continue
            if best is None or worker.expected < best.expected:
                best = worker
        if best is None or (best.sender is not None and best.sender.is_alive()):
            return None
        size = best.unread + len(job.message) + self._definitions_size(best, job)
        return best if size <= self._limit else None

    def _definitions_size(self, worker: _Worker, job: _Job) -> int:
        size = 0
        if job.task_key not in worker.tasks:
            size += len(job.task_blob) + 64
        if job.context_key not in worker.contexts:
            size += len(job.context_blob()) + 64
        return size

    def _spawn(self) -> _Worker:
        worker = _Worker(self._mp_context)
        if not self._limit:
            self._limit = _pipe_capacity(worker.conn)
        self._workers.append(worker)
        return worker

    def _send(self, worker: _Worker, job: _Job) -> None:
        frames = []
        if job.task_key not in worker.tasks:
            worker.tasks.add(job.task_key)
            frames.append(dumps((TASK, job.task_key, job.task_blob)))
        if job.context_key in worker.contexts:
            worker.contexts.move_to_end(job.context_key)
        else:
            forget = None
            if len(worker.contexts) >= _CONTEXTS_PER_WORKER:
                forget = worker.contexts.popitem(last=False)[0]
            worker.contexts[job.context_key] = None
            frames.append(dumps((CONTEXT, job.context_key, job.context_blob(), forget)))
        frames.append(job.message)
        job.wire = sum(len(frame) for frame in frames)
        idle = not worker.jobs
        worker.jobs.append(job)
        worker.unread += job.wire
        job.expected = None if job.limit is not None else self._recent.get(job.task_key)
        if job.expected is None:
            worker.unknown += 1
        else:
            worker.expected += job.expected
        if idle:
            job.started = True
            worker.since = time.monotonic()
        if idle and job.wire > self._limit:
            # The worker reads it all, but that may take a while: keep reading replies meanwhile.
            worker.sender = threading.Thread(target=worker.send, args=(frames,), daemon=True)
            worker.sender.start()
        else:
            worker.send(frames)

    def _read(self, worker: _Worker) -> None:
        """Take every reply waiting in *worker*'s pipe; a closed pipe means the worker is gone."""
        while True:
            try:
                if not worker.conn.poll():
                    return
                data = worker.conn.recv_bytes()
            except (EOFError, OSError):
                self._lost(worker)
                return
            self._reply(worker, data)
            if worker not in self._workers:
                return

    def _reply(self, worker: _Worker, data: bytes) -> None:
        job = worker.jobs.popleft()
        worker.unread -= job.wire
        if job.expected is None:
            worker.unknown -= 1
        elif worker.jobs:
            worker.expected -= job.expected
        else:
            worker.expected = 0.0  # no rounding left over
        state, seconds = self._complete(job, data)
        previous = self._recent.get(job.task_key, 0.0)
        self._recent[job.task_key] = max(seconds, previous * 0.5)  # slower to trust again
        if worker.jobs:
            worker.since = time.monotonic()
            worker.jobs[0].started = True
        if state.name == "TimedOut":
            # The timed-out code may still be running on an abandoned thread: end the worker.
            self._retire(worker)

    def _lost(self, worker: _Worker, reason: str | None = None) -> None:
        """Handle a worker that died or was ended: crash its run, requeue those behind it."""
        try:
            while worker.conn.poll():  # replies it sent before dying are still in the pipe
                self._reply(worker, worker.conn.recv_bytes())
        except (EOFError, OSError):
            pass
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        worker.stop()
        if worker.jobs:
            running = worker.jobs.popleft()
            why = reason or worker.describe_death()
            self._crash(
                running,
                f"the worker process running task run {running.run.name!r} died ({why}) "
                "before the run finished",
            )
        self._requeue(worker)

    def _retire(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        worker.stop()
        self._requeue(worker)

    def _requeue(self, worker: _Worker) -> None:
        # Runs queued behind the running one never started: they run on another worker.
        for job in reversed(worker.jobs):
            job.started = False
            self._jobs.appendleft(job)
        worker.jobs.clear()

    def _next_deadline(self) -> float | None:
        soonest: float | None = None
        now = time.monotonic()
        for worker in self._workers:
            if worker.jobs and worker.jobs[0].limit is not None:
                left = max(0.0, worker.since + worker.jobs[0].limit - now)
                soonest = left if soonest is None else min(soonest, left)
        return soonest

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            limit = worker.jobs[0].limit if worker.jobs else None
            if limit is not None and now >= worker.since + limit:
                # Stuck past every time limit of its task (in C code holding the GIL, say).
                worker.process.kill()
                self._lost(worker, f"ended after {limit:g}s, past the task's time limits")

    def _fail_everything(self, reason: str) -> None:
        for worker in self._workers:
            for job in worker.jobs:
                self._crash(job, reason)
        while self._jobs:  # other threads may still be adding to it
            self._crash(self._jobs.popleft(), reason)


def _pipe_capacity(conn: Connection) -> int:
    """Return how many bytes can sit unread in *conn*'s pipe without a write blocking."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    except OSError:
        return 0  # not a socket: never queue runs behind others
    # A quarter: the kernel counts its own bookkeeping per write against the same buffer.
    return int(buffer) // 4
