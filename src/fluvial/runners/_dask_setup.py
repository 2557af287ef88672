"""How a :class:`~fluvial.runners.dask.DaskTaskRunner` gets its client: checks of its
arguments, the cluster it starts or connects to, and its optional performance report."""

from __future__ import annotations

__all__ = ("check_arguments", "connect", "start_report")

import importlib
import importlib.util
import logging
import os
from collections.abc import Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from ._dask_client import on_worker

if TYPE_CHECKING:
    import distributed

    from .dask import DaskTaskRunner

_logger = logging.getLogger("fluvial.runners")
# Seconds to reach a scheduler given by address before failing (client_kwargs["timeout"] wins).
_CONNECT_TIMEOUT = 5.0


def check_arguments(
    address: str | None,
    cluster: object,
    cluster_class: object,
    cluster_kwargs: Mapping[str, object] | None,
    adapt_kwargs: Mapping[str, object] | None,
) -> None:
    """Refuse combinations of the runner's arguments that name two clusters."""
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


def connect(runner: DaskTaskRunner, dd: Any, stack: ExitStack) -> distributed.Client:
    """Return a client for *runner*; what it started is closed by *stack*."""
    kwargs: dict[str, Any] = {"set_as_default": False, **runner.client_kwargs}
    if runner.address is not None:
        return _by_address(runner.address, dd, kwargs, stack)
    if runner.cluster is not None:  # the user's: adapted if asked, never closed here
        if runner.adapt_kwargs is not None:
            runner.cluster.adapt(**runner.adapt_kwargs)  # type: ignore[arg-type]
        given: distributed.Client = dd.Client(runner.cluster, **kwargs)
        stack.callback(given.close)
        return given
    if runner.cluster_class is None and not runner.cluster_kwargs and on_worker(dd):
        # A flow run inside a Dask task uses that cluster, from a seceded worker thread.
        worker_client: distributed.Client = stack.enter_context(dd.worker_client())
        return worker_client
    cluster_class = _cluster_class(runner.cluster_class, dd)
    cluster_kwargs = dict(runner.cluster_kwargs)
    if cluster_class is dd.LocalCluster:
        cluster_kwargs.setdefault("processes", True)
    cluster = cluster_class(**cluster_kwargs)
    stack.callback(cluster.close)
    if runner.adapt_kwargs is not None:
        cluster.adapt(**runner.adapt_kwargs)
    local_client: distributed.Client = dd.Client(cluster, **kwargs)
    stack.callback(local_client.close)
    return local_client


def _by_address(
    address: str, dd: Any, kwargs: dict[str, Any], stack: ExitStack
) -> distributed.Client:
    kwargs.setdefault("timeout", _CONNECT_TIMEOUT)
    try:
        client: distributed.Client = dd.Client(address, **kwargs)
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(
            f"DaskTaskRunner could not reach the Dask scheduler at {address!r} "
            f"within {kwargs['timeout']} s ({exc}). Check the address and that the "
            "scheduler is running, or raise client_kwargs['timeout']."
        ) from exc
    stack.callback(client.close)
    return client


def _cluster_class(cluster_class: object, dd: Any) -> Any:
    if cluster_class is None:
        return dd.LocalCluster
    if not isinstance(cluster_class, str):
        return cluster_class
    module_name, _, name = cluster_class.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"DaskTaskRunner: cluster_class {cluster_class!r} cannot be imported: {exc}"
        ) from exc


def start_report(
    dd: Any, client: distributed.Client, path: str | os.PathLike[str], stack: ExitStack
) -> None:
    """Start Dask's performance report; *stack* writes it when it closes (before the client
    closes: the stack was given the client first)."""
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
    stack.callback(_write_report, report, client, where)


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
