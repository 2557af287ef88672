"""The Dask runner's work on the client's event loop: submitting runs, watching them, gathering.

Every call of a synchronous ``distributed.Client`` from another thread wakes its event loop,
and each wake-up makes the calling thread wait for the GIL. So threads of the flow process
hand the loop work in batches: :meth:`LoopSide.send` queues a run and wakes the loop only when
the queue was empty, and one callback on the loop submits every queued run.

Watching costs little per run: no coroutine per Dask future (``distributed.as_completed`` keeps
one per future, and took a quarter of the loop's time at 2k runs). The client keeps each
future's ``status`` current, so the loop reads the statuses of the oldest runs (Dask runs them
roughly in the order they came), sleeping in between on one done-callback set on the oldest
run, or for at most ``_POLL`` seconds; now and then it reads the status of every run out, to
catch those that finish out of order. Runs queued together are submitted in one
``client.map`` (each stretch of them with as many upstream runs and the same annotations). Finished outcomes are gathered in one ``gather`` per batch (while many
runs are out and more keep finishing, a batch may grow for up to ``_LINGER`` seconds: each
``gather`` costs the scheduler and the workers a round trip, whatever its size; a lone run is
gathered at once) and handed to the runner's collector thread in one piece. Finished Dask
futures are dropped on the loop (which is where Dask releases them) in batches too.
"""

from __future__ import annotations

__all__ = ("Job", "LoopSide")

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from itertools import islice
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
# How many of the oldest runs out each look reads the status of.
_WINDOW = 64
# The longest sleep between looks while nothing is known to have finished.
_POLL = 0.02
# Read the status of every run out this often (more often when the oldest make no progress),
# and for at most 1/_SWEEP_COST_RATIO of the time: a sweep costs in proportion to the runs out.
_SWEEP_EVERY = 1.0
_SWEEP_STUCK = 0.1
_SWEEP_COST_RATIO = 50
# While more runs than this are out, let a batch grow towards _BATCH for up to _LINGER seconds,
# as long as no _LINGER_GAP passes without a run finishing (Dask reports them in bursts). A
# gather costs the workers about 2 ms of CPU on the project's 2-core test machine whatever its
# size, as much as a no-op run.
_LINGER_ABOVE = 8
_LINGER = 0.1
_LINGER_GAP = 0.02
_LINGER_STEP = 0.005
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
        # Dask key -> (its future, the job), oldest first; touched on the loop only. The
        # futures are kept here because the runner drops a job's own when it is abandoned.
        self._watching: OrderedDict[str, tuple[Any, Job]] = OrderedDict()
        self._consumer: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None  # set when the waited-for run is done
        self._waited: str | None = None  # the key of the run that has the done-callback
        self._swept = 0.0
        self._sweep_cost = 0.0

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
        with self._lock:
            jobs, self._to_send = self._to_send, []
        deferred: Delivery = []
        # Consecutive runs with as many upstream arguments and the same annotations, each with
        # those arguments, and the ids of their jobs (whose Dask futures do not exist yet).
        group: list[tuple[Job, list[Any]]] = []
        grouped: set[int] = set()
        for job in jobs:
            if job.finished:
                continue
            if any(id(source) in grouped for source in job.upstream):
                self._submit_group(group, deferred)  # its upstreams first
                group, grouped = [], set()
            upstream = _upstream_arguments(job)
            if upstream is None:
                deferred.append((job, DEFER))
                continue
            if group and not _alike(group[0], job, upstream):
                self._submit_group(group, deferred)
                group, grouped = [], set()
            group.append((job, upstream))
            grouped.add(id(job))
        self._submit_group(group, deferred)
        if deferred:
            self._deliver(deferred)
        if self._consumer is None and self._watching:
            self._consumer = asyncio.ensure_future(self._consume())

    def _submit_group(self, group: list[tuple[Job, list[Any]]], deferred: Delivery) -> None:
        """Submit alike runs in one ``client.map``: one graph update for all, which costs the
        client and the scheduler less than a ``submit`` each."""
        if len(group) < 2:
            for job, upstream in group:
                self._submit_one(job, upstream, deferred)
            return
        keys = [_key(job) for job, _ in group]
        headers = [job.call[0] for job, _ in group]
        columns = list(zip(*(upstream for _, upstream in group), strict=True))
        annotations = group[0][0].annotations
        try:
            with _annotate(annotations) if annotations else nullcontext():
                futures = self._client.map(run_on_worker, headers, *columns, key=keys, pure=False)
        except Exception:  # submit them one by one, so each run gets its own error
            for job, upstream in group:
                self._submit_one(job, upstream, deferred)
            return
        for (job, upstream), key, dask_future in zip(group, keys, futures, strict=True):
            self._watch(job, key, dask_future, upstream)

    def _submit_one(self, job: Job, upstream: list[Any], deferred: Delivery) -> None:
        key = _key(job)
        try:
            with _annotate(job.annotations) if job.annotations else nullcontext():
                dask_future = self._client.submit(
                    run_on_worker, *job.call, *upstream, key=key, pure=False
                )
        except Exception as exc:
            deferred.append((job, exc))
        else:
            self._watch(job, key, dask_future, upstream)

    def _watch(self, job: Job, key: str, dask_future: Any, upstream: list[Any]) -> None:
        job.dask_future = dask_future
        job.upstream = upstream  # now the Dask futures (or outcomes) of its upstream runs
        self._watching[key] = (dask_future, job)

    async def _consume(self) -> None:
        """Gather finished outcomes in batches until no run is being watched."""
        try:
            while self._watching:
                ready = self._ready()
                if not ready:
                    await self._sleep()
                    ready = self._ready(stuck=True)
                    if not ready:
                        continue
                if len(ready) < _BATCH and len(self._watching) > _LINGER_ABOVE:
                    ready = await self._linger()
                batch = [self._watching.pop(key) for key in ready]
                try:
                    delivery = await self._gather(batch)
                except Exception as exc:  # never leave a run unfinished
                    delivery = [(job, exc) for _, job in batch]
                self._deliver(delivery)
                del ready, batch, delivery  # hold no finished Dask future on the loop
        finally:
            self._consumer = None

    def _ready(self, stuck: bool = False) -> list[str]:
        """Return the keys of finished runs: among the oldest, or, now and then, among all."""
        watching = self._watching
        ready = _finished(islice(watching.items(), _WINDOW))
        if len(watching) > _WINDOW:
            # Sooner when the oldest are stuck; never more than 1/_SWEEP_COST_RATIO of the time.
            gap = _SWEEP_STUCK if stuck and not ready else _SWEEP_EVERY
            now = time.monotonic()
            if now - self._swept > max(gap, _SWEEP_COST_RATIO * self._sweep_cost):
                ready = _finished(watching.items())
                self._swept = time.monotonic()
                self._sweep_cost = self._swept - now
        return ready

    async def _sleep(self) -> None:
        """Sleep until the oldest run out is done, or for at most ``_POLL`` seconds."""
        key, (oldest, _) = next(iter(self._watching.items()))
        if self._wake is None:
            self._wake = asyncio.Event()
        # The oldest is pending (its status is set on this loop, before its callback runs),
        # so a wake-up still on its way can only be a finished run's, which is seen already.
        self._wake.clear()
        if key != self._waited:
            self._waited = key
            oldest.add_done_callback(self._on_done)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), _POLL)

    def _on_done(self, dask_future: Any) -> None:
        """Wake the loop (Dask calls this in its callback thread)."""
        with contextlib.suppress(RuntimeError):  # the client closed: nothing to wake
            self._loop.add_callback(self._woken, dask_future.key)

    def _woken(self, key: str) -> None:
        if key == self._waited and self._wake is not None:
            self._wake.set()

    async def _linger(self) -> list[str]:
        """While many runs are out, let finished ones gather for a moment: one ``gather``
        per batch costs the scheduler and workers a round trip, whatever the batch size."""
        start = now = last = time.monotonic()
        ready = self._ready()
        while len(ready) < _BATCH and now - last < _LINGER_GAP and now - start < _LINGER:
            await asyncio.sleep(_LINGER_STEP)
            before, ready = len(ready), self._ready()
            now = time.monotonic()
            if len(ready) > before:
                last = now
        return ready

    async def _gather(self, watched: list[tuple[Any, Job]]) -> Delivery:
        batch = [dask_future for dask_future, _ in watched]
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
        return [(job, got.get(f.key)) for f, job in watched]

    async def _one(self, dask_future: Any) -> object:
        try:
            [value] = await self._client.gather([dask_future], asynchronous=True)  # type: ignore[no-untyped-call]
        except (
            Exception,
            asyncio.CancelledError,
        ) as exc:  # the Dask task's own failure: KilledWorker, a lost result…
            return exc
        return value


def _finished(items: Any) -> list[str]:
    """Return the keys, among *items* of the watched, whose Dask future is no longer pending."""
    return [key for key, (dask_future, _) in items if dask_future.status != "pending"]


def _upstream_arguments(job: Job) -> list[Any] | None:
    """Return the extra arguments of *job*'s Dask task: its upstream runs' Dask futures, or
    the outcomes of those already finished; None if some upstream failed in Dask unfinished
    (the job is then sent again once its upstreams are done)."""
    upstream: list[Any] = []
    for source in job.upstream:
        dask_future = source.dask_future
        if dask_future is not None and dask_future.status not in ("error", "cancelled"):
            upstream.append(dask_future)
        elif source.finished:  # its outcome, in place of the released Dask future
            upstream.append(outcome_reply(source.future.state, source.run.name))
        else:
            return None
    return upstream


def _alike(first: tuple[Job, list[Any]], job: Job, upstream: list[Any]) -> bool:
    """Whether *job* may go in the same ``client.map`` as the group that *first* starts."""
    return len(upstream) == len(first[1]) and job.annotations == first[0].annotations


def _key(job: Job) -> str:
    """Return the Dask key of *job*'s current attempt."""
    key = f"{job.task.name}-{job.run.id.hex}"
    return key if job.attempt < 2 else f"{key}-{job.attempt}"


def _annotate(annotations: dict[str, Any]) -> Any:
    from dask.base import annotate

    return annotate(**annotations)
