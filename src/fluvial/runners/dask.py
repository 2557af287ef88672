"""Task runs on a Dask cluster: a ``LocalCluster`` started for the flow run, or a running one.

Each submit is one ``client.submit`` of :func:`~fluvial.runners._dask_worker.run_on_worker`,
which runs the whole task engine on a Dask worker (see :mod:`fluvial.runners._remote`). Futures in a task's arguments (also inside
lists, tuples, sets and dicts) and in ``wait_for`` go to Dask as the upstream runs' own
``distributed.Future`` objects, so the scheduler holds the task until they finish and moves their
results worker-to-worker. On the worker each becomes the upstream's final ``State``, which the
engine resolves: its value, or ``NotReady`` unless the argument is ``allow_failure(...)``.

A done-callback queues each finished Dask future; one collector thread per runner gathers the
finished outcomes in batches, replays their logs, sets the fluvial futures and drops the Dask
futures, so finished results leave cluster memory. A worker that dies (``KilledWorker``) or a
Dask future that is cancelled makes the run ``Crashed``, never a hang.
"""

from __future__ import annotations

__all__ = ("DaskTaskRunner", "dask_options", "get_async_dask_client", "get_dask_client")

import asyncio
import concurrent.futures
import hashlib
import importlib.util
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack, nullcontext
from typing import TYPE_CHECKING, Any, Self

from ..engine.resolve import needs_resolution
from ..engine.task_engine import new_task_run
from ..exceptions import ConfigurationError, MissingExtraError
from ..futures import Future
from ..states import Failed, State
from ._dask_client import dask_options, get_async_dask_client, get_dask_client, import_distributed
from ._dask_setup import check_arguments, connect, start_report
from ._dask_worker import Slot, run_on_worker, substitute
from ._remote import (
    RemoteOutcome,
    Submission,
    capture_submission,
    crashed_outcome,
    make_payload,
    pickling_error,
    replay_outcome,
)
from .base import TaskRunner
from .thread import _when_all_done

if TYPE_CHECKING:
    import distributed
    from distributed.deploy.cluster import Cluster

    from .._runs import TaskRun
    from ..tasks import Task

_logger = logging.getLogger("fluvial.runners")


class _Job:
    """One submitted run: waiting for upstreams of another runner, on the cluster, or done."""

    __slots__ = (
        "annotations",
        "attempt",
        "dask_future",
        "finished",
        "future",
        "parameters",
        "run",
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
        self.dask_future: distributed.Future[RemoteOutcome] | None = None
        self.upstream: list[distributed.Future[RemoteOutcome]] = []
        self.attempt = 0
        self.finished = False


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
        self._pending: dict[Future[Any], _Job] = {}
        self._completed: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._collector: threading.Thread | None = None
        self._blobs: dict[int, tuple[object, bytes, bytes]] = {}
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
        if not self._started:
            raise RuntimeError(
                "The task runner must be started (entered) before submitting work; "
                "task.submit() does this for you inside a flow"
            )
        from dask.base import get_annotations

        run = new_task_run(task, parameters)
        job = _Job(task, run, parameters, list(wait_for) if wait_for else None, get_annotations())
        self._pending[job.future] = job
        self._dispatch(job)
        return job.future

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of runs that have not finished."""
        return list(self._pending)

    def _dispatch(self, job: _Job) -> None:
        if job.finished:
            return
        client = self._client
        if client is None:
            reason = "the Dask task runner was closed before this task run was sent to the cluster"
            self._finish(job, crashed_outcome(job.run, reason))
            return
        try:
            self._send(job, client)
        except Exception as exc:
            reason = f"the Dask task runner could not send task run {job.run.name!r}: {exc}"
            self._finish(job, crashed_outcome(job.run, reason, exc))

    def _send(self, job: _Job, client: distributed.Client) -> None:
        import cloudpickle

        prepared = self._swap_futures(job)
        if prepared is None:
            return  # sent again once the upstreams of other runners are done
        parameters, wait_for, upstream = prepared
        try:
            digest, blob = self._task_blob(job.task)
            payload = make_payload(job.task, job.run, parameters, job.submission)
            payload.task = None  # type: ignore[assignment]  # travels once per runner, as blob
            message = cloudpickle.dumps((payload, wait_for))
        except Exception as exc:
            error = pickling_error(job.task, parameters, exc, "a Dask worker")
            self._finish(job, Failed(data=error, message=str(error)))
            return
        job.attempt += 1
        key = f"{job.task.name}-{job.run.id.hex}"
        if job.attempt > 1:
            key = f"{key}-{job.attempt}"
        annotate = _annotate(job.annotations) if job.annotations else nullcontext()
        with annotate:
            dask_future: distributed.Future[RemoteOutcome] = client.submit(
                run_on_worker, job.run.name, digest, blob, message, *upstream,
                key=key, pure=False,
            )  # fmt: skip
        job.dask_future = dask_future
        job.upstream = upstream
        completed = self._completed
        dask_future.add_done_callback(lambda _: completed.put(job))  # type: ignore[no-untyped-call]

    def _swap_futures(self, job: _Job) -> tuple[dict[str, Any], Any, list[Any]] | None:
        """Replace fluvial futures by slots (for running upstreams of this runner) or states.

        Returns None when some upstream belongs elsewhere and is unfinished: the job is then
        dispatched again when those are done.
        """
        if not needs_resolution(job.parameters, job.wait_for):
            return job.parameters, job.wait_for, []
        upstream: list[Any] = []
        slots: dict[Future[Any], Slot] = {}
        waiting: list[Future[Any]] = []

        def leaf(item: Future[Any]) -> Any:
            if item.done():
                return item.state
            slot = slots.get(item)
            if slot is None:
                owner = self._pending.get(item)
                dask_future = owner.dask_future if owner is not None else None
                if dask_future is None or dask_future.status in ("error", "cancelled"):
                    waiting.append(item)
                    return item
                slot = slots[item] = Slot(len(upstream))
                upstream.append(dask_future)
            return slot

        parameters = substitute(job.parameters, Future, leaf)
        wait_for = substitute(job.wait_for, Future, leaf)
        if waiting:
            _when_all_done(waiting, lambda: self._dispatch(job))
            return None
        return parameters, wait_for, upstream

    def _task_blob(self, task: Task[..., Any]) -> tuple[bytes, bytes]:
        import cloudpickle

        cached = self._blobs.get(id(task))
        if cached is None or cached[0] is not task:
            blob = cloudpickle.dumps(task)
            cached = (task, hashlib.blake2b(blob, digest_size=16).digest(), blob)
            self._blobs[id(task)] = cached
        return cached[1], cached[2]

    def _collect(self) -> None:
        """Settle finished Dask futures in batches until told to stop (the collector thread)."""
        while True:
            first = self._completed.get()
            if first is None:
                return
            batch, stop = [first], False
            while not stop and not self._completed.empty():
                item = self._completed.get_nowait()
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            self._settle(batch)
            if stop:
                return

    def _settle(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if not job.finished and job.dask_future is not None]
        gathered = self._gather([job for job in batch if job.dask_future.status == "finished"])  # type: ignore[union-attr]
        for job in batch:
            try:
                state = self._final_state(job, gathered.get(job))
            except Exception as exc:
                reason = f"the result of task run {job.run.name!r} could not be read from Dask"
                state = crashed_outcome(job.run, f"{reason}: {exc}", exc)
            if state is None:  # an upstream crashed: run it again with the upstream states
                job.dask_future, job.upstream = None, []
                self._dispatch(job)
            else:
                self._finish(job, state)

    def _gather(self, jobs: list[_Job]) -> dict[_Job, object]:
        if not jobs or self._client is None:
            return {}
        futures = [job.dask_future for job in jobs]
        try:
            results = self._client.gather(futures)  # type: ignore[no-untyped-call]
            return dict(zip(jobs, results, strict=True))
        except Exception:  # some result was lost on the way: read them one at a time
            found: dict[_Job, object] = {}
            for job, future in zip(jobs, futures, strict=True):
                try:
                    found[job] = future.result()  # type: ignore[union-attr]
                except Exception as exc:
                    found[job] = exc
            return found

    def _final_state(self, job: _Job, got: object) -> State[Any] | None:
        if isinstance(got, RemoteOutcome):
            return replay_outcome(job.run, got)
        dask_future = job.dask_future
        assert dask_future is not None
        if got is None:
            status = dask_future.status
            if status == "cancelled":
                reason = f"Dask cancelled task run {job.run.name!r} (key {dask_future.key!r})"
                return crashed_outcome(job.run, reason)
            if status != "error":  # finished after all (its data was lost and recomputed)
                return replay_outcome(job.run, dask_future.result())
            got = dask_future.exception()  # type: ignore[no-untyped-call]
        if any(up.status in ("error", "cancelled") for up in job.upstream):
            return None
        return _crash_state(job.run, str(dask_future.key), got)

    def _finish(self, job: _Job, state: State[Any]) -> None:
        with self._lock:
            if job.finished:
                return
            job.finished = True
        job.run.finish(state)
        job.future.set_state(state)
        self._pending.pop(job.future, None)
        job.dask_future, job.upstream = None, []  # let Dask release the result

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


def _check_arguments(
    address: str | None,
    cluster: object,
    cluster_class: object,
    cluster_kwargs: Mapping[str, object] | None,
    adapt_kwargs: Mapping[str, object] | None,
) -> None:
    if address is not None and (cluster is not None or cluster_class or cluster_kwargs):
        raise ConfigurationError(
            "DaskTaskRunner: give either address= (a running scheduler), cluster= (a running "
            "cluster object) or cluster_class/cluster_kwargs (a cluster to start), not two"
        )
    if address is not None and adapt_kwargs:
        raise ConfigurationError(
            "DaskTaskRunner: adapt_kwargs needs a cluster object (cluster= or cluster_class), "
            "not an address"
        )
    if cluster is not None and (cluster_class or cluster_kwargs):
        raise ConfigurationError(
            "DaskTaskRunner: give either cluster= (a running cluster object) or "
            "cluster_class/cluster_kwargs (a cluster to start), not both"
        )
    if cluster is not None and not hasattr(cluster, "scheduler_address"):
        raise ConfigurationError(
            f"DaskTaskRunner: cluster= takes a running distributed.deploy.Cluster object "
            f"(e.g. distributed.LocalCluster()), not {type(cluster).__name__}; for a scheduler "
            "address use address="
        )


def _write_report(report: Any, client: distributed.Client, where: str) -> None:
    """Write the performance report; a failure is logged, not raised, so the flow run's
    outcome is not lost to it."""
    try:
        with client.as_current():
            report.__exit__(None, None, None)
    except Exception as exc:
        _logger.warning(
            "DaskTaskRunner could not write the performance report to %r: %s", where, exc
        )


def _annotate(annotations: dict[str, Any]) -> Any:
    from dask.base import annotate

    return annotate(**annotations)


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
