"""Which backend holds the slots for code running here.

The answer follows where the code runs, so that everything sharing a limit meets in one table:

1. a backend set explicitly with :func:`use_backend` (tests, embedding applications);
2. a worker of the process runner: the lease files under ``<FLUVIAL_HOME>/concurrency``;
3. a Dask worker: the table kept by that worker's scheduler;
4. a Ray worker: the named actor of the Ray cluster;
5. a flow run whose task runner is one of the above, for code in the flow process itself;
6. otherwise this process's own table (threads and event loops).
"""

from __future__ import annotations

__all__ = (
    "current_backend",
    "local_backend",
    "mark_process_worker",
    "reset_backends",
    "use_backend",
)

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ..context import _flow_run_context
from ._backend import Backend, LocalBackend

_local = LocalBackend()
_override: ContextVar[Backend | None] = ContextVar("fluvial.concurrency_backend", default=None)
_process_worker = False
_cache: dict[Any, Backend] = {}


def local_backend() -> LocalBackend:
    """Return this process's own backend."""
    return _local


def reset_backends() -> None:
    """Start from empty tables in this process (tests); cluster and file tables are kept."""
    global _local
    _local = LocalBackend()
    _cache.clear()


def mark_process_worker() -> None:
    """Mark this process as a process-runner worker (its tasks share limits through files)."""
    global _process_worker
    _process_worker = True


@contextmanager
def use_backend(backend: Backend) -> Iterator[Backend]:
    """Hold slots in *backend* for the duration of the block (in this context)."""
    token = _override.set(backend)
    try:
        yield backend
    finally:
        _override.reset(token)


def current_backend() -> Backend:
    """Return the backend for code running here (see the module docstring)."""
    backend = _override.get()
    if backend is not None:
        return backend
    if _process_worker:
        return file_backend()
    if "distributed" in sys.modules:
        address = _dask_worker_scheduler()
        if address is not None:
            return dask_backend(address)
    if "ray" in sys.modules and _in_ray_worker():
        return ray_backend()
    flow_ctx = _flow_run_context.get()
    if flow_ctx is not None:
        return _for_runner(flow_ctx.task_runner)
    return _local


def _for_runner(runner: Any) -> Backend:
    kind = type(runner).__name__
    if kind == "ProcessPoolTaskRunner":
        return file_backend()
    if kind == "DaskTaskRunner" and getattr(runner, "_client", None) is not None:
        return dask_backend(str(runner._client.scheduler.address))
    if kind == "RayTaskRunner":
        return ray_backend()
    return _local


def state_directory() -> Path:
    """Return where the lease files of the cross-process backend live."""
    if "fluvial.settings" in sys.modules:
        from ..settings import get_current_settings

        home = Path(get_current_settings().home)
    else:
        home = Path(os.environ.get("FLUVIAL_HOME") or "~/.fluvial").expanduser()
    return home / "concurrency"


def file_backend() -> Backend:
    """Return the cross-process backend for this machine's FLUVIAL_HOME."""
    directory = state_directory()
    backend = _cache.get(("file", directory))
    if backend is None:
        from ._files import FileBackend

        backend = _cache[("file", directory)] = FileBackend(directory)
    return backend


def dask_backend(address: str) -> Backend:
    """Return the backend kept by the Dask scheduler at *address*."""
    backend = _cache.get(("dask", address))
    if backend is None:
        from ._dask import DaskBackend

        backend = _cache[("dask", address)] = DaskBackend(address)
    return backend


def ray_backend() -> Backend:
    """Return the backend kept by the named actor of the connected Ray cluster."""
    backend = _cache.get("ray")
    if backend is None:
        from ._ray import RayBackend

        backend = _cache["ray"] = RayBackend()
    return backend


def _dask_worker_scheduler() -> str | None:
    import distributed

    try:
        worker = distributed.get_worker()
    except ValueError:
        # Threads a task starts (a timeout helper, a nested thread runner) are not marked as
        # the worker's; a process running exactly one worker is still that worker.
        running = [w for w in list(distributed.Worker._instances) if w.status.name == "running"]
        if len(running) != 1:
            return None
        worker = running[0]
    return str(worker.scheduler.address)


def _in_ray_worker() -> bool:
    import ray

    if not ray.is_initialized():
        return False
    return bool(ray.get_runtime_context().worker.mode == ray.WORKER_MODE)
