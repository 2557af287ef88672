"""Locks that make SERIALIZABLE isolation run a cached task once per key.

Under ``SERIALIZABLE`` the engine takes a lock on the cache key before looking the key up, so
of N concurrent runs one computes and writes while the rest wait and then read its record.
:class:`MemoryLockManager` serves threads of one process; :class:`FileSystemLockManager`
serves processes of one machine (or of several sharing a POSIX filesystem) and breaks locks
whose holder died or whose hold time ran out, so a crash never wedges a key.
"""

from __future__ import annotations

__all__ = (
    "FileSystemLockManager",
    "IsolationLevel",
    "LockManager",
    "MemoryLockManager",
    "current_holder",
)

import abc
import asyncio
import enum
import os
import socket
import threading
import time
from dataclasses import dataclass
from functools import partial

import anyio.to_thread

from ..exceptions import ConfigurationError
from ._filelock import FileLock


class IsolationLevel(enum.StrEnum):
    """How concurrent runs of one cache key interact (Prefect's ``IsolationLevel``)."""

    #: Runs may compute the same key concurrently; readers see only committed records.
    READ_COMMITTED = "READ_COMMITTED"
    #: One run per key at a time, under a lock; the others wait and read its record.
    SERIALIZABLE = "SERIALIZABLE"


def current_holder() -> str:
    """Return a holder id for the calling thread (and asyncio task, if any).

    Prefect's format: ``hostname:pid:thread_id:thread_name[:task_id]``.
    """
    thread = threading.current_thread()
    holder = f"{socket.gethostname()}:{os.getpid()}:{thread.ident}:{thread.name}"
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return holder if task is None else f"{holder}:{id(task)}"


class LockManager(abc.ABC):
    """Named locks held by named holders, with optional acquire and hold timeouts."""

    @abc.abstractmethod
    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on *key* for *holder*, waiting up to *acquire_timeout* seconds.

        Returns True once held (at once if *holder* already holds it), False on timeout.
        After *hold_timeout* seconds the lock lapses by itself.
        """

    @abc.abstractmethod
    def release_lock(self, key: str, holder: str) -> None:
        """Release *holder*'s lock on *key*.

        Raises:
            ConfigurationError: *holder* does not hold the lock (a ``ValueError``, as in Prefect).
        """

    @abc.abstractmethod
    def is_locked(self, key: str) -> bool:
        """Return True if a live, unexpired lock is held on *key*."""

    @abc.abstractmethod
    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Return True if *holder* holds a live, unexpired lock on *key*."""

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until *key* is unlocked; return False if *timeout* seconds pass first.

        This default polls :meth:`is_locked` with a growing delay (5 ms up to 100 ms);
        managers that can be woken when a lock is released override it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while self.is_locked(key):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 1.5, 0.1)
        return True

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Async :meth:`acquire_lock`; cancelling it never leaves the lock held."""
        # Polling with zero-timeout attempts: a worker thread blocked in a long acquire
        # could take the lock after its awaiting task was cancelled.
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        delay = 0.005
        attempt = partial(self.acquire_lock, key, holder, 0, hold_timeout)
        while not await anyio.to_thread.run_sync(attempt):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await anyio.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        return True

    # Prefect's signature, so ported code that passes timeout= keeps working.
    async def await_for_lock(
        self,
        key: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bool:
        """Async :meth:`wait_for_lock`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while await anyio.to_thread.run_sync(self.is_locked, key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await anyio.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        return True


@dataclass(slots=True)
class _Held:
    holder: str
    expires: float | None  # time.monotonic() deadline


class _MemoryLockTable:
    """The process-wide table behind every MemoryLockManager."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.held: dict[str, _Held] = {}

    def live(self, key: str) -> _Held | None:
        """Return the live lock on *key*, dropping it if its hold time ran out."""
        held = self.held.get(key)
        if held is not None and held.expires is not None and held.expires <= time.monotonic():
            del self.held[key]
            self.changed.notify_all()
            return None
        return held

    def wait(self, key: str, deadline: float | None) -> bool:
        """Wait for a change to the table; False once *deadline* has passed."""
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        held = self.held.get(key)
        expires = None if held is None else held.expires
        timeouts = [t - now for t in (deadline, expires) if t is not None]
        self.changed.wait(max(min(timeouts), 0) if timeouts else None)
        return True


_memory_locks = _MemoryLockTable()


class MemoryLockManager(LockManager):
    """Locks for threads of one process; every instance shares one process-wide table.

    Like Prefect's, it is effectively a singleton: a copy unpickled in another process
    refers to that process's table, so locks do not travel.
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemoryLockManager)

    def __hash__(self) -> int:
        return hash(MemoryLockManager)

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on *key*; see :meth:`LockManager.acquire_lock`."""
        table = _memory_locks
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        with table.changed:
            while True:
                held = table.live(key)
                if held is None:
                    expires = None if hold_timeout is None else time.monotonic() + hold_timeout
                    table.held[key] = _Held(holder, expires)
                    return True
                if held.holder == holder:
                    return True
                if not table.wait(key, deadline):
                    return False

    def release_lock(self, key: str, holder: str) -> None:
        """Release *holder*'s lock on *key*."""
        with _memory_locks.changed:
            held = _memory_locks.live(key)
            if held is None or held.holder != holder:
                raise ConfigurationError(f"{holder!r} does not hold the lock on {key!r}")
            del _memory_locks.held[key]
            _memory_locks.changed.notify_all()

    def is_locked(self, key: str) -> bool:
        """Return True if *key* is locked."""
        with _memory_locks.changed:
            return _memory_locks.live(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Return True if *holder* holds the lock on *key*."""
        with _memory_locks.changed:
            held = _memory_locks.live(key)
            return held is not None and held.holder == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until *key* is unlocked, at most *timeout* seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with _memory_locks.changed:
            while _memory_locks.live(key) is not None:
                if not _memory_locks.wait(key, deadline):
                    return False
            return True


class FileSystemLockManager(LockManager):
    """Locks for processes on one machine: one ``<dir>/<key>.lock`` file per held lock.

    The file is created with ``O_CREAT | O_EXCL`` (only one process can) and holds JSON
    ``{holder, pid, hostname, expiration}``. A lock whose expiration passed, or whose holder
    process on this host is gone, is broken and taken over. Waiting polls, backing off from
    5 ms to 100 ms.
    """

    def __init__(self, lock_files_directory: str | os.PathLike[str]) -> None:
        self.lock_files_directory = os.path.abspath(
            os.path.expanduser(os.fspath(lock_files_directory))
        )

    def __repr__(self) -> str:
        return f"FileSystemLockManager({self.lock_files_directory!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FileSystemLockManager)
            and other.lock_files_directory == self.lock_files_directory
        )

    def __hash__(self) -> int:
        return hash(self.lock_files_directory)

    def _lock(self, key: str) -> FileLock:
        return FileLock.for_key(self.lock_files_directory, key)

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on *key*; see :meth:`LockManager.acquire_lock`."""
        lock = self._lock(key)
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        delay = 0.005
        while True:
            if lock.try_create(holder, hold_timeout):
                return True
            state = lock.read()
            if state is not None and state.info is not None and state.info.holder == holder:
                return True
            if state is not None and lock.is_stale(state):
                lock.break_stale(state)
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 1.5, 0.1)

    def release_lock(self, key: str, holder: str) -> None:
        """Release *holder*'s lock on *key*."""
        lock = self._lock(key)
        state = lock.read()
        if state is None or state.info is None or state.info.holder != holder:
            raise ConfigurationError(f"{holder!r} does not hold the lock on {key!r}")
        lock.remove()

    def is_locked(self, key: str) -> bool:
        """Return True if a live lock file exists for *key* (stale ones are broken)."""
        lock = self._lock(key)
        state = lock.read()
        if state is None:
            return False
        if lock.is_stale(state):
            lock.break_stale(state)
            return False
        return True

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Return True if *holder* holds a live lock on *key*."""
        lock = self._lock(key)
        state = lock.read()
        if state is None or state.info is None or lock.is_stale(state):
            return False
        return state.info.holder == holder
