"""Shared fixtures: an isolated FLUVIAL_HOME per test, quiet logging, the anyio backend, and a
moto S3 server on 127.0.0.1 for the session.

No real AWS is ever contacted: every S3 client is pointed at the local moto endpoint and the
session's credentials are moto's dummy "testing" pair.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _s3 import BUCKET, S3Server

# Tests read log records through caplog; fluvial's own console handler would only add noise.
os.environ.setdefault("FLUVIAL_LOGGING_SETUP", "false")


@pytest.fixture(autouse=True)
def isolated_fluvial_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point FLUVIAL_HOME at a fresh directory so no test reads or writes ~/.fluvial."""
    from fluvial.settings import reload_settings

    home = tmp_path / "fluvial-home"
    monkeypatch.setenv("FLUVIAL_HOME", str(home))
    reload_settings()
    return home


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the session; runners must reuse it and never shut it down."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace="fluvial-tests")
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """Two single-threaded worker processes; a worker that dies fails its task at once.

    Shared by the runner and concurrency tests (one LocalCluster per session).
    """
    import dask
    import distributed

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
    ):
        yield cluster


@pytest.fixture
def sigint_not_ignored() -> Iterator[None]:
    """Let children see Ctrl-C: a suite started from a background job (as some CI runs it)
    ignores SIGINT, and children inherit that. A caught signal is reset to its default in a
    child, so catching it here while the child starts gives the child a terminal's Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (fluvial's async flows are asyncio-native)."""
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws() -> Iterator[None]:
    """Give AWS clients dummy credentials and, unless told otherwise, a dead local endpoint."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.setenv(name, "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # A client built without an explicit endpoint_url fails fast here instead of
        # reaching real AWS.
        env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            env.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def s3_server(_no_real_aws: None) -> Iterator[S3Server]:
    """Start moto's S3 server on a free port of 127.0.0.1 and create the test bucket."""
    # No importorskip: CI installs every extra, and a missing one must fail, not skip.
    import boto3
    from moto.server import ThreadedMotoServer

    # port=0: the OS picks a free port; get_host_and_port() reports it once started.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, BUCKET)
    finally:
        server.stop()
