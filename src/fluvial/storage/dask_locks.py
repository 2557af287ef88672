"""SERIALIZABLE locks across a Dask cluster, kept in the scheduler.

:class:`DaskLockManager` keeps its lock table in the scheduler's metadata store
(``client.set_metadata`` / ``get_metadata``), so every worker and every client of one scheduler
sees the same locks. The table is split into 256 stripes by a hash of the key, each stripe a
small dict ``{key: {"holder", "owner", "expires"}}`` under ``["fluvial-locks", <stripe>]``.
Reads are one ``get_metadata`` call. A change (take, release) is a compare-and-set: under a
``distributed.Lock`` named ``fluvial-lock:<stripe>`` the stripe is read, checked, changed and
written back, so two processes can never both take one key. The guard locks are per stripe,
not per key, so the scheduler keeps a bounded number of them however many keys are used, and
only live holds stay in the table (a release deletes its entry, a write sweeps lapsed ones).

A holder that dies must not block a key forever:

- a hold may expire: ``hold_timeout`` seconds after it was taken (by the taker's wall clock,
  compared with the reader's: clocks of the machines involved are assumed to be in sync);
- a hold taken on a Dask worker records that worker's address, and lapses as soon as the
  scheduler no longer lists that worker (it died, was killed, or was retired). A hold taken
  outside a worker (the flow process) lapses only by its ``hold_timeout``.

The scheduler is reached from inside a task through the worker's own client. Elsewhere an open
client to the same scheduler is reused (the current flow run's
:class:`~fluvial.runners.DaskTaskRunner` client, then the default client); failing that, one
client per ``address`` and process is opened and kept until exit or :meth:`close`.
``distributed`` is imported on first use, never by ``import fluvial.storage``.
"""

from __future__ import annotations

__all__ = ("DaskLockManager",)

import atexit
import hashlib
import importlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..exceptions import ConfigurationError, MissingExtraError, StorageError
from .locks import LockManager

_logger = logging.getLogger("fluvial.storage.dask_locks")
#: The scheduler metadata key holding the table.
_TABLE = "fluvial-locks"
#: Seconds to reach a scheduler given by address before failing.
_CONNECT_TIMEOUT = 5.0
#: Seconds to wait for a stripe's guard. Guards are held for two metadata calls, and one left
#: by a dead process is freed by Dask's lease timeout (``distributed.scheduler.locks``).
_GUARD_TIMEOUT = 120.0
_RUNNING = frozenset({"running", "paused"})


def _import_distributed() -> Any:
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise MissingExtraError("DaskLockManager", "dask") from exc


def _stripe(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=1).hexdigest()


def _unexpired(hold: dict[str, Any], now: float | None = None) -> bool:
    expires = hold.get("expires")
    return expires is None or expires > (time.time() if now is None else now)


def _current_worker(dd: Any) -> Any:
    """The Dask worker this code runs in, or None (also from threads the task started)."""
    try:
        return dd.get_worker()
    except ValueError:
        pass
    running = [w for w in list(dd.Worker._instances) if w.status.name in _RUNNING]
    return running[0] if len(running) == 1 else None


# --- connections (one per scheduler address and process) -------------------------------------

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
# Guards: {(client id, stripe): distributed.Lock}. Kept, since a distributed.Lock schedules a
# lease-refresh callback on its client's loop and is never freed once made.
_guards: dict[tuple[str, str], Any] = {}
_local_guards = {f"{n:02x}": threading.Lock() for n in range(256)}
_guards_lock = threading.Lock()


def _connect(dd: Any, address: str) -> Any:
    with _clients_lock:
        client = _clients.get(address)
        if client is not None and client.status not in ("closing", "closed"):
            return client
        try:
            client = dd.Client(address, set_as_default=False, timeout=_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ConfigurationError(
                f"DaskLockManager could not reach the Dask scheduler at {address!r} within "
                f"{_CONNECT_TIMEOUT} s ({exc}). Check the address and that the scheduler runs."
            ) from exc
        if not _clients:
            atexit.register(_close_clients)
        _clients[address] = client
        return client


def _close_clients() -> None:
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.close()
        except Exception as exc:  # the interpreter is exiting: nothing left to do about it
            _logger.debug("closing the DaskLockManager client of %s: %s", client, exc)


@contextmanager
def _guard(dd: Any, client: Any, stripe: str) -> Iterator[None]:
    """Hold the stripe's guard: a thread lock here, then the ``distributed.Lock``."""
    with _local_guards[stripe]:
        with _guards_lock:
            lock = _guards.get((client.id, stripe))
            if lock is None:
                lock = dd.Lock(
                    f"fluvial-lock:{stripe}", scheduler_rpc=client.scheduler, loop=client.loop
                )
                _guards[(client.id, stripe)] = lock
        if not lock.acquire(timeout=_GUARD_TIMEOUT):
            raise StorageError(
                f"DaskLockManager: the scheduler lock 'fluvial-lock:{stripe}' was not free "
                f"within {_GUARD_TIMEOUT:g} s"
            )
        try:
            yield
        finally:
            lock.release()


# --- the manager -----------------------------------------------------------------------------


class DaskLockManager(LockManager):
    """Locks that hold across a Dask cluster: its workers, their tasks and its clients.

    Args:
        address: the scheduler, e.g. ``"tcp://10.0.0.5:8786"``, for use outside the cluster's
            workers. On a worker the worker's own connection to its scheduler is used. Without
            an address, a process that is not a worker uses the client of the current flow
            run's started ``DaskTaskRunner``, or the default ``distributed`` client.

    Pickling keeps only the address, so the manager travels to workers inside a cache policy
    and reconnects there.

    Raises (from the lock methods):
        MissingExtraError: ``distributed`` is not installed.
        ConfigurationError: the scheduler at *address* cannot be reached, or there is no
            address and no client to use.
        StorageError: a stripe's scheduler lock could not be taken in time.
    """

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def __repr__(self) -> str:
        return f"DaskLockManager(address={self.address!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DaskLockManager) and other.address == self.address

    def __hash__(self) -> int:
        return hash((DaskLockManager, self.address))

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.address = state["address"]

    # -- LockManager --

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on *key*; see :meth:`LockManager.acquire_lock`."""
        dd = _import_distributed()
        client, owner = self._connection(dd)
        stripe = _stripe(key)
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        delay = 0.005
        while True:
            hold = self._read(client, stripe, key)
            if (
                hold is not None
                and hold["holder"] == holder
                and hold.get("owner") == owner
                and _unexpired(hold)
            ):
                return True  # already ours, from this process (else retaken: owner changes)
            free = hold is None or hold["holder"] == holder or self._lapsed(client, owner, hold)
            if free and self._take(dd, client, owner, stripe, key, holder, hold_timeout):
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 1.5, 0.1)

    def release_lock(self, key: str, holder: str) -> None:
        """Release *holder*'s lock on *key*."""
        dd = _import_distributed()
        client, _ = self._connection(dd)
        stripe = _stripe(key)
        with _guard(dd, client, stripe):
            table = self._table(client, stripe)
            hold = table.get(key)
            if hold is None or hold["holder"] != holder or not _unexpired(hold):
                raise ConfigurationError(f"{holder!r} does not hold the lock on {key!r}")
            del table[key]
            client.set_metadata([_TABLE, stripe], table)

    def is_locked(self, key: str) -> bool:
        """Return True if a live, unexpired lock is held on *key*."""
        client, owner = self._connection(_import_distributed())
        hold = self._read(client, _stripe(key), key)
        return hold is not None and not self._lapsed(client, owner, hold)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Return True if *holder* holds a live, unexpired lock on *key*."""
        client, owner = self._connection(_import_distributed())
        hold = self._read(client, _stripe(key), key)
        return (
            hold is not None and hold["holder"] == holder and not self._lapsed(client, owner, hold)
        )

    def close(self) -> None:
        """Close this process's connection to ``address`` (reopened on the next call)."""
        if self.address is None:
            return
        with _clients_lock:
            client = _clients.pop(self.address, None)
        if client is not None:
            client.close()

    # -- the table --

    def _take(
        self,
        dd: Any,
        client: Any,
        owner: str | None,
        stripe: str,
        key: str,
        holder: str,
        hold_timeout: float | None,
    ) -> bool:
        """Compare-and-set: take *key* unless someone else holds it live."""
        with _guard(dd, client, stripe):
            table = self._table(client, stripe)
            hold = table.get(key)
            now = time.time()
            if hold is not None and hold["holder"] == holder and _unexpired(hold, now):
                if hold.get("owner") == owner:
                    return True
                # The same holder from another process (a run Dask started again after its
                # worker died): the hold now belongs to this live process, expiry unchanged.
                expires = hold.get("expires")
            elif hold is not None and not self._lapsed(client, owner, hold):
                return False  # another holder's live hold
            else:
                expires = None if hold_timeout is None else now + hold_timeout
            table = {name: held for name, held in table.items() if _unexpired(held, now)}
            table[key] = {"holder": holder, "owner": owner, "expires": expires}
            client.set_metadata([_TABLE, stripe], table)
            return True

    @staticmethod
    def _read(client: Any, stripe: str, key: str) -> dict[str, Any] | None:
        hold: dict[str, Any] | None = client.get_metadata([_TABLE, stripe, key], default=None)
        return hold

    @staticmethod
    def _table(client: Any, stripe: str) -> dict[str, dict[str, Any]]:
        table = client.get_metadata([_TABLE, stripe], default=None)
        return dict(table) if isinstance(table, dict) else {}

    @staticmethod
    def _lapsed(client: Any, here: str | None, hold: dict[str, Any]) -> bool:
        """True if *hold* expired, or the worker that took it is gone."""
        if not _unexpired(hold):
            return True
        owner = hold.get("owner")
        if owner is None or owner == here:  # this worker is alive: it is asking
            return False
        return owner not in client.nthreads()

    def _connection(self, dd: Any) -> tuple[Any, str | None]:
        """The client to use here, and this worker's address (None off the workers)."""
        worker = _current_worker(dd)
        if worker is not None and self.address in (None, worker.scheduler.address):
            return worker._get_client(), str(worker.address)
        for client in _open_clients(dd):  # reuse a connection to the same scheduler
            if self.address in (None, client.scheduler.address):
                return client, None
        if self.address is not None:
            return _connect(dd, self.address), None
        raise ConfigurationError(
            "DaskLockManager() without an address needs a Dask worker, a default "
            "distributed client, or a flow run on a started DaskTaskRunner; pass "
            "address='tcp://scheduler:8786' to use it elsewhere"
        )


def _open_clients(dd: Any) -> Iterator[Any]:
    """The current flow run's DaskTaskRunner client, then the default client, if any."""
    from ..context import FlowRunContext
    from ..runners.dask import DaskTaskRunner

    flow_ctx = FlowRunContext.get()
    runner = flow_ctx.task_runner if flow_ctx is not None else None
    if isinstance(runner, DaskTaskRunner) and runner._client is not None:
        yield runner._client
    try:
        yield dd.Client.current()
    except ValueError:
        pass
