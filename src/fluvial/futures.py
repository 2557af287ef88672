"""Futures: handles on task runs that were submitted to a task runner.

A :class:`Future` is done when its task run reaches a final state (or ``NotReady`` because an
upstream failed). Waiting is cheap: a finished future answers without taking a lock, and an
unfinished one parks the caller on a private lock released by the run's completion. A worker
thread of the thread runner that waits on a future steps aside from its pool while it waits,
so nested submit-and-wait cannot exhaust a bounded pool.
"""

from __future__ import annotations

__all__ = (
    "DoneAndNotDoneFutures",
    "Future",
    "FutureList",
    "PrefectFuture",
    "PrefectFutureList",
    "as_completed",
    "resolve_futures_to_results",
    "resolve_futures_to_states",
    "wait",
)

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ._blocking import blocking_region, stepping_aside
from .states import Pending, State

if TYPE_CHECKING:
    import uuid

    from ._runs import TaskRun

R = TypeVar("R")
_logger = logging.getLogger("fluvial.futures")
# One lock guards the hand-over between a finishing run and its waiters; it is held only for
# a few list operations, so sharing it costs less than a lock per future.
_handover = threading.Lock()


class Future(Generic[R]):
    """The eventual final state of one submitted task run."""

    __slots__ = ("__weakref__", "_callbacks", "_final", "_waiters", "task_run")

    def __init__(self, task_run: TaskRun) -> None:
        self.task_run = task_run
        self._final: State[R] | None = None
        self._waiters: list[threading.Lock] | None = None
        self._callbacks: list[Callable[[Future[R]], None]] | None = None

    @property
    def task_run_id(self) -> uuid.UUID:
        """The id of the task run behind this future."""
        return self.task_run.id

    @property
    def state(self) -> State[R]:
        """The task run's current state: its final state once done, else the live one."""
        if self._final is not None:
            return self._final
        current = self.task_run.state
        return current if current is not None else Pending()

    def done(self) -> bool:
        """Return whether the task run has finished."""
        return self._final is not None

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the task run finishes, or *timeout* seconds pass; never raises."""
        if self._final is not None:
            return
        waiter = threading.Lock()
        waiter.acquire()
        with _handover:
            if self.done():
                return
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
        with blocking_region():
            acquired = waiter.acquire(timeout=-1 if timeout is None else max(timeout, 0))
        if not acquired:
            with _handover:
                if self._waiters is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """Wait for the run and return its value, or raise the exception that ended it.

        Raises:
            TimeoutError: the run did not finish within *timeout* seconds.
        """
        self.wait(timeout)
        final = self._final
        if final is None:
            raise TimeoutError(
                f"task run {self.task_run.name!r} did not finish within {timeout} second(s)"
            )
        value: R = final.result(raise_on_failure=raise_on_failure)
        return value

    def add_done_callback(self, fn: Callable[[Future[R]], None]) -> None:
        """Call ``fn(future)`` when the run finishes (at once if it already has)."""
        if self._final is None:
            with _handover:
                if self._final is None:
                    if self._callbacks is None:
                        self._callbacks = []
                    self._callbacks.append(fn)
                    return
        _invoke(fn, self)

    def set_state(self, state: State[R]) -> None:
        """Record the run's final state and wake everything waiting on it (runners call this)."""
        with _handover:
            self._final = state
            waiters, self._waiters = self._waiters, None
            callbacks, self._callbacks = self._callbacks, None
        if waiters:
            for waiter in waiters:
                waiter.release()
        if callbacks:
            for fn in callbacks:
                _invoke(fn, self)

    def __await__(self) -> Generator[Any, None, R]:
        """Wait for the run without blocking the event loop, then return its value."""
        if self._final is None:
            import asyncio

            loop = asyncio.get_running_loop()
            signal = loop.create_future()

            def wake(_: Future[R]) -> None:
                loop.call_soon_threadsafe(_resolve, signal)

            self.add_done_callback(wake)
            yield from stepping_aside(signal).__await__()
        return self.result()

    def __repr__(self) -> str:
        return f"Future(task_run={self.task_run.name!r}, state={self.state!r})"


def _resolve(signal: Any) -> None:
    if not signal.done():
        signal.set_result(None)


def _invoke(fn: Callable[[Any], None], future: Future[Any]) -> None:
    try:
        fn(future)
    except Exception:
        _logger.exception("a done-callback of %r raised", future)


#: Prefect's name for the future class, so annotations port unchanged.
PrefectFuture = Future


class FutureList(list[Future[R]]):
    """The futures of a ``Task.map`` call, in the order of the mapped items."""

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every run finishes, or *timeout* seconds pass."""
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """Return every run's value in order; fail as soon as any run fails.

        Raises:
            TimeoutError: not every run finished within *timeout* seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if raise_on_failure:
            try:
                for future in as_completed(self, timeout=timeout):
                    future.result(raise_on_failure=True)
            except TimeoutError:
                raise TimeoutError(
                    f"{sum(not f.done() for f in self)} of {len(self)} futures did not "
                    f"finish within {timeout} second(s)"
                ) from None
        return [
            f.result(timeout=_remaining(deadline), raise_on_failure=raise_on_failure) for f in self
        ]


#: Prefect's name.
PrefectFutureList = FutureList


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class DoneAndNotDoneFutures(NamedTuple, Generic[R]):
    """The result of :func:`wait`: the futures that finished and those that did not."""

    done: set[Future[R]]
    not_done: set[Future[R]]


def wait(futures: Iterable[Future[R]], timeout: float | None = None) -> DoneAndNotDoneFutures[R]:
    """Wait until every future is done or *timeout* seconds pass; never raises on timeout."""
    unique = set(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in unique:
        if not future.done():
            future.wait(_remaining(deadline))
    done = {future for future in unique if future.done()}
    return DoneAndNotDoneFutures(done, unique - done)


def as_completed(futures: Iterable[Future[R]], timeout: float | None = None) -> Iterator[Future[R]]:
    """Yield futures as they finish, those already finished first.

    Raises:
        TimeoutError: some futures were still unfinished after *timeout* seconds.
    """
    unique = list(dict.fromkeys(futures))
    finished: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
    pending = 0
    for future in unique:
        if future.done():
            yield future
        else:
            pending += 1
            future.add_done_callback(finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        try:
            with blocking_region():
                future = finished.get(timeout=_remaining(deadline))
        except queue.Empty:
            raise TimeoutError(
                f"{pending} (of {len(unique)}) futures unfinished after {timeout} second(s)"
            ) from None
        pending -= 1
        yield future


def _visit(expr: Any, leaf: Callable[[Any], Any]) -> Any:
    """Rebuild *expr* with futures and states replaced by ``leaf(...)``; untouched if none."""
    if isinstance(expr, Future | State):
        return leaf(expr)
    kind = type(expr)
    if kind is FutureList:
        return [_visit(item, leaf) for item in expr]
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        items = [_visit(item, leaf) for item in expr]
        if all(a is b for a, b in zip(items, expr, strict=True)):
            return expr
        return kind(items)
    if kind is dict:
        values = {key: _visit(value, leaf) for key, value in expr.items()}
        if all(values[key] is expr[key] for key in expr):
            return expr
        return values
    return expr


def resolve_futures_to_states(expr: Any) -> Any:
    """Return *expr* with every future in it (inside lists, tuples, sets, dicts) replaced by
    its final state, waiting for each."""

    def to_state(item: Any) -> Any:
        if isinstance(item, Future):
            item.wait()
            return item.state
        return item

    return _visit(expr, to_state)


def resolve_futures_to_results(expr: Any) -> Any:
    """Return *expr* with every future and state in it replaced by its value."""

    def to_result(item: Any) -> Any:
        if isinstance(item, Future):
            return item.result()
        return item.result()

    return _visit(expr, to_result)
