"""Limits shared by the processes of one machine, through files under FLUVIAL_HOME.

The table is ``<FLUVIAL_HOME>/concurrency/table``, read and rewritten (one ``pwrite`` of a
length-prefixed JSON record) under an exclusive ``flock`` of that file. Each process that takes part holds an
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
import logging
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

_logger = logging.getLogger("fluvial.concurrency")
_MAGIC = b"FLVC"
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
        self._made = False
        self._path = self.directory / "table"
        # Per waiting request: seconds until decay lets it in, as of its last look.
        self._hints: dict[str, float | None] = {}

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
        # Locked before it gets its name: another process registering at the same instant
        # must never find it unlocked, take it for a dead holder's, and delete it.
        fd = os.open(holders / f".{name}.new", os.O_CREAT | os.O_RDWR, 0o600)
        _fcntl().flock(fd, _fcntl().LOCK_EX)
        os.rename(holders / f".{name}.new", holders / f"{name}.lock")
        return name, fd

    @contextlib.contextmanager
    def _table(self) -> Iterator[SlotTable]:
        """Yield the table under the file's lock, and write it back afterwards."""
        fcntl = _fcntl()
        if not self._made:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._made = True
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            table = self._read(fd)
            yield table
            body = orjson.dumps(table.to_json())
            # One pwrite of a length-prefixed record: a process killed at any instant leaves
            # the old record or the new one, never a torn one (a rename costs ~1 ms here).
            os.pwrite(fd, _MAGIC + len(body).to_bytes(8, "big") + body, 0)
        finally:
            os.close(fd)  # also drops the flock

    def _read(self, fd: int) -> SlotTable:
        head = os.pread(fd, 12, 0)
        if len(head) < 12:
            return SlotTable()  # a new file
        size = int.from_bytes(head[4:], "big")
        body = os.pread(fd, size, 12)
        try:
            if head[:4] != _MAGIC or len(body) != size:
                raise ValueError("not a fluvial concurrency table")
            return SlotTable.from_json(orjson.loads(body))
        except (ValueError, KeyError, TypeError) as exc:
            # Only a machine crash mid-write gets here, and every holder died with the machine.
            _logger.warning(
                "concurrency table %s is unreadable (%s); starting afresh", self._path, exc
            )
            return SlotTable()

    def _offer(self, request: Request, lease_duration: float) -> bool:
        with self._table() as table:
            if table.offer(request, time.time()):
                return True
            self._reap(table)
            if request.id not in table.queue:
                return True
            self._hints[request.id] = table.wait_hint(request, time.time())
            return False

    def _poll(self, request_id: str, lease_duration: float) -> bool:
        with self._table() as table:
            now = time.time()
            if time.monotonic() - self._last_reap > _REAP_EVERY:
                self._reap(table)
            table.grant(now)  # decayed slots free themselves without a release
            queued = table.queue.get(request_id)
            if queued is not None:
                self._hints[request_id] = table.wait_hint(queued, now)
            return queued is None

    def _decay_hint(self, request_id: str) -> float | None:
        return self._hints.pop(request_id, None)

    def _withdraw(self, request_id: str) -> bool:
        self._hints.pop(request_id, None)
        with self._table() as table:
            if request_id not in table.queue:
                return False
            table.release(request_id, time.time())
        self.doorbell().ring()  # a waiter behind the withdrawn one may fit now
        return True

    def release(self, lease_id: str) -> None:
        """Give back the slots of a lease; this process's waiters look again at once."""
        with self._table() as table:
            table.release(lease_id, time.time())
        self.doorbell().ring()

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
        self.doorbell().ring()

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
