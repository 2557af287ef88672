"""One lock file: create it exclusively, read who holds it, break it if its holder is gone.

Breaking a stale lock races with other processes that saw the same stale lock, and with new
acquirers. A breaker therefore takes a short-lived guard file (``<lock>.break``, created
exclusively), re-reads the lock, and unlinks it only if it is still the very file it judged
stale (same bytes, inode and mtime). So a lock created after the stale one is never removed.
"""

from __future__ import annotations

__all__ = ("FileLock", "LockInfo", "LockState", "pid_alive")

import datetime as dt
import os
import secrets
import socket
import sys
import time
from contextlib import suppress
from dataclasses import dataclass

import orjson

from ._errors import storage_error
from ._location import validate_key

# A lock file with unreadable content is normally one whose creator has not written it yet
# (create and write are two syscalls); only after this long is it presumed abandoned.
_UNWRITTEN_GRACE_SECONDS = 2.0
# A guard left by a breaker that died mid-break is removed after this long.
_GUARD_STALE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds a lock, as written in its file."""

    holder: str
    pid: int
    hostname: str
    expiration: dt.datetime | None
    #: When the holder process started (Linux clock ticks since boot); None where unknown.
    #: A live process with this pid but another start time reused the pid of a dead holder.
    started: int | None = None


@dataclass(frozen=True, slots=True)
class LockState:
    """A lock file as read once: its bytes, identity and parsed content."""

    raw: bytes
    identity: tuple[int, int]  # (inode, mtime_ns): tells a re-created file from the old one
    info: LockInfo | None  # None: not yet written, or not a lock fluvial wrote


def _parse(raw: bytes) -> LockInfo | None:
    try:
        data = orjson.loads(raw)
        expiration = data["expiration"]
        started = data.get("started")  # absent in locks of fluvial versions before it
        return LockInfo(
            holder=str(data["holder"]),
            pid=int(data["pid"]),
            hostname=str(data["hostname"]),
            expiration=None if expiration is None else dt.datetime.fromisoformat(expiration),
            started=None if started is None else int(started),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _process_start(pid: int) -> int | None:
    """Return when process *pid* started, in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            # Field 22 of the line; counting starts after the parenthesised command name,
            # which may itself contain spaces or parentheses.
            return int(file.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


_own_start: list[int | None] = []  # this process's start time, read once


def _this_process_start() -> int | None:
    if not _own_start:
        _own_start.append(_process_start(os.getpid()))
    return _own_start[0]


def _holder_alive(info: LockInfo) -> bool:
    if not pid_alive(info.pid):
        return False
    if info.started is None:
        return True
    current = _process_start(info.pid)
    return current is None or current == info.started  # else: the pid now names another process


def pid_alive(pid: int) -> bool:
    """Whether process *pid* of this machine runs (a zombie does not; on Windows: assume so)."""
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate the process on Windows; rely on expiry
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    try:
        # A killed process that its parent has not reaped yet is a zombie: dead, but
        # os.kill still finds it. Linux shows that as state "Z" in /proc.
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


class FileLock:
    """The lock file for one key under a lock directory."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def for_key(cls, directory: str, key: str) -> FileLock:
        """Return the lock for *key* (a validated relative path) under *directory*."""
        return cls(os.path.join(directory, validate_key(key) + ".lock"))

    def try_create(self, holder: str, hold_timeout: float | None) -> bool:
        """Create the lock file for *holder*; False if it already exists."""
        expiration = None
        if hold_timeout is not None:
            expiration = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=hold_timeout)
        content = orjson.dumps(
            {
                "holder": holder,
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "expiration": None if expiration is None else expiration.isoformat(),
                "started": _this_process_start(),
                "nonce": secrets.token_hex(8),
            }
        )
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise storage_error(exc, self.path, "create the lock file") from exc
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
        except OSError as exc:
            self.remove()
            raise storage_error(exc, self.path, "write the lock file") from exc
        return True

    def read(self) -> LockState | None:
        """Return the lock file's state, or ``None`` if there is no lock file."""
        try:
            with open(self.path, "rb") as file:
                raw = file.read()
                stat = os.fstat(file.fileno())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(exc, self.path, "read the lock file") from exc
        return LockState(raw, (stat.st_ino, stat.st_mtime_ns), _parse(raw))

    def is_stale(self, state: LockState) -> bool:
        """Return True if the lock in *state* expired or its holder on this host is dead.

        A holder is dead when its pid is gone, a zombie, or (Linux) now names a process that
        started at another time than the one that wrote the lock: pids are reused.
        """
        info = state.info
        if info is None:
            return time.time() - state.identity[1] / 1e9 > _UNWRITTEN_GRACE_SECONDS
        if info.expiration is not None and info.expiration <= dt.datetime.now(dt.UTC):
            return True
        return info.hostname == socket.gethostname() and not _holder_alive(info)

    def break_stale(self, state: LockState) -> None:
        """Remove the lock file if it is still the one *state* describes."""
        guard = self.path + ".break"
        try:
            fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            self._clear_abandoned_guard(guard)
            return
        except OSError as exc:
            raise storage_error(exc, guard, "create the lock guard file") from exc
        try:
            current = self.read()
            if current is not None and (current.raw, current.identity) == (
                state.raw,
                state.identity,
            ):
                self.remove()
        finally:
            os.close(fd)
            with suppress(FileNotFoundError):
                os.unlink(guard)

    @staticmethod
    def _clear_abandoned_guard(guard: str) -> None:
        with suppress(FileNotFoundError):
            if time.time() - os.stat(guard).st_mtime > _GUARD_STALE_SECONDS:
                os.unlink(guard)

    def remove(self) -> None:
        """Delete the lock file; a missing file is not an error."""
        with suppress(FileNotFoundError):
            os.unlink(self.path)
