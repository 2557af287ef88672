"""Task runs on a Dask cluster: a ``LocalCluster`` started for the flow run, or a running one.

Each submit is one ``client.submit`` of :func:`~fluvial.runners._dask_worker.run_on_worker`,
which runs the whole task engine on a Dask worker (see :mod:`fluvial.runners._remote`).
Futures in a task's arguments (also inside lists, tuples, sets and dicts) and in ``wait_for``
go to Dask as the upstream runs' own ``distributed.Future`` objects, so the scheduler holds
the task until they finish and moves their results worker-to-worker. On the worker each
becomes the upstream's final ``State``, which the engine resolves: its value, or ``NotReady``
unless the argument is ``allow_failure(...)``.

Submitting, watching and gathering happen on the Dask client's event loop, in batches (see
:mod:`fluvial.runners._dask_loop`); one collector thread per runner replays the finished runs'
logs, sets the fluvial futures and hands the Dask futures back to the loop to be dropped, so
finished results leave cluster memory. A worker that dies (``KilledWorker``) or a Dask future
that is cancelled makes the run ``Crashed``, never a hang.
"""

from __future__ import annotations

__all__ = ("DaskTaskRunner", "dask_options", "get_async_dask_client", "get_dask_client")

import asyncio
import concurrent.futures
import functools
import importlib.util
import logging
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Self

from ..engine.resolve import needs_resolution
from ..engine.task_engine import new_task_run
from ..exceptions import ConfigurationError, MissingExtraError
from ..futures import Future
from ..states import Failed, State
from ._dask_client import dask_options, get_async_dask_client, get_dask_client, import_distributed
from ._dask_loop import DEFER, Delivery, Job, LoopSide
from ._dask_setup import check_arguments, connect, start_report
from ._dask_worker import Slot, substitute
from ._ray_watch import outcome_state
from ._remote import crashed_outcome, pickling_error
from ._shipping import Packer
from .base import TaskRunner
from .thread import _when_all_done

if TYPE_CHECKING:
    import distributed
    from distributed.deploy.cluster import Cluster

    from .._runs import TaskRun
    from ..tasks import Task

_logger = logging.getLogger("fluvial.runners")


class DaskTaskRunner(TaskRunner):
    """Run tasks on a Dask cluster: one started for each flow run, or a running one.

    Args:
        address: the scheduler of a running cluster, e.g. ``"tcp://10.0.0.5:8786"``. Not with
            the cluster arguments.
        cluster_class: the cluster to start, a class or its import path; default
            ``distributed.LocalCluster`` (with ``processes=True``).
        cluster_kwargs: keyword arguments for *cluster_class*.
        adapt_kwargs: when given, ``cluster.adapt(**adapt_kwargs)`` makes the cluster adaptive
            (the started one, or the one given as *cluster*).
        client_kwargs: keyword arguments for ``distributed.Client`` (``set_as_default=False``
            unless given). With *address*, ``timeout`` defaults to 5 seconds, so a wrong
            address fails fast.
        cluster: a running ``distributed.deploy.Cluster`` object (a ``LocalCluster``, a
            ``KubeCluster``…) to use; the runner connects a client to it and never closes it.
            Not with *address*, *cluster_class* or *cluster_kwargs*.
        performance_report_path: where to write Dask's performance report (an HTML file) of
            the work done while the runner was open; written when it exits. Needs ``bokeh``
            where the scheduler runs.

    Raises:
        ConfigurationError: conflicting arguments, or ``asynchronous`` in the keyword arguments.
        MissingExtraError: Dask's ``distributed`` is not installed.
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_class: str | Callable[..., object] | None = None,
        cluster_kwargs: Mapping[str, object] | None = None,
        adapt_kwargs: Mapping[str, object] | None = None,
        client_kwargs: Mapping[str, object] | None = None,
        *,
        cluster: Cluster | None = None,
        performance_report_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if importlib.util.find_spec("distributed") is None:
            raise MissingExtraError("DaskTaskRunner", "dask")
        check_arguments(address, cluster, cluster_class, cluster_kwargs, adapt_kwargs)
        for what, kwargs in (("cluster_kwargs", cluster_kwargs), ("client_kwargs", client_kwargs)):
            if kwargs and "asynchronous" in kwargs:
                raise ConfigurationError(
                    f"DaskTaskRunner: {what} may not set 'asynchronous'; the runner drives a "
                    "synchronous client, for sync and async flows alike"
                )
        self.cluster = cluster
        self.performance_report_path = performance_report_path
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs: dict[str, object] = dict(cluster_kwargs or {})
        self.adapt_kwargs: dict[str, object] | None = (
            None if adapt_kwargs is None else dict(adapt_kwargs)
        )
        self.client_kwargs: dict[str, object] = dict(client_kwargs or {})
        self._reset()

    def _reset(self) -> None:
        self._client: distributed.Client | None = None
        self._stack = ExitStack()
        self._pending: dict[Future[Any], Job] = {}
        self._completed: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._loop_side: LoopSide | None = None
        self._collector: threading.Thread | None = None
        self._packer = Packer()
        self._lock = threading.Lock()

    def duplicate(self) -> Self:
        """Return an unstarted runner with the same settings."""
        return type(self)(
            self.address, self.cluster_class, self.cluster_kwargs, self.adapt_kwargs,
            self.client_kwargs, cluster=self.cluster,
            performance_report_path=self.performance_report_path,
        )  # fmt: skip

    @property
    def client(self) -> distributed.Client:
        """The ``distributed.Client`` of the started runner."""
        if self._client is None:
            raise RuntimeError("the DaskTaskRunner has not been started (entered)")
        return self._client

    def __enter__(self) -> Self:
        super().__enter__()
        try:
            dd = import_distributed()
            self._client = connect(self, dd, self._stack)
            if self.performance_report_path is not None:
                start_report(dd, self._client, self.performance_report_path, self._stack)
        except BaseException:
            self._stack.close()
            self._started = False
            raise
        self._loop_side = LoopSide(self._client, self._completed.put)
        self._collector = threading.Thread(
            target=self._collect, name="fluvial-dask-collector", daemon=True
        )
        self._collector.start()
        return self

    def __exit__(self, exc_type: object = None, *rest: object) -> None:
        """Wait for the submitted runs (or, after an error, crash them); close what was made."""
        super().__exit__(exc_type, *rest)
        try:
            if exc_type is None:
                while self._pending:
                    from ..futures import wait

                    wait(list(self._pending))
            else:
                self._abandon_pending()
            if self._collector is not None:
                self._completed.put(None)
                self._collector.join(timeout=30)
        finally:
            self._client = None
            self._collector = None
            self._loop_side = None
            self._packer.clear()
            stack, self._stack = self._stack, ExitStack()
            stack.close()

    def _abandon_pending(self) -> None:
        jobs = list(self._pending.values())
        running = [job.dask_future for job in jobs if job.dask_future is not None]
        if running and self._client is not None:
            try:
                self._client.cancel(running, reason="the flow run ended")  # type: ignore[no-untyped-call]
            except Exception as exc:
                _logger.debug("cancelling the Dask futures of a failed flow run: %s", exc)
        for job in jobs:
            reason = "the flow run ended before this task run finished"
            self._finish(job, crashed_outcome(job.run, reason))

    def submit(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> Future[Any]:
        """Send a run of *task* to the cluster; Dask starts it once its upstreams are done."""
        self._require_started()
        from dask.base import get_annotations

        run = new_task_run(task, parameters)
        job = Job(task, run, parameters, list(wait_for) if wait_for else None, get_annotations())
        self._pending[job.future] = job
        self._dispatch(job)
        return job.future

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of runs that have not finished."""
        return list(self._pending)

    def _dispatch(self, job: Job) -> None:
        if job.finished:
            return
        if self._client is None:
            reason = "the Dask task runner was closed before this task run was sent to the cluster"
            self._finish(job, crashed_outcome(job.run, reason))
            return
        try:
            self._send(job)
        except Exception as exc:
            reason = f"the Dask task runner could not send task run {job.run.name!r}: {exc}"
            self._finish(job, crashed_outcome(job.run, reason, exc))

    def _send(self, job: Job) -> None:

        prepared = self._swap_futures(job)
        if prepared is None:
            return  # sent again once the upstreams of other runners are done
        parameters, wait_for, upstream = prepared
        packer = self._packer
        try:
            task_blob = packer.task(job.task)
            context = packer.context(job.submission)
            message = packer.message(job.run, job.task, parameters, wait_for, job.submission)
        except Exception as exc:
            error = pickling_error(job.task, parameters, exc, "a Dask worker")
            self._finish(job, Failed(data=error, message=str(error)))
            return
        job.attempt += 1
        job.call = (pickle.dumps((job.run.name, task_blob, context, message), protocol=5),)
        job.upstream = upstream
        assert self._loop_side is not None
        self._loop_side.send(job)

    def _swap_futures(self, job: Job) -> tuple[dict[str, Any], Any, list[Job]] | None:
        """Replace fluvial futures by slots (for upstream runs this runner sent to the cluster,
        listed in the result: their Dask futures are taken when the run is submitted) or by
        the final states of finished runs.

        Returns None when some upstream belongs elsewhere and is unfinished: the job is then
        dispatched again when those are done.
        """
        if not needs_resolution(job.parameters, job.wait_for):
            return job.parameters, job.wait_for, []
        upstream: list[Job] = []
        slots: dict[Future[Any], Slot] = {}
        waiting: list[Future[Any]] = []

        def leaf(item: Future[Any]) -> Any:
            if item.done():
                return item.state
            slot = slots.get(item)
            if slot is None:
                owner = self._pending.get(item)
                if owner is None or not owner.sent or _failed(owner.dask_future):
                    waiting.append(item)
                    return item
                slot = slots[item] = Slot(len(upstream))
                upstream.append(owner)
            return slot

        parameters = substitute(job.parameters, Future, leaf)
        wait_for = substitute(job.wait_for, Future, leaf)
        if waiting:
            _when_all_done(waiting, lambda: self._dispatch(job))
            return None
        return parameters, wait_for, upstream

    def _collect(self) -> None:
        """Settle delivered batches until told to stop (the collector thread)."""
        while True:
            batch = self._completed.get()
            if batch is None:
                return
            self._settle(batch)
            del batch  # hold no finished outcome

    def _settle(self, batch: Delivery) -> None:
        for job, got in batch:
            if job.finished:
                continue
            if got is DEFER:  # an upstream failed in Dask before this run was submitted
                waiting = [source.future for source in job.upstream]
                job.upstream, job.sent = [], False
                _when_all_done(waiting, functools.partial(self._dispatch, job))
                continue
            try:
                state = self._final_state(job, got)
            except Exception as exc:
                reason = f"the result of task run {job.run.name!r} could not be read from Dask"
                state = crashed_outcome(job.run, f"{reason}: {exc}", exc)
            if state is None:  # an upstream crashed: run it again with the upstream states
                self._drop_dask_futures(job)
                self._dispatch(job)
            else:
                self._finish(job, state)

    def _final_state(self, job: Job, got: object) -> State[Any] | None:
        if isinstance(got, bytes):  # the reply of run_on_worker
            return outcome_state(job.run, got)
        key = job.dask_future.key if job.dask_future is not None else job.run.name
        if got is None:
            return crashed_outcome(job.run, f"Dask cancelled task run {job.run.name!r} ({key!r})")
        if any(_failed(up) for up in job.upstream):
            return None
        return _crash_state(job.run, str(key), got)

    def _finish(self, job: Job, state: State[Any]) -> None:
        with self._lock:
            if job.finished:
                return
            job.finished = True
        job.run.finish(state)
        job.future.set_state(state)
        self._pending.pop(job.future, None)
        self._drop_dask_futures(job)

    def _drop_dask_futures(self, job: Job) -> None:
        """Let Dask release the job's result (on the client's loop, in batches)."""
        dropped = [job.dask_future, *job.upstream] if job.dask_future is not None else []
        job.dask_future, job.upstream, job.sent = None, [], False
        loop_side = self._loop_side
        if dropped and loop_side is not None:
            loop_side.release(dropped)

    def __getstate__(self) -> dict[str, Any]:
        # A cluster object stays in this process; elsewhere its scheduler is reached by address.
        cluster = self.cluster
        return {
            "address": self.address if cluster is None else str(cluster.scheduler_address),
            "performance_report_path": self.performance_report_path,
            "cluster_class": self.cluster_class,
            "cluster_kwargs": self.cluster_kwargs,
            "adapt_kwargs": self.adapt_kwargs,
            "client_kwargs": self.client_kwargs,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        if self.cluster is not None:
            return f"DaskTaskRunner(cluster={self.cluster!r})"
        if self.address is not None:
            return f"DaskTaskRunner(address={self.address!r})"
        cluster = self.cluster_class or "distributed.LocalCluster"
        name = cluster if isinstance(cluster, str) else getattr(cluster, "__name__", cluster)
        return f"DaskTaskRunner(cluster_class={name!r})"


def _failed(dask_future: object) -> bool:
    return getattr(dask_future, "status", None) in ("error", "cancelled")


def _crash_state(run: TaskRun, key: str, exc: object) -> State[Any]:
    from distributed import KilledWorker

    cause = exc if isinstance(exc, BaseException) else None
    if isinstance(exc, KilledWorker):
        reason = f"the Dask worker running task run {run.name!r} died before the run finished"
        return crashed_outcome(run, f"{reason}: {exc}", cause)
    if isinstance(exc, asyncio.CancelledError | concurrent.futures.CancelledError):
        return crashed_outcome(run, f"Dask cancelled task run {run.name!r} ({exc})", cause)
    reason = f"Dask could not run task run {run.name!r} (key {key!r}): {type(exc).__name__}: {exc}"
    return crashed_outcome(run, reason, cause)
