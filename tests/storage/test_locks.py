"""Lock managers: contention between threads, hold timeouts, stale lock files, SERIALIZABLE."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from fluvial.exceptions import ConfigurationError
from fluvial.storage import (
    FileSystemLockManager,
    IsolationLevel,
    LockManager,
    MemoryLockManager,
    ResultStore,
    current_holder,
)


@pytest.fixture(params=["memory", "filesystem"])
def locks(request: pytest.FixtureRequest, tmp_path: Path) -> LockManager:
    if request.param == "memory":
        return MemoryLockManager()
    return FileSystemLockManager(tmp_path / "locks")


@pytest.fixture
def key() -> str:
    return f"keys/{uuid.uuid4().hex}"


def test_acquire_release_and_reentry(locks: LockManager, key: str) -> None:
    assert not locks.is_locked(key)
    assert locks.acquire_lock(key, "a")
    assert locks.acquire_lock(key, "a")  # the holder may take it again
    assert locks.is_locked(key)
    assert locks.is_lock_holder(key, "a")
    assert not locks.is_lock_holder(key, "b")
    assert not locks.acquire_lock(key, "b", acquire_timeout=0.05)
    assert not locks.wait_for_lock(key, timeout=0.05)
    with pytest.raises(ConfigurationError, match="does not hold"):
        locks.release_lock(key, "b")
    with pytest.raises(ValueError, match="does not hold"):
        locks.release_lock(key, "b")  # as in Prefect, a ValueError
    locks.release_lock(key, "a")
    assert not locks.is_locked(key)
    assert locks.wait_for_lock(key, timeout=0)


def test_waiters_get_the_lock_when_it_is_released(locks: LockManager, key: str) -> None:
    assert locks.acquire_lock(key, "first")
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(locks.acquire_lock(key, "second", 30)))
    waiter.start()
    time.sleep(0.05)
    assert not got
    locks.release_lock(key, "first")
    waiter.join(timeout=30)
    assert got == [True]
    assert locks.is_lock_holder(key, "second")


def test_hold_timeout_lets_the_lock_lapse(locks: LockManager, key: str) -> None:
    assert locks.acquire_lock(key, "brief", hold_timeout=0.1)
    assert locks.acquire_lock(key, "next", acquire_timeout=30)
    assert not locks.is_lock_holder(key, "brief")
    with pytest.raises(ConfigurationError):
        locks.release_lock(key, "brief")


@pytest.mark.anyio
async def test_async_twins(locks: LockManager, key: str) -> None:
    assert await locks.aacquire_lock(key, "a")
    assert not await locks.aacquire_lock(key, "b", acquire_timeout=0.05)
    assert not await locks.await_for_lock(key, timeout=0.05)
    locks.release_lock(key, "a")
    assert await locks.await_for_lock(key, timeout=1)


def test_serializable_runs_compute_once(locks: LockManager, key: str, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results", lock_manager=locks)
    assert store.supports_isolation_level(IsolationLevel.SERIALIZABLE)
    computed: list[int] = []

    def run(n: int) -> None:
        holder = f"run-{n}"
        assert store.acquire_lock(key, holder=holder, acquire_timeout=30)
        try:
            if not store.exists(key):
                computed.append(n)
                store.write(n, key=key, holder=holder)
        finally:
            store.release_lock(key, holder=holder)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(computed) == 1
    assert store.read(key).result == computed[0]


def test_readers_wait_for_the_writer(key: str, tmp_path: Path) -> None:
    store = ResultStore(tmp_path, lock_manager=MemoryLockManager())
    assert store.acquire_lock(key, holder="writer")
    results: list[object] = []
    reader = threading.Thread(target=lambda: results.append(store.read(key, holder="r").result))
    reader.start()
    time.sleep(0.05)
    store.write("done", key=key, holder="writer")
    store.release_lock(key, holder="writer")
    reader.join(timeout=30)
    assert results == ["done"]


def test_current_holder_names_thread_and_task() -> None:
    holder = current_holder()
    assert holder.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    other: list[str] = []
    thread = threading.Thread(target=lambda: other.append(current_holder()))
    thread.start()
    thread.join()
    assert other[0] != holder


def test_lock_file_content(tmp_path: Path) -> None:
    locks = FileSystemLockManager(tmp_path)
    assert locks.acquire_lock("a/b", "me", hold_timeout=60)
    content = json.loads((tmp_path / "a" / "b.lock").read_bytes())
    assert content["holder"] == "me"
    assert content["pid"] == os.getpid()
    assert content["hostname"] == socket.gethostname()
    assert content["expiration"]
    if sys.platform == "linux":
        assert content["started"] == _start_of(os.getpid())
    with pytest.raises(ConfigurationError):
        locks.acquire_lock("../escape", "me")


def _write_lock(path: Path, **fields: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {"holder": "ghost", "pid": os.getpid(), "hostname": socket.gethostname()}
    path.write_text(json.dumps({**base, "expiration": None, **fields}))


def test_locks_of_dead_or_expired_holders_are_broken(tmp_path: Path) -> None:
    locks = FileSystemLockManager(tmp_path)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    _write_lock(tmp_path / "dead.lock", pid=int(finished.stdout))
    assert not locks.is_locked("dead")
    _write_lock(tmp_path / "expired.lock", expiration="2000-01-01T00:00:00+00:00")
    assert locks.acquire_lock("expired", "me", acquire_timeout=5)
    _write_lock(tmp_path / "alive.lock")  # this very process holds it
    assert locks.is_locked("alive")
    _write_lock(tmp_path / "remote.lock", hostname="another-host", pid=1)
    assert locks.is_locked("remote")  # another host's pid cannot be checked from here


def _start_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return int(fields[19])


@pytest.mark.skipif(sys.platform != "linux", reason="process start times come from /proc")
def test_a_lock_whose_pid_was_reused_by_another_process_is_broken(tmp_path: Path) -> None:
    locks = FileSystemLockManager(tmp_path)
    # The pid is alive (this process), but the lock records another start time: the holder
    # that wrote it died and its pid went to a new process, as happens after a reboot or a
    # wrap-around of pids.
    _write_lock(tmp_path / "reused.lock", started=_start_of(os.getpid()) - 1)
    assert not locks.is_locked("reused")
    assert not (tmp_path / "reused.lock").exists()
    _write_lock(tmp_path / "same.lock", started=_start_of(os.getpid()))
    assert locks.is_locked("same")
    _write_lock(tmp_path / "older-fluvial.lock")  # no start time recorded: pid check only
    assert locks.is_locked("older-fluvial")


def test_unwritten_lock_files_are_broken_only_after_a_grace_period(tmp_path: Path) -> None:
    locks = FileSystemLockManager(tmp_path)
    (tmp_path / "fresh.lock").write_bytes(b"")
    assert locks.is_locked("fresh")  # its creator may be about to write it
    (tmp_path / "abandoned.lock").write_bytes(b"")
    old = time.time() - 60
    os.utime(tmp_path / "abandoned.lock", (old, old))
    assert not locks.is_locked("abandoned")
    assert not (tmp_path / "abandoned.lock").exists()


def test_lock_managers_compare_by_configuration(tmp_path: Path) -> None:
    assert MemoryLockManager() == MemoryLockManager()
    assert FileSystemLockManager(tmp_path) == FileSystemLockManager(str(tmp_path))
    assert FileSystemLockManager(tmp_path) != FileSystemLockManager(tmp_path / "x")
    assert len({MemoryLockManager(), MemoryLockManager()}) == 1
