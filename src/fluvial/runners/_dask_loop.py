"""The Dask runner's work on the client's event loop: submitting runs, watching them, gathering.

Every call of a synchronous ``distributed.Client`` from another thread wakes its event loop,
and each wake-up makes the calling thread wait for the GIL. So threads of the flow process
hand the loop work in batches: :meth:`LoopSide.send` queues a run and wakes the loop only when
the queue was empty; on the loop, one callback submits every queued run, an ``as_completed``
watches their Dask futures, finished outcomes are gathered in one ``gather`` per batch (while
many runs are out, the loop lets a batch grow for up to 20 ms: each ``gather`` costs the
scheduler and the workers a round trip, whatever its size; a lone run is gathered at once) and
handed to the runner's collector thread in one piece, and finished Dask futures are dropped on
the loop (which is where Dask releases them) in batches too.
"""

from __future__ import annotations

__all__ = ("Job", "LoopSide")

import asyncio
import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from ..futures import Future
from ._dask_worker import run_on_worker
from ._ray_engine import outcome_reply
from ._remote import Submission, capture_submission

if TYPE_CHECKING:
    import distributed

    from .._runs import TaskRun
    from ..tasks import Task

_logger = logging.getLogger("fluvial.runners")
_LINGER_ABOVE = 8
_LINGER_STEPS = 10
_LINGER_STEP = 0.002
_BATCH = 64


class Job:
    """One submitted run: waiting for upstreams of another runner, on the cluster, or done."""

    __slots__ = (
        "annotations",
        "attempt",
        "call",
        "dask_future",
        "finished",
        "future",
        "parameters",
        "run",
        "sent",
        "submission",
        "task",
        "upstream",
        "wait_for",
    )

    def __init__(
        self,
        task: Task[..., Any],
        run: TaskRun,
        parameters: dict[str, Any],
        wait_for: list[Any] | None,
        annotations: dict[str, Any],
    ) -> None:
        self.task = task
        self.run = run
        self.parameters = parameters
        self.wait_for = wait_for
        self.annotations = annotations
        self.future: Future[Any] = Future(run)
        self.submission: Submission = capture_submission()  # in the submitting thread
        self.call: tuple[Any, ...] = ()  # run_on_worker's arguments but the upstream outcomes
        self.sent = False  # queued for (or on) the cluster
        self.dask_future: distributed.Future[bytes] | None = None
        # The runs of this runner whose outcomes this one takes, then their Dask futures.
        self.upstream: list[Any] = []
        self.attempt = 0
        self.finished = False


# What LoopSide delivers per finished job: its outcome, an exception (the Dask task failed or
# its result could not be read), None (cancelled), or DEFER (send it again once its upstream
# runs are done: an upstream's Dask future failed before this run reached the cluster).
DEFER = object()
Delivery = list[tuple[Job, object]]


class LoopSide:
    """Submits, watches and gathers the runner's Dask futures on the client's event loop."""

    def __init__(self, client: distributed.Client, deliver: Callable[[Delivery], None]) -> None:
        self._client = client
        self._loop: Any = client.loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._to_send: list[Job] = []
        self._to_release: list[object] = []
        self._watching: dict[object, Job] = {}  # Dask key -> job, touched on the loop only
        self._completed: Any = None  # a distributed.as_completed, made on the loop
        self._consumer: asyncio.Future[None] | None = None

    def send(self, job: Job) -> None:
        """Queue *job* (its ``call`` built) for the cluster; safe from any thread."""
        job.sent = True
        with self._lock:
            wake = not self._to_send
            self._to_send.append(job)
        if wake:
            self._loop.add_callback(self._submit_queued)

    def release(self, futures: list[object]) -> None:
        """Drop these finished Dask futures on the loop, so Dask frees their results."""
        with self._lock:
            wake = not self._to_release
            self._to_release.extend(futures)
        if wake:
            self._loop.add_callback(self._drop_released)

    def _drop_released(self) -> None:
        with self._lock:
            self._to_release = []  # the last references: Future.__del__ releases each here

    def _submit_queued(self) -> None:
        from distributed import as_completed

        with self._lock:
            jobs, self._to_send = self._to_send, []
        if self._completed is None:
            self._completed = as_completed(loop=self._loop, raise_errors=False)  # type: ignore[no-untyped-call]
        deferred: Delivery = []
        for job in jobs:
            if job.finished:
                continue
            try:
                self._submit(job)
            except Exception as exc:
                deferred.append((job, exc))
            else:
                if job.dask_future is None:
                    deferred.append((job, DEFER))
        if deferred:
            self._deliver(deferred)
        if self._consumer is None and self._watching:
            self._consumer = asyncio.ensure_future(self._consume())

    def _submit(self, job: Job) -> None:
        upstream = []
        for source in job.upstream:
            dask_future = source.dask_future
            if dask_future is not None and dask_future.status not in ("error", "cancelled"):
                upstream.append(dask_future)
            elif source.finished:  # its outcome, in place of the released Dask future
                upstream.append(outcome_reply(source.future.state, source.run.name))
            else:
                return  # delivered as DEFER
        key = f"{job.task.name}-{job.run.id.hex}"
        if job.attempt > 1:
            key = f"{key}-{job.attempt}"
        annotate = _annotate(job.annotations) if job.annotations else nullcontext()
        with annotate:
            dask_future = self._client.submit(
                run_on_worker, *job.call, *upstream, key=key, pure=False
            )
        job.dask_future = dask_future
        job.upstream = upstream
        self._watching[dask_future.key] = job
        self._completed.add(dask_future)

    async def _consume(self) -> None:
        """Gather finished outcomes in batches until no run is being watched."""
        try:
            while self._watching:
                try:
                    first = await self._completed.__anext__()
                except StopAsyncIteration:
                    break
                await self._linger()
                batch = [first, *self._completed.next_batch(block=False)]
                jobs = [self._watching.pop(dask_future.key) for dask_future in batch]
                try:
                    delivery = await self._gather(jobs, batch)
                except Exception as exc:  # never leave a run unfinished
                    delivery = [(job, exc) for job in jobs]
                self._deliver(delivery)
                del batch, first, jobs, delivery  # hold no finished Dask future on the loop
        finally:
            self._consumer = None

    async def _linger(self) -> None:
        """While many runs are out, let finished ones gather for a moment: one ``gather``
        per batch costs the scheduler and workers a round trip, whatever the batch size."""
        if len(self._watching) <= _LINGER_ABOVE:
            return
        for _ in range(_LINGER_STEPS):
            if self._completed.queue.qsize() >= _BATCH:
                return
            await asyncio.sleep(_LINGER_STEP)

    async def _gather(self, jobs: list[Job], batch: list[Any]) -> Delivery:
        finished = [f for f in batch if f.status == "finished"]
        got: dict[object, object] = {}
        if len(finished) > 1:
            try:
                values = await self._client.gather(finished, asynchronous=True)  # type: ignore[no-untyped-call]
                got = {f.key: value for f, value in zip(finished, values, strict=True)}
            except Exception:  # some result was lost on the way: read them one at a time
                got = {}
        for dask_future in batch:
            if dask_future.key not in got and dask_future.status != "cancelled":
                got[dask_future.key] = await self._one(dask_future)
        return [(job, got.get(f.key)) for job, f in zip(jobs, batch, strict=True)]

    async def _one(self, dask_future: Any) -> object:
        try:
            [value] = await self._client.gather([dask_future], asynchronous=True)  # type: ignore[no-untyped-call]
        except (
            Exception,
            asyncio.CancelledError,
        ) as exc:  # the Dask task's own failure: KilledWorker, a lost result…
            return exc
        return value


def _annotate(annotations: dict[str, Any]) -> Any:
    from dask.base import annotate

    return annotate(**annotations)
