"""What caching and result persistence cost on memory://, local disk and S3 (moto).

Every row pairs fluvial with the rawest equivalent, timed alternately in the same run:

* cache-hit: an ``INPUTS``-cached task called with one input, against a plain call of its
  body; DESIGN.md budgets the hit itself (≤ 20 µs on memory://, ≤ 100 µs on local disk);
* cache-miss: the same task with a fresh input per call (a lookup, a run and a record write),
  against ``fs.pipe_file`` of the pickled input to a fresh path. fluvial's local writes are
  atomic and fsynced and a raw ``pipe_file`` is neither, so the ratio shows what that costs;
* persist: MB/s of a task returning 1 MB of random bytes with ``persist_result=True`` and no
  cache key, against ``fs.pipe_file`` of the same bytes; objects are deleted between samples.

S3 is moto's server, started in this process on 127.0.0.1 and stopped at the end: its threads
share the GIL with the timed code, so S3 rows are a loopback floor, not AWS latency. Without
s3fs or moto[server] those rows are skipped. Hit and miss rows check that the task body ran
exactly as often as hits and misses imply, so a broken cache cannot pass as fast.
"""

from __future__ import annotations

__all__ = ("STORAGES", "Storages", "plan_cache_hit", "plan_cache_miss", "plan_persist")

import itertools
import logging
import os
import pickle
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Self

from ._model import Job, Row, Skipped
from ._timing import per_task_us, time_pair

if TYPE_CHECKING:
    from collections.abc import Callable

    from fluvial.storage import StorageLocation

    from ._model import Config, Samples

STORAGES = ("memory", "local", "s3")
_LABELS = {"memory": "memory://", "local": "local disk", "s3": "S3 (moto)"}
_HIT_BUDGETS = {"memory": 20.0, "local": 100.0}
S3_BUCKET = "fluvial-bench"
_inputs = itertools.count(1)  # inputs never repeat in a run: a miss never hits an earlier record


@dataclass
class Storage:
    """One storage under test: a root URL plus fsspec options."""

    base: str
    options: dict[str, Any] = field(default_factory=dict)

    def task_storage(self, name: str) -> Any:
        """Return what a user passes as ``result_storage=``: the URL, or a store if needed."""
        from fluvial.storage import ResultStore

        url = f"{self.base}/{name}"
        return ResultStore.from_url(url, **self.options) if self.options else url

    def location(self, name: str) -> StorageLocation:
        """Return the fsspec location of the sub-root *name*, created, for raw baselines."""
        from fluvial.storage import ResultStore

        location = ResultStore.from_url(f"{self.base}/{name}", **self.options).result_storage
        location.fs.makedirs(location.root, exist_ok=True)
        return location


class Storages:
    """Build each storage on first use and tear all of them down on exit."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._built: dict[str, Storage] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def get(self, kind: str) -> Storage:
        """Return the ``memory``, ``local`` or ``s3`` storage, building it on first use."""
        if kind not in self._built:
            build = {"memory": self._memory, "local": self._local, "s3": self._s3}[kind]
            self._built[kind] = build()
        return self._built[kind]

    def _memory(self) -> Storage:
        """Return a memory:// root unique to this run, removed on exit."""
        import fsspec

        root = f"fluvial-bench-{uuid.uuid4().hex[:8]}"
        fs = fsspec.filesystem("memory")
        self._stack.callback(lambda: fs.rm(root, recursive=True) if fs.exists(root) else None)
        return Storage(f"memory://{root}")

    def _local(self) -> Storage:
        """Return a temporary directory, removed on exit."""
        return Storage(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="fluvial-")))

    def _s3(self) -> Storage:
        """Start moto's S3 server on 127.0.0.1 with one bucket, or raise Skipped."""
        try:
            import boto3  # type: ignore[import-untyped]
            import flask  # noqa: F401  (moto[server]; without it the server thread dies)
            import s3fs  # type: ignore[import-untyped]  # noqa: F401
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise Skipped("S3 needs 'fluvial[s3]' and 'moto[server]'") from exc
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._stack.callback(server.stop)
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(
            Bucket=S3_BUCKET
        )
        client_kwargs = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        options = {"key": "testing", "secret": "testing", "client_kwargs": client_kwargs}
        return Storage(f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:8]}", options)


def _counting(runs: list[int]) -> Callable[[int], int]:
    """Return an identity function that counts in ``runs[0]`` how often its body ran."""

    def echo(x: int) -> int:
        """Return *x*: the cached task's body."""
        runs[0] += 1
        return x

    return echo


def _check_runs(runs: list[int], expected: int, what: str) -> None:
    """Raise if the task body ran other than *expected* times."""
    if runs[0] != expected:
        raise RuntimeError(f"{what}: the task body ran {runs[0]} times, expected {expected}")


def _hit(storages: Storages, kind: str, n: int, repeats: int) -> Samples:
    """Return µs per cache hit of an INPUTS-cached task, and µs per plain call of its body."""
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    runs = [0]
    echo = _counting(runs)
    storage = storages.get(kind).task_storage("hit")
    cached = task(cache_policy=INPUTS, result_storage=storage)(echo)
    x = next(_inputs)
    cached(x)  # the one miss; every later call hits the record it wrote

    def hits() -> None:
        for _ in range(n):
            cached(x)

    def plain() -> None:
        for _ in range(n):
            echo(x)

    samples = time_pair(hits, plain, repeats)
    _check_runs(runs, 1 + (repeats + 1) * n, "cache hits")  # plain calls count too
    return per_task_us(samples, n)


def _miss(storages: Storages, kind: str, n: int, repeats: int) -> Samples:
    """Return µs per cache miss + write (a fresh input each call), and µs per raw pipe_file."""
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    runs = [0]
    storage = storages.get(kind)
    cached = task(cache_policy=INPUTS, result_storage=storage.task_storage("miss"))(_counting(runs))
    raw = storage.location("raw-miss")

    def misses() -> None:
        for _ in range(n):
            cached(next(_inputs))

    def pipes() -> None:
        for _ in range(n):
            x = next(_inputs)
            raw.fs.pipe_file(raw.path_for(str(x)), pickle.dumps(x))

    samples = time_pair(misses, pipes, repeats)
    _check_runs(runs, (repeats + 1) * n, "cache misses")
    return per_task_us(samples, n)


def _clear(*locations: StorageLocation) -> None:
    """Delete every object under each of *locations* (untimed, between persist samples)."""
    for location in locations:
        paths = location.fs.find(location.root)
        if paths:
            location.fs.rm(paths)


def _persist(storages: Storages, kind: str, config: Config) -> Samples:
    """Return MB/s persisting 1 MB task results, and MB/s of raw pipe_file of the same bytes."""
    from fluvial import task
    from fluvial.cache_policies import NO_CACHE

    n, payload = config.persist_n, os.urandom(config.persist_bytes)
    storage = storages.get(kind)

    @task(cache_policy=NO_CACHE, persist_result=True, result_storage=storage.task_storage("p"))
    def produce() -> bytes:
        """Return the same random bytes; each call persists a new record."""
        return payload

    ours, raw = storage.location("p"), storage.location("raw-p")

    def persist() -> None:
        for _ in range(n):
            produce()

    def pipes() -> None:
        for i in range(n):
            raw.fs.pipe_file(raw.path_for(f"obj-{i}"), payload)

    subject, baseline = time_pair(persist, pipes, config.repeats, partial(_clear, ours, raw))
    megabytes = n * len(payload) / 1e6
    return [megabytes / s for s in subject], [megabytes / b for b in baseline]


def plan_cache_hit(config: Config, storages: Storages) -> list[Job]:
    """Return one cache-hit row per storage."""
    jobs = []
    for kind in STORAGES:
        n = config.s3_n if kind == "s3" else config.cache_hit_n
        row = Row("cache-hit", "inline", n, "µs/hit", _HIT_BUDGETS.get(kind), "value")
        row.label, row.baseline_name = _LABELS[kind], "plain call"
        row.compare = False  # the budget is on the hit itself; the plain call is a floor
        jobs.append(Job(row, partial(_hit, storages, kind, n, config.repeats)))
    return jobs


def plan_cache_miss(config: Config, storages: Storages) -> list[Job]:
    """Return one cache-miss + write row per storage."""
    jobs = []
    for kind in STORAGES:
        n = config.s3_n if kind == "s3" else config.cache_miss_n
        row = Row("cache-miss", "inline", n, "µs/call", label=_LABELS[kind])
        row.baseline_name = "fs.pipe_file"
        jobs.append(Job(row, partial(_miss, storages, kind, n, config.repeats)))
    return jobs


def plan_persist(config: Config, storages: Storages) -> list[Job]:
    """Return one 1 MB persistence-throughput row per storage."""
    jobs = []
    for kind in STORAGES:
        row = Row("persist", "inline", config.persist_n, "MB/s", label=_LABELS[kind])
        row.higher_is_better, row.baseline_name = True, "fs.pipe_file"
        jobs.append(Job(row, partial(_persist, storages, kind, config)))
    return jobs
