"""The Ray runner's record of a submitted run, and how a run's arguments become a Ray call:
futures of runs still in Ray become their ``ObjectRef``s (arguments of the Ray task), futures
of finished runs their final states."""

from __future__ import annotations

__all__ = ("Call", "Job", "Linker", "remote_options")

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..futures import Future
from ._ray_worker import Upstream
from ._remote import capture_submission

if TYPE_CHECKING:
    from .._runs import TaskRun
    from ..tasks import Task
    from ._remote import Submission

_NO_OPTIONS: Mapping[str, object] = MappingProxyType({})
_remote_options: ContextVar[Mapping[str, object]] = ContextVar(
    "fluvial_ray_remote_options", default=_NO_OPTIONS
)


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


class Job:
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
        self.sources: list[Job] = []  # the runs whose ObjectRefs this run's Ray task takes
        self.failed_in_ray = False  # the Ray task itself failed (the worker died…)


@dataclass(slots=True)
class Call:
    """The arguments of one Ray task (see :func:`~fluvial.runners._ray_worker.run_on_worker`)."""

    header: bytes  # task digest, the pickled task when small, flow context, the run's message
    task_box: list[Any] | None  # a large task's ObjectRef in a list (see _task_arg)
    upstream: list[Any]  # the upstream runs' ObjectRefs, resolved by Ray before the call


class Linker:
    """Replaces the futures of a run's arguments: by ``Upstream`` placeholders for the runs
    still in Ray (their refs become Ray task arguments), by final states for finished runs."""

    def __init__(self, jobs: dict[Future[Any], Job]) -> None:
        self.jobs = jobs
        self.refs: list[Any] = []
        self.sources: list[Job] = []
        self.blocked: list[Future[Any]] = []
        self._index: dict[Future[Any], Upstream] = {}

    def __call__(self, future: Future[Any]) -> object:
        placeholder = self._index.get(future)
        if placeholder is not None:
            return placeholder
        source = self.jobs.get(future)
        if source is not None and source.ref is not None and not source.failed_in_ray:
            placeholder = self._index[future] = Upstream(len(self.refs))
            self.refs.append(source.ref)
            self.sources.append(source)
            return placeholder
        if future.done():
            return future.state
        self.blocked.append(future)  # a run not in Ray (yet): wait for it in this process
        return future
