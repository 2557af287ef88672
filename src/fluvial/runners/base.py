"""The contract between flows and the places where task runs execute.

A runner takes a task and its bound parameters and returns a :class:`~fluvial.futures.Future`.
It must not start a task before the futures in its arguments are done (DESIGN.md, principle
4): that is what lets bounded pools and clusters run deep dependency chains without a worker
ever blocking on another task. The engine itself (retries, timeouts, hooks) runs wherever the
runner runs the task.
"""

from __future__ import annotations

__all__ = ("TaskRunner",)

import abc
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from ..annotations import BaseAnnotation, allow_failure, unmapped
from ..engine.resolve import state_value
from ..exceptions import MappingLengthMismatch, MappingMissingIterable
from ..futures import Future, FutureList

if TYPE_CHECKING:
    from ..tasks import Task


#: Why a submit to a runner that was never entered fails, and the usual way out.
NOT_STARTED = (
    "The task runner must be started (entered) before submitting work; "
    "task.submit() does this for you inside a flow"
)


class TaskRunner(abc.ABC):
    """Runs submitted task runs and hands back futures; one instance per flow run."""

    def __init__(self) -> None:
        self._started = False

    @property
    def name(self) -> str:
        """A short name for logs: the class name without ``TaskRunner``, lowercased."""
        return type(self).__name__.lower().replace("taskrunner", "")

    @abc.abstractmethod
    def duplicate(self) -> Self:
        """Return an unstarted runner with the same configuration (one per flow run)."""

    @abc.abstractmethod
    def submit(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> Future[Any]:
        """Start a run of *task* with *parameters* once its upstream futures are done.

        Raises:
            RuntimeError: the runner has not been entered (``with runner:``).
        """

    def pending_futures(self) -> list[Future[Any]]:
        """Return the futures of submitted runs that have not finished."""
        return []

    def map(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        """Submit one run per item of the iterable parameters; return the futures in order.

        Futures given directly as parameters are waited on first, so a task's list result can
        be mapped over. ``unmapped(x)`` passes ``x`` whole to every run.

        Raises:
            MappingMissingIterable: no parameter is iterable.
            MappingLengthMismatch: the iterables have different lengths.
        """
        iterables: dict[str, tuple[list[Any], BaseAnnotation[Any] | None]] = {}
        static: dict[str, Any] = {}
        for name, value in _expand_variadic(task, parameters).items():
            resolved = _resolve_top_level(value)
            if isinstance(resolved, unmapped):
                static[name] = resolved.unwrap()
                continue
            wrapper = resolved if isinstance(resolved, BaseAnnotation) else None
            inner = wrapper.unwrap() if wrapper is not None else resolved
            if _is_iterable(inner):
                iterables[name] = (list(inner), wrapper)
            else:
                static[name] = value
        if not iterables:
            raise MappingMissingIterable(
                "Task.map() needs at least one iterable argument to map over; got "
                f"{parameters!r}. Call the task or use .submit() for a single run."
            )
        lengths = {name: len(items) for name, (items, _) in iterables.items()}
        if len(set(lengths.values())) > 1:
            raise MappingLengthMismatch(
                "Task.map() got iterables of different lengths; they must all be the same "
                f"length. Lengths: {lengths}"
            )
        futures: FutureList[Any] = FutureList()
        for index in range(next(iter(lengths.values()))):
            call = dict(static)
            for name, (items, wrapper) in iterables.items():
                item = items[index]
                call[name] = wrapper.rewrap(item) if wrapper is not None else item
            bound = task._signature.bind((), call)
            futures.append(self.submit(task, bound, wait_for=wait_for))
        return futures

    def _require_started(self) -> None:
        """Raise the error for a submit to a runner that was never entered."""
        if not self._started:
            raise RuntimeError(NOT_STARTED)

    def __enter__(self) -> Self:
        if self._started:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._started = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._started = False

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _expand_variadic(task: Task[..., Any], parameters: dict[str, Any]) -> dict[str, Any]:
    name = task._signature.variadic_keyword()
    if name is None or name not in parameters:
        return parameters
    expanded = {k: v for k, v in parameters.items() if k != name}
    expanded.update(parameters[name])
    return expanded


def _resolve_top_level(value: Any) -> Any:
    # The mapped-over value itself may be a future (map over a task's list result).
    if isinstance(value, Future):
        return value.result()
    if isinstance(value, BaseAnnotation) and isinstance(value.unwrap(), Future):
        future = value.unwrap()
        future.wait()
        allowed = isinstance(value, allow_failure)
        return value.rewrap(state_value(future.state, allowed, future.task_run.name))
    return value


def _is_iterable(value: Any) -> bool:
    if isinstance(value, str | bytes | bytearray) or hasattr(value, "read"):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True
