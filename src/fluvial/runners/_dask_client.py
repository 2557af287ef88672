"""Clients of the cluster a run uses, and Dask annotations, for code running on the Dask runner.

:func:`get_dask_client` and :func:`get_async_dask_client` give a task on a Dask worker (or a
flow on a :class:`~fluvial.runners.dask.DaskTaskRunner`) a client of that cluster, for Dask
collections; :func:`dask_options` gives tasks Dask annotations. Re-exported by
:mod:`fluvial.runners.dask`.
"""

from __future__ import annotations

__all__ = (
    "dask_options",
    "get_async_dask_client",
    "get_dask_client",
    "import_distributed",
    "on_worker",
)

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from ..exceptions import MissingContextError, MissingExtraError

if TYPE_CHECKING:
    import distributed


def import_distributed() -> Any:
    """Import Dask's ``distributed``, or say which extra to install."""
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
    import_distributed()
    from dask.base import annotate, get_annotations

    current = get_annotations().get("resources")
    resources = annotations.get("resources")
    if isinstance(current, dict) and isinstance(resources, dict):
        annotations["resources"] = {**current, **resources}
    with annotate(**annotations):
        yield


def on_worker(dd: Any) -> bool:
    """Whether this code runs in a task on a Dask worker."""
    try:
        dd.get_worker()
    except ValueError:
        return False
    return True


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
    dd = import_distributed()
    if on_worker(dd) and not client_kwargs:
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
    dd = import_distributed()
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
    if on_worker(dd):
        return str(dd.get_worker().scheduler.address)
    return _runner_address()


def _runner_address() -> str:
    from ..context import _flow_run_context
    from .dask import DaskTaskRunner

    flow_ctx = _flow_run_context.get()
    runner = flow_ctx.task_runner if flow_ctx is not None else None
    if isinstance(runner, DaskTaskRunner) and runner._client is not None:
        return str(runner._client.scheduler_info()["address"])
    raise MissingContextError(
        "get_dask_client() and get_async_dask_client() need a task running on a Dask worker, "
        "or a flow run whose task runner is a started DaskTaskRunner"
    )
