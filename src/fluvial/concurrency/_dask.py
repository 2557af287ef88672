"""Limits shared by a Dask cluster, kept by its scheduler.

The first use from any process installs a :class:`~._remote.TableHost` in the scheduler (a
``fluvial_concurrency`` handler, through ``Client.run_on_scheduler``); after that each
operation is one scheduler call. The scheduler outlives workers and clients, so the table
survives any of them dying. Slots held by a worker the scheduler no longer lists are freed at the
next call; those of another dead holder (a client) lapse after their ``lease_duration``. The
scheduler must be able to import fluvial (it runs the host's code).
"""

from __future__ import annotations

__all__ = ("DaskBackend",)

import importlib
import threading
from typing import Any

from ..exceptions import ConfigurationError, MissingExtraError
from ._remote import RemoteBackend, TableHost

_HANDLER = "fluvial_concurrency"


_WORKER = "dask-worker:"


def _install(dask_scheduler: Any) -> None:
    """Run on the scheduler: add the table host once."""
    if _HANDLER in dask_scheduler.handlers:
        return
    host = TableHost()

    def handle(action: str, payload: dict[str, Any]) -> Any:
        # Holders on workers the scheduler no longer lists (killed, lost, retired) are dead:
        # free their slots now rather than when their leases lapse.
        alive = dask_scheduler.workers
        for holder in {r.holder for r in (*host.table.leases.values(), *host.table.queue.values())}:
            if holder.startswith(_WORKER) and holder[len(_WORKER) :] not in alive:
                host.forget_holder(holder)
        return host.handle(action, payload)

    dask_scheduler.handlers[_HANDLER] = handle
    dask_scheduler.extensions[_HANDLER] = host


class DaskBackend(RemoteBackend):
    """Slots held in the table of the Dask scheduler at *address*."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self._installed = False
        self._client: Any = None
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        dd = _distributed()
        try:
            worker = dd.get_worker()
        except ValueError:
            worker = None
        if worker is not None and worker.scheduler.address == self.address:
            return worker._get_client()
        with self._lock:
            if self._client is not None and self._client.status not in ("running", "connecting"):
                self._client = None  # the runner that lent it has closed it
            if self._client is None:
                try:
                    self._client = dd.Client.current()
                    if self._client.scheduler.address != self.address:
                        raise ValueError
                except ValueError:
                    self._client = dd.Client(self.address, set_as_default=False, timeout=10)
            return self._client

    def _holder(self) -> str:
        try:
            return f"{_WORKER}{_distributed().get_worker().address}"
        except ValueError:
            return super()._holder()  # a client: its leases lapse by lease_duration

    def _call(self, action: str, payload: dict[str, Any]) -> Any:
        client = self._connection()
        try:
            if not self._installed:
                client.run_on_scheduler(_install)
                self._installed = True
            rpc = getattr(client.scheduler, _HANDLER)
            return client.sync(rpc, action=action, payload=payload)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot reach the Dask scheduler at {self.address} for concurrency limits: {exc}"
            ) from exc


def _distributed() -> Any:
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise MissingExtraError("concurrency limits on Dask", "dask") from exc
