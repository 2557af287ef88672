"""The Dask CLI cluster fixture of the runner tests: a scheduler and a worker started as separate
processes (reached by address, as a user's existing cluster would be). The session's local Ray and
Dask LocalCluster (``ray_session``, ``dask_cluster``) live in tests/conftest.py, shared with the
concurrency tests.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` and ``dask worker`` as separate processes; yields the address."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask-cli")
    commands = {
        "scheduler": ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        "worker": [
            "worker", address, "--host", "127.0.0.1", "--nthreads", "2", "--nworkers", "1",
            "--no-dashboard", "--resources", "SPECIAL=1",
        ],
    }  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                processes.append(
                    subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=log)
                )
        _wait_until_ready(address, logs)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(address: str, logs: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with distributed.Client(address, timeout=2, set_as_default=False) as client:
                client.wait_for_workers(1, timeout=max(1, deadline - time.monotonic()))
                return
        except (OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                output = "\n".join(p.read_text() for p in sorted(logs.iterdir()))
                pytest.fail(f"the dask CLI cluster did not start: {exc}\n{output}")
            time.sleep(0.2)
