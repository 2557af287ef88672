"""Let a worker thread step aside while it blocks.

A worker of the thread runner that waits on a future or sleeps before a retry is not doing
work. :func:`blocking_region` tells the worker's pool so it may start another thread to keep
``max_workers`` threads busy; this is what makes a bounded pool safe for tasks that submit and
wait on other tasks (Prefect deadlocks there, issue #17060). Dask's ``secede``/``rejoin`` is
the same idea.
"""

from __future__ import annotations

__all__ = (
    "WorkerPoolHooks",
    "blocking_region",
    "current_pool",
    "set_current_pool",
    "stepping_aside",
)

import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

T = TypeVar("T")


class WorkerPoolHooks(Protocol):
    """What a pool offers its workers for stepping aside."""

    def release_slot(self) -> None:
        """Stop counting the calling worker as busy."""

    def reacquire_slot(self) -> None:
        """Count the calling worker as busy again."""


_local = threading.local()


def current_pool() -> WorkerPoolHooks | None:
    """Return the pool the calling thread works for, if any."""
    return getattr(_local, "pool", None)


def set_current_pool(pool: WorkerPoolHooks | None) -> None:
    """Mark the calling thread as a worker of *pool*."""
    _local.pool = pool


@contextmanager
def blocking_region() -> Iterator[None]:
    """Release the calling worker's pool slot for the duration of the block."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        yield
        return
    pool.release_slot()
    try:
        yield
    finally:
        pool.reacquire_slot()


async def stepping_aside(awaitable: Awaitable[T]) -> T:
    """Await *awaitable* with the calling worker's pool slot released.

    An async task on the thread runner runs on its worker thread's event loop, so while it
    awaits a future or sleeps, the thread is idle: let the pool use another one meanwhile.
    """
    pool = getattr(_local, "pool", None)
    if pool is None:
        return await awaitable
    pool.release_slot()
    try:
        return await awaitable
    finally:
        pool.reacquire_slot()
