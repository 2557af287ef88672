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
import importlib.util
import logging
import pickle
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

from ..engine.resolve import needs_resolution
from ..engine.task_engine import new_task_run
from ..exceptions import MissingExtraError, SerializationError
from ..futures import Future, wait
from ..states import Cancelled, Failed, State
from ._process_worker import dumps
from ._ray_jobs import Call, Job, Linker, remote_options
from ._ray_setup import connect
from ._ray_watch import Finisher, failure_state, outcome_state
from ._ray_worker import import_ray, remote_function, swap
from ._remote import crashed_outcome, pickling_error
from ._shipping import Packer
from .base import TaskRunner
from .thread import _when_all_done

if TYPE_CHECKING:
    from ..tasks import Task

_logger = logging.getLogger("fluvial.runners.ray")
# Pickled tasks up to this size travel with each call; larger ones once to Ray's object store.
_INLINE_TASK_BYTES = 64 * 1024


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
        self._jobs: dict[Future[Any], Job] = {}
        self._lock = threading.Lock()
        self._blobs: dict[int, tuple[Task[..., Any], bytes, bytes | list[Any]]] = {}
        self._packer = Packer()
        # Remote functions with .options() applied, by (options, task name): one per pair.
        self._functions: dict[tuple[int, str], tuple[Mapping[str, object], Any]] = {}
        self._finisher: Finisher | None = None

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
            self._ray = import_ray()
            self._owns_ray = connect(self._ray, self.address, self.init_kwargs)
        except BaseException:
            self._started = False
            raise
        self._finisher = Finisher(self._ray, self._complete)
        return self

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
            self._finisher.stop()
            self._finisher = None
        self._blobs.clear()
        self._functions.clear()
        self._packer.clear()
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
        self._require_started()
        run = new_task_run(task, parameters)
        future: Future[Any] = Future(run)
        job = Job(task, run, parameters, wait_for, future)
        if job.options:
            self._function(job)  # bad options fail here, in the caller
        self._jobs[future] = job
        self._dispatch(job)
        return future

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of runs that have not finished."""
        return list(self._jobs)

    def _dispatch(self, job: Job) -> None:
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

    def _prepare(self, job: Job) -> Call | State[Any] | list[Future[Any]]:
        """Build the Ray task's arguments; or the futures to wait for; or a final state."""
        parameters, wait_for = job.parameters, job.wait_for
        link = None
        if needs_resolution(parameters, wait_for):
            link = Linker(self._jobs)
            with self._lock:
                parameters = {name: swap(value, link) for name, value in parameters.items()}
                wait_for = [swap(item, link) for item in wait_for]
            if link.blocked:
                return link.blocked

        try:
            digest, task_arg = self._task_arg(job.task)
        except Exception as exc:
            error = SerializationError(
                f"task {job.task.name!r} cannot be pickled to send it to a Ray worker: {exc}"
            )
            return Failed(data=error, message=str(error))
        try:
            context = self._packer.context(job.submission)
            blob = _message(job, parameters, wait_for)
        except Exception as exc:
            failure = pickling_error(job.task, parameters, exc, "a Ray worker")
            return Failed(data=failure, message=str(failure))
        inline, box = (task_arg, None) if isinstance(task_arg, bytes) else (None, task_arg)
        # One bytes argument: Ray's cost per task grows with the number of arguments.
        header = pickle.dumps((digest, inline, context, blob), protocol=5)
        if link is None:
            return Call(header, box, [])
        job.sources = link.sources
        return Call(header, box, link.refs)

    def _launch(self, job: Job, call: Call) -> None:
        try:
            function = self._function(job)
            if call.task_box is None:
                ref = function.remote(call.header, *call.upstream)
            else:
                ref = function.remote(call.header, call.task_box, *call.upstream)
        except Exception as exc:
            reason = f"Ray did not accept task run {job.run.name!r}: {exc}"
            self._finish(job, crashed_outcome(job.run, reason, exc))
            return
        with self._lock:
            job.ref = ref
        assert self._finisher is not None
        self._finisher.add(ref, job)

    def _function(self, job: Job) -> Any:
        """Return the remote function for *job*'s options, named after its task; made once
        per options and task name (``.options()`` costs tens of microseconds).

        Raises:
            ValueError: Ray refused the options.
        """
        name = str(job.task.name)
        key = (id(job.options), name)
        cached = self._functions.get(key)
        if cached is None or cached[0] is not job.options:
            cached = (job.options, remote_function(job.options, name))
            self._functions[key] = cached
        return cached[1]

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

    def _complete(self, job: Job, value: object) -> None:
        """Finish *job* from its Ray task's return value, or the exception reading it."""
        try:
            if isinstance(value, Exception):
                self._failed_in_ray(job, value)
            else:
                self._finish(job, outcome_state(job.run, value))
        except BaseException as exc:  # never leave a future unfinished
            reason = f"the Ray runner could not read the outcome of {job.run.name!r}: {exc}"
            self._finish(job, crashed_outcome(job.run, reason, exc))

    def _failed_in_ray(self, job: Job, exc: Exception) -> None:
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
        self._finish(job, failure_state(job.run, exc, self._ray))

    def _finish(self, job: Job, state: State[Any]) -> None:
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


def _message(job: Job, parameters: dict[str, Any], wait_for: list[Any]) -> bytes:
    """Return what is particular to *job*'s run, pickled as the worker's ``unpack`` reads it:
    with the standard pickler where it can (several times faster), cloudpickle where needed.
    """
    run = job.run
    name = run._name if job.task.task_run_name is None else None  # else named on the worker
    return dumps((run.id, name, run.tags, parameters, wait_for))
