"""Limits shared by the processes of one machine, through files under FLUVIAL_HOME.

The table is ``<FLUVIAL_HOME>/concurrency/table.json``, read and rewritten (temp file, then
rename) under an exclusive ``flock`` of ``table.lock``. Each process that takes part holds an
exclusive ``flock`` on its own ``holders/<id>.lock`` for as long as it lives; the kernel drops
that lock when the process dies, however it dies (``kill -9`` included). A waiter that finds no
room checks the holders named in the table: one whose lock file can be locked is dead, and its
leases and queued requests are dropped at once. No lease needs renewing, and no clock matters
except for slot decay (wall clock, shared by the machine's processes).

POSIX only (``fcntl``); on other systems the process runner's tasks cannot share limits.
"""

from __future__ import annotations

__all__ = ("FileBackend",)

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..exceptions import ConfigurationError
from ._backend import Occupancy
from ._polling import PollingBackend
from ._table import Request, SlotTable

# How often a waiter looks for dead holders while it waits (it also looks when it queues).
_REAP_EVERY = 0.25


def _fcntl() -> Any:
    try:
        import fcntl
    except ImportError as exc:  # Windows
        raise ConfigurationError(
            "limits shared between processes need POSIX file locks (fcntl), which this "
            "platform lacks; use the thread runner, or a Dask or Ray cluster"
        ) from exc
    return fcntl


class FileBackend(PollingBackend):
    """A slot table in a directory that the processes of this machine share."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._me: str | None = None
        self._me_fd: int | None = None
        self._me_pid = -1
        self._me_lock = threading.Lock()
        self._last_reap = 0.0

    def _holder(self) -> str:
        with self._me_lock:
            if self._me is None or self._me_pid != os.getpid():
                self._me, self._me_fd = self._register()
                self._me_pid = os.getpid()
            return self._me

    def _register(self) -> tuple[str, int]:
        """Create and lock this process's holder file; kept open (and locked) until exit."""
        holders = self.directory / "holders"
        holders.mkdir(parents=True, exist_ok=True)
        for stale in holders.glob("*.lock"):  # files of processes gone since (no leases left)
            if not _alive(stale):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        fd = os.open(holders / f"{name}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        _fcntl().flock(fd, _fcntl().LOCK_EX)
        return name, fd

    @contextlib.contextmanager
    def _table(self) -> Iterator[SlotTable]:
        """Yield the table under the directory's lock, and write it back afterwards."""
        fcntl = _fcntl()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "table.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.directory / "table.json"
            try:
                table = SlotTable.from_json(orjson.loads(path.read_bytes()))
            except FileNotFoundError:
                table = SlotTable()
            yield table
            tmp = path.with_name(f"table.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(orjson.dumps(table.to_json()))
            os.replace(tmp, path)
        finally:
            os.close(fd)  # also drops the flock

    def _offer(self, request: Request, lease_duration: float) -> bool:
        with self._table() as table:
            if table.offer(request, time.time()):
                return True
            self._reap(table)
            return request.id not in table.queue

    def _poll(self, request_id: str, lease_duration: float) -> bool:
        with self._table() as table:
            now = time.time()
            if time.monotonic() - self._last_reap > _REAP_EVERY:
                self._reap(table)
            table.grant(now)  # decayed slots free themselves without a release
            return request_id not in table.queue

    def _withdraw(self, request_id: str) -> bool:
        with self._table() as table:
            if request_id not in table.queue:
                return False
            table.release(request_id, time.time())
            return True

    def release(self, lease_id: str) -> None:
        """Give back the slots of a lease."""
        with self._table() as table:
            table.release(lease_id, time.time())

    def occupancy(self, name: str) -> Occupancy:
        """Return the slots of *name* held by live processes of this machine."""
        with self._table() as table:
            self._reap(table)
            used = table.occupied(name, time.time())
            return Occupancy(used, tuple(r.id for r in table.holders(name)))

    def reset(self, name: str) -> None:
        """Free every slot of *name*, whichever process holds it."""
        with self._table() as table:
            table.reset(name, time.time())

    def _reap(self, table: SlotTable) -> None:
        """Drop what dead holders had in *table*."""
        self._last_reap = time.monotonic()
        holders = {r.holder for r in (*table.leases.values(), *table.queue.values())}
        holders.discard(self._me or "")
        for holder in holders:
            if not _alive(self.directory / "holders" / f"{holder}.lock"):
                table.drop_holder(holder, time.time())
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / "holders" / f"{holder}.lock").unlink()


def _alive(path: Path) -> bool:
    """True if some process holds the lock of the holder file *path*."""
    fcntl = _fcntl()
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
