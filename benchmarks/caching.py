"""What caching and result persistence cost on memory://, local disk and S3 (moto), in one run.

Why: DESIGN.md budgets a cache hit at ≤ 20 µs on memory:// and ≤ 100 µs on local disk, and
issue 3 asks for the cost of a miss + write and for 1 MB persist throughput. A task-level number
alone would hide where the time goes, so every row pairs fluvial with the rawest equivalent,
timed alternately in the same run (see :mod:`benchmarks.core`):

* cache hit: an ``INPUTS``-cached task called with one input, against a plain call of the same
  function; the budget applies to the hit's µs, not to a ratio;
* ``store.read(key)``: the result store alone (LRU entry checked against the stored header),
  against fsspec's ``cat_file`` of the same object, so the store's share of a hit is visible;
* cache miss + write: the same task with a fresh input per call, against ``fs.pipe_file`` of
  the pickled input to a fresh path (fluvial's local writes are atomic and fsynced, raw
  ``pipe_file`` is neither, so that ratio shows what durability costs);
* persist: MB/s of a task returning 1 MB of random bytes with ``persist_result=True`` and no
  cache key, against ``fs.pipe_file`` of the same bytes; objects are deleted between samples.

S3 is moto's server, started in this process on 127.0.0.1 and stopped at the end: its threads
share the GIL with the timed code, so S3 rows are a loopback floor, not AWS latency. Without
s3fs or moto[server] those rows are skipped. Every hit and miss row also checks that the task
body ran exactly as often as a hit or a miss implies, so a broken cache cannot pass as fast.
"""

from __future__ import annotations

__all__ = ("Backend", "Backends", "caching_rows")

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

from .core import Config, Result, Samples, Skipped, _time_pair

if TYPE_CHECKING:
    from collections.abc import Callable

    from fluvial.storage import ResultStore, StorageLocation

    BenchFn = Callable[[Config], Samples]

S3_SKIP = "skipped: install fluvial[s3] and moto[server]"
S3_BUCKET = "fluvial-bench"
# Inputs never repeat within a run, so a "miss" is never a hit on an earlier row's record.
_inputs = itertools.count(1)


@dataclass
class Backend:
    """One storage under test: a root URL or path plus fsspec options."""

    label: str
    base: str
    options: dict[str, Any] = field(default_factory=dict)

    def store(self, name: str) -> ResultStore:
        """Return a result store on the sub-root *name*."""
        from fluvial.storage import ResultStore

        return ResultStore.from_url(f"{self.base}/{name}", **self.options)

    def task_storage(self, name: str) -> str | ResultStore:
        """Return what a user would pass as ``result_storage=``: the URL, or a store if needed."""
        return self.store(name) if self.options else f"{self.base}/{name}"

    def location(self, name: str) -> StorageLocation:
        """Return the fsspec location of the sub-root *name*, created, for raw baselines."""
        location = self.store(name).result_storage
        location.fs.makedirs(location.root, exist_ok=True)
        return location


class Backends:
    """Build each backend on first use and tear all of them down on exit."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._built: dict[str, Backend] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def get(self, kind: str) -> Backend:
        """Return the ``memory``, ``local`` or ``s3`` backend, building it on first use."""
        if kind not in self._built:
            build = {"memory": self._memory, "local": self._local, "s3": self._s3}[kind]
            self._built[kind] = build()
        return self._built[kind]

    def _memory(self) -> Backend:
        """Return a memory:// root unique to this run, removed on exit."""
        import fsspec

        root = f"fluvial-bench-{uuid.uuid4().hex[:8]}"
        fs = fsspec.filesystem("memory")
        self._stack.callback(lambda: fs.rm(root, recursive=True) if fs.exists(root) else None)
        return Backend("memory://", f"memory://{root}")

    def _local(self) -> Backend:
        """Return a temporary directory, removed on exit."""
        tmp = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="fluvial-bench-"))
        return Backend("local disk", tmp)

    def _s3(self) -> Backend:
        """Start moto's S3 server on 127.0.0.1 with one bucket, or raise Skipped."""
        try:
            import boto3  # type: ignore[import-untyped]
            import flask  # noqa: F401  (moto[server]; without it the server thread dies)
            import s3fs  # type: ignore[import-untyped]  # noqa: F401
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise Skipped(S3_SKIP) from exc
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._stack.callback(server.stop)
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
        client.create_bucket(Bucket=S3_BUCKET)
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        return Backend("S3 (moto)", f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:8]}", options)


# --- helpers ----------------------------------------------------------------------------------


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


def _clear(*locations: StorageLocation) -> None:
    """Delete every object under each of *locations* (untimed, between persist samples)."""
    for location in locations:
        paths = location.fs.find(location.root)
        if paths:
            location.fs.rm(paths)


def _per_call_us(samples: Samples, n: int) -> Samples:
    """Turn seconds per *n* calls into µs per call, for both sides."""
    subject, baseline = samples
    return [s * 1e6 / n for s in subject], [b * 1e6 / n for b in baseline]


# --- the benchmarks ---------------------------------------------------------------------------


def bench_hit(config: Config, backend: Backend, n: int) -> Samples:
    """Return µs per cache hit of an INPUTS-cached task, and µs per plain call of its body."""
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    runs = [0]
    echo = _counting(runs)
    cached = task(cache_policy=INPUTS, result_storage=backend.task_storage("hit"))(echo)
    x = next(_inputs)
    cached(x)  # the one miss; every later call hits the record it writes

    def hits() -> None:
        for _ in range(n):
            cached(x)

    def plain() -> None:
        for _ in range(n):
            echo(x)

    samples = _time_pair(hits, plain, config.repeats)
    _check_runs(runs, 1 + (config.repeats + 1) * n, "cache hits")  # plain calls count too
    return _per_call_us(samples, n)


def bench_store_read(config: Config, backend: Backend, n: int) -> Samples:
    """Return µs per ``store.read(key)`` of a stored record, and µs per raw ``fs.cat_file``."""
    store = backend.store("read")
    store.write(next(_inputs), key="record")
    fs, path = store.result_storage.fs, store.result_storage.path_for("record")

    def reads() -> None:
        for _ in range(n):
            store.read("record")

    def cats() -> None:
        for _ in range(n):
            fs.cat_file(path)

    return _per_call_us(_time_pair(reads, cats, config.repeats), n)


def bench_miss(config: Config, backend: Backend, n: int) -> Samples:
    """Return µs per cache miss + write (a fresh input each call), and µs per raw pipe_file."""
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    runs = [0]
    cached = task(cache_policy=INPUTS, result_storage=backend.task_storage("miss"))(_counting(runs))
    raw = backend.location("raw-miss")

    def misses() -> None:
        for _ in range(n):
            cached(next(_inputs))

    def pipes() -> None:
        for _ in range(n):
            x = next(_inputs)
            raw.fs.pipe_file(raw.path_for(str(x)), pickle.dumps(x))

    samples = _time_pair(misses, pipes, config.repeats)
    _check_runs(runs, (config.repeats + 1) * n, "cache misses")
    return _per_call_us(samples, n)


def bench_persist(config: Config, backend: Backend) -> Samples:
    """Return MB/s persisting 1 MB task results, and MB/s of raw pipe_file of the same bytes."""
    from fluvial import task
    from fluvial.cache_policies import NO_CACHE

    n, payload = config.persist_n, os.urandom(config.persist_bytes)

    @task(
        cache_policy=NO_CACHE, persist_result=True, result_storage=backend.task_storage("persist")
    )
    def produce() -> bytes:
        """Return the same 1 MB of random bytes; each call persists a new record."""
        return payload

    ours, raw = backend.location("persist"), backend.location("raw-persist")

    def persist() -> None:
        for _ in range(n):
            produce()

    def pipes() -> None:
        for i in range(n):
            raw.fs.pipe_file(raw.path_for(f"obj-{i}"), payload)

    subject, baseline = _time_pair(persist, pipes, config.repeats, partial(_clear, ours, raw))
    megabytes = n * len(payload) / 1e6
    return [megabytes / s for s in subject], [megabytes / b for b in baseline]


# --- rows -------------------------------------------------------------------------------------


def _bound(backends: Backends, kind: str, bench: Callable[..., Samples], *args: int) -> BenchFn:
    """Return *bench* for one backend, built only when the row runs (S3 starts lazily)."""
    return lambda config: bench(config, backends.get(kind), *args)


def caching_rows(config: Config, backends: Backends) -> list[tuple[Result, BenchFn]]:
    """Return the caching and persistence rows, grouped by measurement, with their benchmarks."""
    storages = [
        ("memory", "memory://", None, 20.0),
        ("local", "local disk", None, 100.0),
        ("s3", "S3 (moto)", "s3", None),
    ]
    rows: list[tuple[Result, BenchFn]] = []
    for kind, label, remote, budget in storages:
        n = config.s3_hit_n if remote else config.cache_hit_n
        hit = Result(f"cache hit, {label}, n={n:,}", "µs/hit", budget, "value")
        rows.append((hit, _bound(backends, kind, bench_hit, n)))
    for kind, label, remote, _ in storages:
        n = config.s3_hit_n if remote else config.cache_hit_n
        read = Result(f"store.read(key) vs cat_file, {label}, n={n:,}", "µs/read", None, "ratio")
        rows.append((read, _bound(backends, kind, bench_store_read, n)))
    for kind, label, remote, _ in storages:
        n = config.s3_miss_n if remote else config.cache_miss_n
        miss = Result(f"cache miss + write, {label}, n={n:,}", "µs/call", None, "ratio")
        rows.append((miss, _bound(backends, kind, bench_miss, n)))
    for kind, label, _, _ in storages:
        mb = config.persist_bytes / 1e6
        name = f"persist {mb:g} MB result, {label}, n={config.persist_n}"
        rows.append((Result(name, "MB/s", None, "ratio"), _bound(backends, kind, bench_persist)))
    return rows
