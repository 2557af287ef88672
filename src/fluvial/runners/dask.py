"""Task runs on a Dask cluster: a ``LocalCluster`` started for the flow run, or a running one.

Each submit is one ``client.submit`` of :func:`_run_on_worker`, which runs the whole task engine
on a Dask worker (see :mod:`fluvial.runners._remote`). Futures in a task's arguments (also inside
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
import importlib
import importlib.util
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Self

from ..annotations import BaseAnnotation, quote
from ..engine.resolve import needs_resolution, resolve_parameters
from ..engine.task_engine import new_task_run
from ..exceptions import (
    ConfigurationError,
    MissingContextError,
    MissingExtraError,
    SerializationError,
    UpstreamTaskError,
)
from ..futures import Future, FutureList
from ..states import Failed, NotReady, State
from ._remote import (
    RemoteOutcome,
    Submission,
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
    import distributed
    from distributed.deploy.cluster import Cluster

    from .._runs import TaskRun
    from ..tasks import Task

_logger = logging.getLogger("fluvial.runners")
# Seconds to reach a scheduler given by address before failing (client_kwargs["timeout"] wins).
_CONNECT_TIMEOUT = 5.0
_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex})
_SEQUENCES = (list, tuple, set, frozenset)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise MissingExtraError("DaskTaskRunner", "dask") from exc
    return distributed


@contextmanager
def dask_options(**annotations: object) -> Iterator[None]:
    """Give the tasks submitted inside this block Dask annotations (merged when nested).

    Takes what ``dask.annotate`` takes: ``resources={"GPU": 1}``, ``workers=[...]``,
    ``priority=``, ``allow_other_workers=``, ``retries=`` (Dask-level: the whole engine re-runs).
    ``resources`` dicts merge with the enclosing ones; other keys replace them. Plain
    ``dask.annotate(...)`` around ``task.submit`` works too.
    """
    _import_distributed()
    from dask.base import annotate, get_annotations

    current = get_annotations().get("resources")
    resources = annotations.get("resources")
    if isinstance(current, dict) and isinstance(resources, dict):
        annotations["resources"] = {**current, **resources}
    with annotate(**annotations):
        yield


class _Slot:
    """Stands, in a payload, for the upstream outcome passed as extra argument number *index*."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _substitute(value: Any, leaf_type: type, leaf: Callable[[Any], Any]) -> Any:
    """Return *value* with each *leaf_type* inside replaced by ``leaf(item)``; rebuilt only
    where something changed. Quoted values are left alone, as the resolver leaves them."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, leaf_type):
        return leaf(value)
    if isinstance(value, quote):
        return value
    if isinstance(value, BaseAnnotation):
        inner = value.unwrap()
        new = _substitute(inner, leaf_type, leaf)
        return value if new is inner else value.rewrap(new)
    if kind is dict:
        items = {key: _substitute(item, leaf_type, leaf) for key, item in value.items()}
        return value if all(items[key] is value[key] for key in value) else items
    if kind is FutureList or kind in _SEQUENCES:
        rebuilt = [_substitute(item, leaf_type, leaf) for item in value]
        if all(a is b for a, b in zip(rebuilt, value, strict=True)):
            return value
        return rebuilt if kind is FutureList else kind(rebuilt)
    return value


# --- on the worker -------------------------------------------------------------------------

_worker_tasks: dict[bytes, Any] = {}
_worker_tasks_lock = threading.Lock()
_WORKER_TASK_CACHE = 256


def _run_on_worker(
    run_name: str, digest: bytes, task_blob: bytes, message: bytes, *upstream: RemoteOutcome
) -> RemoteOutcome:
    """Run one task run on a Dask worker; *upstream* are the outcomes its slots refer to."""
    import cloudpickle

    try:
        task = _worker_task(digest, task_blob)
        payload, wait_for = cloudpickle.loads(message)
    except Exception as exc:
        error = SerializationError(
            f"task run {run_name!r} could not be unpickled on the Dask worker: "
            f"{type(exc).__name__}: {exc}. The task's module must be importable on the workers "
            "(install it there), or be registered with cloudpickle.register_pickle_by_value."
        )
        return RemoteOutcome(Failed(data=error, message=str(error)), 0, run_name)
    payload.task = task
    if upstream:
        states = [outcome.state for outcome in upstream]
        payload.parameters = _substitute(payload.parameters, _Slot, lambda s: states[s.index])
        wait_for = _substitute(wait_for, _Slot, lambda s: states[s.index])
    if wait_for:
        try:
            resolve_parameters({}, wait_for)
        except UpstreamTaskError as exc:
            return RemoteOutcome(NotReady(message=str(exc)), 0, run_name)
    outcome = run_payload(payload)
    if outcome.logs:
        try:
            cloudpickle.dumps(outcome.logs)
        except Exception:  # a record carries something unpicklable: send the others
            outcome.logs = [record for record in outcome.logs if _picklable(record)]
    return outcome


def _worker_task(digest: bytes, blob: bytes) -> Any:
    task = _worker_tasks.get(digest)
    if task is None:
        import cloudpickle

        task = cloudpickle.loads(blob)
        with _worker_tasks_lock:
            if len(_worker_tasks) >= _WORKER_TASK_CACHE:
                del _worker_tasks[next(iter(_worker_tasks))]
            _worker_tasks[digest] = task
    return task


def _picklable(value: object) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


# --- in the flow process ---------------------------------------------------------------------


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
        _check_arguments(address, cluster, cluster_class, cluster_kwargs, adapt_kwargs)
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
            dd = _import_distributed()
            self._client = self._connect(dd)
            if self.performance_report_path is not None:
                self._start_report(dd, self._client, self.performance_report_path)
        except BaseException:
            self._stack.close()
            self._started = False
            raise
        self._collector = threading.Thread(
            target=self._collect, name="fluvial-dask-collector", daemon=True
        )
        self._collector.start()
        return self

    def _connect(self, dd: Any) -> distributed.Client:
        kwargs: dict[str, Any] = {"set_as_default": False, **self.client_kwargs}
        if self.address is not None:
            kwargs.setdefault("timeout", _CONNECT_TIMEOUT)
            try:
                client: distributed.Client = dd.Client(self.address, **kwargs)
            except (OSError, TimeoutError) as exc:
                raise ConfigurationError(
                    f"DaskTaskRunner could not reach the Dask scheduler at {self.address!r} "
                    f"within {kwargs['timeout']} s ({exc}). Check the address and that the "
                    "scheduler is running, or raise client_kwargs['timeout']."
                ) from exc
            self._stack.callback(client.close)
            return client
        if self.cluster is not None:  # the user's: adapted if asked, never closed here
            if self.adapt_kwargs is not None:
                self.cluster.adapt(**self.adapt_kwargs)  # type: ignore[arg-type]
            given: distributed.Client = dd.Client(self.cluster, **kwargs)
            self._stack.callback(given.close)
            return given
        if self.cluster_class is None and not self.cluster_kwargs and _on_worker(dd):
            # A flow run inside a Dask task uses that cluster, from a seceded worker thread.
            worker_client: distributed.Client = self._stack.enter_context(dd.worker_client())
            return worker_client
        cluster_class = self._cluster_class(dd)
        cluster_kwargs = dict(self.cluster_kwargs)
        if cluster_class is dd.LocalCluster:
            cluster_kwargs.setdefault("processes", True)
        cluster = cluster_class(**cluster_kwargs)
        self._stack.callback(cluster.close)
        if self.adapt_kwargs is not None:
            cluster.adapt(**self.adapt_kwargs)
        local_client: distributed.Client = dd.Client(cluster, **kwargs)
        self._stack.callback(local_client.close)
        return local_client

    def _start_report(
        self, dd: Any, client: distributed.Client, path: str | os.PathLike[str]
    ) -> None:
        """Start Dask's performance report; it is written when the runner's stack closes,
        before the client does."""
        where = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(where))
        if "://" not in where and not os.path.isdir(parent):
            raise ConfigurationError(
                f"DaskTaskRunner: performance_report_path {where!r} is in a directory that "
                "does not exist; create it first"
            )
        # The scheduler renders the report with bokeh; a lambda travels by value, so a
        # scheduler without fluvial installed can answer.
        if not client.run_on_scheduler(lambda: importlib.util.find_spec("bokeh") is not None):  # type: ignore[no-untyped-call]
            raise ConfigurationError(
                f"DaskTaskRunner: performance_report_path={where!r} needs bokeh where the Dask "
                "scheduler runs: pip install 'bokeh>=3.1' there"
            )
        report = dd.performance_report(filename=where)
        with client.as_current():  # the report finds its client with get_client()
            report.__enter__()
        self._stack.callback(_write_report, report, client, where)

    def _cluster_class(self, dd: Any) -> Any:
        if self.cluster_class is None:
            return dd.LocalCluster
        if not isinstance(self.cluster_class, str):
            return self.cluster_class
        module_name, _, name = self.cluster_class.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(
                f"DaskTaskRunner: cluster_class {self.cluster_class!r} cannot be imported: {exc}"
            ) from exc

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
                _run_on_worker, job.run.name, digest, blob, message, *upstream,
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
        slots: dict[Future[Any], _Slot] = {}
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
                slot = slots[item] = _Slot(len(upstream))
                upstream.append(dask_future)
            return slot

        parameters = _substitute(job.parameters, Future, leaf)
        wait_for = _substitute(job.wait_for, Future, leaf)
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


def _on_worker(dd: Any) -> bool:
    try:
        dd.get_worker()
    except ValueError:
        return False
    return True


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


@contextmanager
def get_dask_client(
    timeout: float | str | None = None, **client_kwargs: object
) -> Iterator[distributed.Client]:
    """Give a ``distributed.Client`` for the cluster the current run uses.

    Inside a task on a Dask worker this is ``distributed.worker_client``: the task leaves the
    worker's thread pool while the block runs, so it can wait on the work it submits. In a flow
    run whose task runner is a :class:`DaskTaskRunner`, it is a new client to that scheduler,
    closed at the end of the block. *client_kwargs* go to ``distributed.Client``.

    Raises:
        MissingContextError: neither on a Dask worker nor in a flow run on a DaskTaskRunner.
    """
    dd = _import_distributed()
    if _on_worker(dd) and not client_kwargs:
        with dd.worker_client(timeout=timeout) as client:
            yield client
        return
    address = _client_address(dd)
    kwargs = _client_kwargs(timeout, client_kwargs)
    with _seceded(dd), dd.Client(address, **kwargs) as client:
        yield client


@asynccontextmanager
async def get_async_dask_client(
    timeout: float | str | None = None,  # noqa: ASYNC109 (prefect-dask's: a connect timeout)
    **client_kwargs: object,
) -> AsyncIterator[distributed.Client]:
    """Give an asynchronous ``distributed.Client`` for the cluster the current run uses.

    The async twin of :func:`get_dask_client`, for ``async`` tasks and flows: a new client
    with ``asynchronous=True`` on the running event loop, connected to the scheduler of the
    Dask worker running the task, or to the scheduler of the flow run's
    :class:`DaskTaskRunner`; closed at the end of the block. On a worker the task leaves the
    worker's thread pool meanwhile, so the work it submits can run there. *client_kwargs* go
    to ``distributed.Client``.

    Raises:
        MissingContextError: neither on a Dask worker nor in a flow run on a DaskTaskRunner.
    """
    dd = _import_distributed()
    address = _client_address(dd)
    kwargs = {**_client_kwargs(timeout, client_kwargs), "asynchronous": True}
    with _seceded(dd):
        async with dd.Client(address, **kwargs) as client:
            yield client


def _client_kwargs(timeout: float | str | None, given: Mapping[str, object]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"set_as_default": False, **given}
    if timeout is not None:
        kwargs["timeout"] = timeout
    return kwargs


@contextmanager
def _seceded(dd: Any) -> Iterator[None]:
    """Leave the Dask worker's thread pool for the block when this thread runs a Dask task,
    as ``worker_client`` does: the task then waits on its own work without holding a slot."""
    from dask.context import thread_state

    if getattr(thread_state, "start_time", None) is None:
        yield  # not a worker's task thread (the flow process, a timeout helper thread)
        return
    try:
        dd.secede()
    except KeyError:  # already seceded: an enclosing block rejoins
        yield
        return
    try:
        yield
    finally:
        dd.rejoin()


def _client_address(dd: Any) -> str:
    if _on_worker(dd):
        return str(dd.get_worker().scheduler.address)
    return _runner_address()


def _runner_address() -> str:
    from ..context import _flow_run_context

    flow_ctx = _flow_run_context.get()
    runner = flow_ctx.task_runner if flow_ctx is not None else None
    if isinstance(runner, DaskTaskRunner) and runner._client is not None:
        return str(runner._client.scheduler_info()["address"])
    raise MissingContextError(
        "get_dask_client() and get_async_dask_client() need a task running on a Dask worker, "
        "or a flow run whose task runner is a started DaskTaskRunner"
    )
