"""Task runs on a Ray cluster: a local Ray by default, or an existing cluster by address.

Each submitted run becomes one Ray task that runs the whole fluvial engine on a Ray worker
(retries, timeouts, caching, persistence; see :mod:`fluvial.runners._remote`). Futures in the
arguments (also inside lists, dicts and tuples) and in ``wait_for`` become the upstream runs'
``ObjectRef``s, passed as top-level arguments of the Ray task: Ray starts a task only once its
inputs exist, no worker blocks waiting for another, and a downstream task receives its inputs
worker-to-worker, not through the flow process (which gets every run's final state, as with
any runner, to finish its future). Finished runs hold no ``ObjectRef``, so Ray can free them.

A worker that dies (``os._exit``, Ray's OOM killer, a lost node) makes its run ``Crashed``,
never a hang; Ray's own task retries are off (``max_retries=0``) unless ``remote_options``
sets them, since fluvial retries on the worker. A sync task past its ``timeout_seconds`` is
reported ``TimedOut`` on time, but its thread keeps running in the Ray worker process.

Everything that crosses to a worker is pickled with fluvial's cloudpickle (the task once per
runner), so tasks, arguments and outcomes pickle as on the process runner; workers need fluvial
and the task's module importable (or ``cloudpickle.register_pickle_by_value``). Ray itself is
imported when a runner is entered, not before.
"""

from __future__ import annotations

__all__ = ("RayTaskRunner", "remote_options")

import hashlib
import importlib
import importlib.util
import logging
import queue
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Self

from ..annotations import BaseAnnotation, quote
from ..engine.resolve import needs_resolution
from ..engine.task_engine import new_task_run
from ..exceptions import ConfigurationError, MissingExtraError, SerializationError
from ..futures import Future, FutureList, wait
from ..states import Cancelled, Failed, State
from ._remote import (
    RemoteOutcome,
    TaskPayload,
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
    from ._remote import Submission

_logger = logging.getLogger("fluvial.runners.ray")
_NO_OPTIONS: Mapping[str, object] = MappingProxyType({})
_remote_options: ContextVar[Mapping[str, object]] = ContextVar(
    "fluvial_ray_remote_options", default=_NO_OPTIONS
)
_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex})
_SEQUENCES = (list, tuple, set, frozenset)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours some error messages
# Pickled tasks up to this size travel with each call; larger ones once to Ray's object store.
_INLINE_TASK_BYTES = 64 * 1024
# How long to try reaching a cluster's address before saying it is unreachable.
_CONNECT_TIMEOUT = 5.0


@contextmanager
def remote_options(
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: float | None = None,
    **other: object,
) -> Iterator[Mapping[str, object]]:
    """Give the tasks submitted inside this block these Ray options (``ray.remote(**options)``).

    Nested blocks merge, the inner one winning per option. The options are taken when a task
    is submitted, e.g. ``with remote_options(num_cpus=4, num_gpus=1): heavy.submit(x)``. Any
    option of Ray's ``.options()`` may be given (``resources``, ``runtime_env``,
    ``scheduling_strategy``, ``max_retries``…); yields the merged options.
    """
    given = {"num_cpus": num_cpus, "num_gpus": num_gpus, "memory": memory}
    merged = {**_remote_options.get(), **{k: v for k, v in given.items() if v is not None}}
    merged.update(other)
    view = MappingProxyType(merged)
    token = _remote_options.set(view)
    try:
        yield view
    finally:
        _remote_options.reset(token)


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingExtraError("RayTaskRunner", "ray") from exc


@dataclass(frozen=True, slots=True)
class _Upstream:
    """Stands in the payload for the outcome of the Ray task argument at *index*."""

    index: int


class _Job:
    """One submitted run: waiting for a foreign upstream, or running as a Ray task."""

    __slots__ = (
        "failed_in_ray",
        "future",
        "options",
        "parameters",
        "ref",
        "run",
        "sources",
        "submission",
        "task",
        "wait_for",
    )

    def __init__(
        self,
        task: Task[..., Any],
        run: TaskRun,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        future: Future[Any],
    ) -> None:
        self.task = task
        self.run = run
        self.parameters = parameters
        self.wait_for = list(wait_for) if wait_for else []
        self.future = future
        self.submission: Submission = capture_submission()  # in the submitting thread
        self.options = _remote_options.get()
        self.ref: Any = None  # the Ray ObjectRef of the outcome, while the run is in Ray
        self.sources: list[_Job] = []  # the runs whose ObjectRefs this run's Ray task takes
        self.failed_in_ray = False  # the Ray task itself failed (the worker died…)


class RayTaskRunner(TaskRunner):
    """Run tasks as Ray tasks, on a local Ray instance or an existing Ray cluster.

    Args:
        address: the cluster to connect to: the head node's ``"host:port"``, ``"auto"``, or
            ``"ray://host:port"`` for Ray Client. Default: start a local Ray.
        init_kwargs: more arguments for ``ray.init``; the defaults are ``namespace="fluvial"``
            and, for a local Ray, ``include_dashboard=False``.

    If Ray is already initialized in this process the runner uses it as it is (``address`` and
    ``init_kwargs`` are then ignored) and leaves it running: it shuts down only a Ray it
    started. Per-task resources come from :func:`remote_options`.

    Raises:
        MissingExtraError: Ray is not installed (``pip install 'fluvial[ray]'``).
    """

    def __init__(
        self, address: str | None = None, init_kwargs: Mapping[str, object] | None = None
    ) -> None:
        super().__init__()
        if importlib.util.find_spec("ray") is None:
            raise MissingExtraError("RayTaskRunner", "ray")
        self.address = address
        self.init_kwargs: dict[str, object] = dict(init_kwargs or {})
        self._ray: Any = None
        self._owns_ray = False
        self._jobs: dict[Future[Any], _Job] = {}
        self._lock = threading.Lock()
        self._blobs: dict[int, tuple[Task[..., Any], bytes, bytes | list[Any]]] = {}
        self._completed: queue.SimpleQueue[tuple[_Job, Any] | None] = queue.SimpleQueue()
        self._finisher: threading.Thread | None = None

    def duplicate(self) -> Self:
        """Return an unstarted runner with the same address and ``init_kwargs``."""
        return type(self)(self.address, self.init_kwargs)

    def __enter__(self) -> Self:
        """Use the Ray of this process, or start (or connect to) one.

        Raises:
            ConfigurationError: the cluster at ``address`` cannot be reached, or Ray refused
                to start; the message names the address.
        """
        super().__enter__()
        try:
            self._ray = _import_ray()
            self._owns_ray = self._connect(self._ray)
        except BaseException:
            self._started = False
            raise
        self._finisher = threading.Thread(
            target=self._finish_loop, name="fluvial-ray-finisher", daemon=True
        )
        self._finisher.start()
        return self

    def _connect(self, ray: Any) -> bool:
        """Make sure Ray is initialized; return whether this runner started it."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, object] = {"namespace": "fluvial", **self.init_kwargs}
        address = kwargs.pop("address", None) if self.address is None else self.address
        if address is None:
            kwargs.setdefault("include_dashboard", False)
        elif isinstance(address, str) and address != "auto":
            _check_reachable(address)
        where = "a local Ray" if address is None else f"the Ray cluster at {address!r}"
        try:
            ray.init(address, **kwargs)
        except Exception as exc:
            raise ConfigurationError(
                f"RayTaskRunner could not start or connect to {where}: {exc}"
            ) from exc
        return True

    def __exit__(self, exc_type: object = None, *rest: object) -> None:
        """Wait for the submitted runs (after an error: end them as Crashed); release them,
        and shut Ray down if this runner started it."""
        try:
            while exc_type is None and self._jobs:
                wait(list(self._jobs))
        finally:
            self._abandon_all()  # none left after a clean exit; else interrupted or failed
            super().__exit__(exc_type, *rest)
            self._stop()

    def _abandon_all(self) -> None:
        for job in list(self._jobs.values()):
            ref = job.ref
            reason = "the flow run ended before this task run finished"
            self._finish(job, crashed_outcome(job.run, reason))
            if ref is not None:
                try:
                    self._ray.cancel(ref)
                except Exception as exc:
                    _logger.debug("could not cancel the Ray task of %r: %s", job.run.name, exc)

    def _stop(self) -> None:
        if self._finisher is not None:
            self._completed.put(None)
            self._finisher.join()
            self._finisher = None
        self._blobs.clear()
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()

    def submit(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> Future[Any]:
        """Start a Ray task for a run of *task*; Ray runs it once its upstream runs are done.

        Raises:
            RuntimeError: the runner has not been entered.
            ValueError: Ray refused the options of the enclosing :func:`remote_options`.
        """
        if not self._started:
            raise RuntimeError(
                "The task runner must be started (entered) before submitting work; "
                "task.submit() does this for you inside a flow"
            )
        run = new_task_run(task, parameters)
        future: Future[Any] = Future(run)
        job = _Job(task, run, parameters, wait_for, future)
        if job.options:
            _ray_function(job.options, "check")  # bad options fail here, in the caller
        self._jobs[future] = job
        self._dispatch(job)
        return future

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of runs that have not finished."""
        return list(self._jobs)

    def _dispatch(self, job: _Job) -> None:
        """Start *job*'s Ray task, or first wait for upstream runs that are not Ray tasks."""
        if job.future.done():
            return
        if not self._started:
            message = "The task runner stopped before this task run started."
            self._finish(job, Cancelled(message=message))
            return
        try:
            call = self._prepare(job)
        except Exception as exc:  # never leave a future unfinished
            reason = f"the Ray runner could not submit task run {job.run.name!r}: {exc}"
            self._finish(job, crashed_outcome(job.run, reason, exc))
            return
        if isinstance(call, State):
            self._finish(job, call)
        elif isinstance(call, list):
            _when_all_done(call, lambda: self._dispatch(job))
        else:
            self._launch(job, call)

    def _prepare(self, job: _Job) -> _Call | State[Any] | list[Future[Any]]:
        """Build the Ray task's arguments; or the futures to wait for; or a final state."""
        parameters, wait_for = job.parameters, job.wait_for
        link = _Linker(self._jobs)
        if needs_resolution(parameters, wait_for):
            with self._lock:
                parameters = {name: _swap(value, link) for name, value in parameters.items()}
                wait_for = [_swap(item, link) for item in wait_for]
            if link.blocked:
                return link.blocked
        import cloudpickle

        try:
            digest, task_arg = self._task_arg(job.task)
        except Exception as exc:
            error = SerializationError(
                f"task {job.task.name!r} cannot be pickled to send it to a Ray worker: {exc}"
            )
            return Failed(data=error, message=str(error))
        payload = make_payload(job.task, job.run, parameters, job.submission)
        payload.task = None  # type: ignore[assignment]  # sent separately: see _task_arg
        try:
            blob = cloudpickle.dumps((payload, wait_for))
        except Exception as exc:
            failure = pickling_error(job.task, parameters, exc, "a Ray worker")
            return Failed(data=failure, message=str(failure))
        job.sources = link.sources
        return _Call(digest, task_arg, blob, link.refs)

    def _launch(self, job: _Job, call: _Call) -> None:
        name = f"{job.task.name}-{job.run.id.hex[:8]}"
        try:
            function = _ray_function(job.options, name)
            ref = function.remote(call.digest, call.task, call.blob, *call.upstream)
        except Exception as exc:
            reason = f"Ray did not accept task run {job.run.name!r}: {exc}"
            self._finish(job, crashed_outcome(job.run, reason, exc))
            return
        with self._lock:
            job.ref = ref
        ref.future().add_done_callback(lambda done: self._completed.put((job, done)))

    def _task_arg(self, task: Task[..., Any]) -> tuple[bytes, bytes | list[Any]]:
        """Return the digest of the task, pickled once per runner, and how to send it: the
        bytes when small, else a boxed ObjectRef (Ray does not fetch a nested ref; a worker
        that has not seen the task yet does)."""
        cached = self._blobs.get(id(task))
        if cached is None or cached[0] is not task:
            import cloudpickle

            blob = cloudpickle.dumps(task)
            digest = hashlib.blake2b(blob, digest_size=16).digest()
            sent = blob if len(blob) <= _INLINE_TASK_BYTES else [self._ray.put(blob)]
            cached = (task, digest, sent)
            self._blobs[id(task)] = cached
        return cached[1], cached[2]

    def _finish_loop(self) -> None:
        """Turn finished Ray tasks into final states, one at a time, in completion order."""
        while True:
            item = self._completed.get()
            if item is None:
                return
            job, done = item
            try:
                self._complete(job, done)
            except BaseException as exc:  # never leave a future unfinished
                reason = f"the Ray runner could not read the outcome of {job.run.name!r}: {exc}"
                self._finish(job, crashed_outcome(job.run, reason, exc))
            del item, job, done  # hold no reference to a finished outcome

    def _complete(self, job: _Job, done: Any) -> None:
        try:
            blob: bytes = done.result()
        except Exception as exc:
            self._failed_in_ray(job, exc)
            return
        import cloudpickle

        try:
            outcome: RemoteOutcome = cloudpickle.loads(blob)
        except Exception as exc:
            error = SerializationError(
                f"the outcome of task run {job.run.name!r} cannot be unpickled in the flow "
                f"process: {exc}"
            )
            self._finish(job, Failed(data=error, message=str(error)))
            return
        if not outcome.run_name:
            outcome.run_name = job.run.name
        self._finish(job, replay_outcome(job.run, outcome))

    def _failed_in_ray(self, job: _Job, exc: Exception) -> None:
        """The Ray task failed: its worker died, or Ray could not compute one of its inputs."""
        unfinished = [source.future for source in job.sources if not source.future.done()]
        if unfinished:
            _when_all_done(unfinished, lambda: self._failed_in_ray(job, exc))
            return
        if any(source.failed_in_ray for source in job.sources):
            # Ray never ran it: an upstream Ray task failed. Run it again with the upstream
            # states in place of their refs, so it becomes NotReady (or runs, allow_failure).
            with self._lock:
                job.ref = None
                job.sources = []
            self._dispatch(job)
            return
        job.failed_in_ray = True
        self._finish(job, _ray_failure_state(job.run, exc, self._ray))

    def _finish(self, job: _Job, state: State[Any]) -> None:
        with self._lock:
            if self._jobs.pop(job.future, None) is None:
                return  # already finished
            job.ref = None  # release the ObjectRefs: Ray may free the outcomes
            job.sources = []
        job.run.finish(state)
        job.future.set_state(state)

    def __getstate__(self) -> dict[str, object]:
        return {"address": self.address, "init_kwargs": self.init_kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["address"], state["init_kwargs"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"RayTaskRunner(address={self.address!r})"


@dataclass(slots=True)
class _Call:
    """The arguments of one Ray task (see :func:`_run_on_worker`)."""

    digest: bytes
    task: bytes | list[Any]  # the pickled task, or its ObjectRef in a list (see _task_arg)
    blob: bytes
    upstream: list[Any]  # the upstream runs' ObjectRefs, resolved by Ray before the call


class _Linker:
    """Replaces the futures of a run's arguments: by ``_Upstream`` placeholders for the runs
    still in Ray (their refs become Ray task arguments), by final states for finished runs."""

    def __init__(self, jobs: dict[Future[Any], _Job]) -> None:
        self.jobs = jobs
        self.refs: list[Any] = []
        self.sources: list[_Job] = []
        self.blocked: list[Future[Any]] = []
        self._index: dict[Future[Any], _Upstream] = {}

    def __call__(self, future: Future[Any]) -> object:
        placeholder = self._index.get(future)
        if placeholder is not None:
            return placeholder
        source = self.jobs.get(future)
        if source is not None and source.ref is not None and not source.failed_in_ray:
            placeholder = self._index[future] = _Upstream(len(self.refs))
            self.refs.append(source.ref)
            self.sources.append(source)
            return placeholder
        if future.done():
            return future.state
        self.blocked.append(future)  # a run not in Ray (yet): wait for it in this process
        return future


def _swap(value: Any, leaf: Callable[[Any], object]) -> Any:
    """Rebuild *value* with futures and placeholders replaced by ``leaf(...)``, the way the
    engine's resolver walks arguments (quoted values are left alone)."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, Future | _Upstream):
        return leaf(value)
    if isinstance(value, quote):
        return value
    if isinstance(value, BaseAnnotation):
        inner = value.unwrap()
        swapped = _swap(inner, leaf)
        return value if swapped is inner else value.rewrap(swapped)
    if kind is dict:
        return {key: _swap(item, leaf) for key, item in value.items()}
    if kind is FutureList:
        return [_swap(item, leaf) for item in value]
    if kind in _SEQUENCES:
        return kind(_swap(item, leaf) for item in value)
    return value


def _check_reachable(address: str) -> None:
    """Fail fast, naming *address*, when nothing listens there (ray.init would retry for
    minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # not host:port: let Ray interpret it
    try:
        with socket.create_connection(
            (host.strip("[]") or "127.0.0.1", int(port)), _CONNECT_TIMEOUT
        ):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"RayTaskRunner cannot reach the Ray cluster at {address!r}: {exc}. Check the "
            "address (the head node's host:port, by default port 6379, or ray://host:10001 "
            "for Ray Client) and that the cluster is running."
        ) from None


def _ray_failure_state(run: TaskRun, exc: Exception, ray: Any) -> State[Any]:
    """Return the state of a run whose Ray task failed with *exc* (not a task error)."""
    errors = ray.exceptions
    if isinstance(exc, errors.TaskCancelledError):
        return Cancelled(message=f"Ray cancelled task run {run.name!r}.", data=exc)
    if isinstance(exc, errors.OutOfMemoryError):
        what = "was killed by Ray's memory monitor (the node ran out of memory)"
    elif isinstance(exc, errors.WorkerCrashedError | errors.RayActorError):
        what = "died before the run finished"
    elif isinstance(exc, errors.ObjectLostError):
        what = "finished, but Ray lost the run's outcome (ObjectLostError)"
    else:
        what = "failed in Ray"
    lines = [line for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    detail = f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__
    reason = f"the Ray worker running task run {run.name!r} {what} ({detail})"
    return crashed_outcome(run, reason, exc)


# ---- the Ray side -----------------------------------------------------------------------------

_RAY_FUNCTION: Any = None
# Tasks already unpickled in this worker process, by digest (a few; cleared when full).
_worker_tasks: dict[bytes, Any] = {}


def _ray_function(options: Mapping[str, object], name: str) -> Any:
    """Return the Ray remote function with these options (Ray's retries off by default)."""
    global _RAY_FUNCTION
    if _RAY_FUNCTION is None:
        _RAY_FUNCTION = _import_ray().remote(_run_on_worker)
    return _RAY_FUNCTION.options(**{"max_retries": 0, **options, "name": name})


def _run_on_worker(
    digest: bytes, task_arg: bytes | list[Any], blob: bytes, *upstream: bytes
) -> bytes:
    """The Ray task: run one task run's engine on this worker; return its pickled outcome.

    *upstream* are the pickled outcomes of the upstream runs, resolved by Ray before the call.
    """
    try:
        payload, wait_for = _load(digest, task_arg, blob, upstream)
    except Exception as exc:
        error = SerializationError(
            f"the task run could not be unpickled on the Ray worker: {type(exc).__name__}: "
            f"{exc}. Workers must be able to import the task's module (install it on the "
            "cluster or ship it with a runtime_env), or register it with "
            "cloudpickle.register_pickle_by_value(module)."
        )
        return _dump(RemoteOutcome(Failed(data=error, message=str(error)), 0, ""))
    return _dump(_execute(payload, wait_for))


def _load(
    digest: bytes, task_arg: bytes | list[Any], blob: bytes, upstream: tuple[bytes, ...]
) -> tuple[TaskPayload, list[Any]]:
    import cloudpickle

    task = _worker_tasks.get(digest)
    if task is None:
        data = task_arg if isinstance(task_arg, bytes) else _import_ray().get(task_arg[0])
        task = cloudpickle.loads(data)
        if len(_worker_tasks) >= 128:
            _worker_tasks.clear()
        _worker_tasks[digest] = task
    payload: TaskPayload
    wait_for: list[Any]
    payload, wait_for = cloudpickle.loads(blob)
    payload.task = task
    if upstream:
        states = [cloudpickle.loads(item).state for item in upstream]

        def fill(placeholder: _Upstream) -> object:
            return states[placeholder.index]

        payload.parameters = {k: _swap(v, fill) for k, v in payload.parameters.items()}
        wait_for = [_swap(item, fill) for item in wait_for]
    return payload, wait_for


def _execute(payload: TaskPayload, wait_for: list[Any]) -> RemoteOutcome:
    from ..engine.lifecycle import crash_state
    from ..engine.resolve import resolve_parameters
    from ..exceptions import UpstreamTaskError
    from ..states import NotReady, StateDetails

    details = StateDetails(task_run_id=payload.task_run_id)
    if wait_for:
        try:
            resolve_parameters({}, wait_for)
        except UpstreamTaskError as exc:
            return RemoteOutcome(NotReady(message=str(exc), state_details=details), 0, "")
    try:
        return run_payload(payload)
    except BaseException as exc:  # SystemExit from a task: report it, keep the worker
        return RemoteOutcome(crash_state(exc, details), 1, "")


def _dump(outcome: RemoteOutcome) -> bytes:
    import cloudpickle

    try:
        data: bytes = cloudpickle.dumps(outcome)
    except Exception as exc:  # the state passed _portable, but the logs may not
        outcome.logs = []
        outcome.state = Failed(data=SerializationError(str(exc)), message=str(exc))
        data = cloudpickle.dumps(outcome)
    return data
