"""Real faults: killed writers, unreachable or missing storage, and locks across processes.

Nothing is mocked. Writers and lock holders are separate Python processes killed with
SIGKILL; S3 failures come from s3fs talking to a closed port or a missing bucket on moto.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _s3 import S3Server
from fluvial.exceptions import ResultNotFound, StorageError
from fluvial.storage import FileSystemLockManager, ResultStore

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    """Start a Python child running *script*, with line-buffered pipes to talk to it."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def _expect_line(child: subprocess.Popen[str], expected: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line == expected, f"child said {line!r}, expected {expected!r}"


_WRITER = """
import sys
from fluvial.storage import ResultStore

store = ResultStore(sys.argv[1])
payload = b"n" * (48 << 20)
print("writing", flush=True)
while True:
    store.write(payload, key="big/record")
"""


@posix_only
def test_writer_killed_mid_write_leaves_no_partial_record(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "results"
    ResultStore(root).write(b"previous", key="big/record")
    writer = _python(_WRITER, str(root))
    children.append(writer)
    _expect_line(writer, "writing")
    deadline = time.monotonic() + 60
    # Kill as soon as a temporary file shows the write under way.
    while not list((root / "big").glob("*.fluvial-tmp")):
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.001)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)

    reader = ResultStore(root, cache_result_in_memory=False)
    assert reader.exists("big/record")
    value = reader.read("big/record").result
    assert value == b"previous" or value == b"n" * (48 << 20)
    assert [p.name for p in (root / "big").iterdir() if not p.name.endswith(".fluvial-tmp")] == [
        "record"
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _s3_store(url: str, endpoint: str) -> ResultStore:
    return ResultStore.from_url(
        url,
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
        config_kwargs={"connect_timeout": 1, "read_timeout": 2, "retries": {"max_attempts": 1}},
        skip_instance_cache=True,
    )


@pytest.mark.timeout(60)
def test_unreachable_s3_endpoint_is_a_storage_error(s3_server: S3Server) -> None:
    store = _s3_store("s3://some-bucket/prefix", f"http://127.0.0.1:{_closed_port()}")
    url = "s3://some-bucket/prefix/k"
    operations: list[Callable[[], object]] = [
        lambda: store.write(1, key="k"),
        lambda: store.read("k"),
        lambda: store.exists("k"),
    ]
    for operation in operations:
        with pytest.raises(StorageError) as info:
            operation()
        assert not isinstance(info.value, ResultNotFound)
        assert url in str(info.value)
        assert "endpoint" in str(info.value)
        assert info.value.url == url


@pytest.mark.timeout(60)
def test_missing_bucket_is_a_storage_error(s3_server: S3Server) -> None:
    store = _s3_store("s3://no-such-bucket/prefix", s3_server.endpoint_url)
    url = "s3://no-such-bucket/prefix/k"
    operations: list[Callable[[], object]] = [
        lambda: store.write(1, key="k"),
        lambda: store.read("k"),
        lambda: store.exists("k"),
    ]
    for operation in operations:
        with pytest.raises(StorageError, match="bucket") as info:
            operation()
        assert not isinstance(info.value, ResultNotFound)
        assert url in str(info.value)


def test_unwritable_local_path_is_a_storage_error() -> None:
    # Root can write anywhere, but not below a regular file.
    store = ResultStore("/etc/passwd/results")
    with pytest.raises(StorageError, match="/etc/passwd/results/k") as info:
        store.write(1, key="k")
    assert "check" in str(info.value)
    with pytest.raises(StorageError) as read_info:
        store.read("k")
    assert not isinstance(read_info.value, ResultNotFound)


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_permission_denied_is_a_storage_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(StorageError, match="permission|Permission"):
        ResultStore(locked).write(1, key="k")


_LOCK_HOLDER = """
import sys, time
from fluvial.storage import FileSystemLockManager

locks = FileSystemLockManager(sys.argv[1])
assert locks.acquire_lock("shared/key", holder="child", acquire_timeout=10)
print("held", flush=True)
if sys.argv[2] == "release":
    sys.stdin.readline()
    time.sleep(0.2)
    locks.release_lock("shared/key", holder="child")
    print("released", flush=True)
else:
    time.sleep(600)
"""


@posix_only
def test_file_lock_is_shared_between_processes(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    holder = _python(_LOCK_HOLDER, str(tmp_path), "release")
    children.append(holder)
    _expect_line(holder, "held")
    locks = FileSystemLockManager(tmp_path)
    assert locks.is_locked("shared/key")
    assert not locks.is_lock_holder("shared/key", "parent")
    assert not locks.acquire_lock("shared/key", holder="parent", acquire_timeout=0.2)

    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert locks.acquire_lock("shared/key", holder="parent", acquire_timeout=30)
    _expect_line(holder, "released")  # the child let go before the parent got it
    assert locks.is_lock_holder("shared/key", "parent")
    locks.release_lock("shared/key", holder="parent")
    assert holder.wait(timeout=30) == 0


@posix_only
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_lock_of_a_killed_holder_is_broken(
    tmp_path: Path, children: list[subprocess.Popen[str]], reaped: bool
) -> None:
    holder = _python(_LOCK_HOLDER, str(tmp_path), "hold")
    children.append(holder)
    _expect_line(holder, "held")
    locks = FileSystemLockManager(tmp_path)
    assert not locks.acquire_lock("shared/key", holder="parent", acquire_timeout=0.1)
    os.kill(holder.pid, signal.SIGKILL)
    if reaped:
        holder.wait(timeout=30)
    # Unreaped, the child lingers as a zombie: dead, though os.kill(pid, 0) still finds it.
    assert locks.acquire_lock("shared/key", holder="parent", acquire_timeout=30)
    assert locks.is_lock_holder("shared/key", "parent")
