"""Each task runner next to the raw backend it sits on, sharing the same machine in one run.

A :class:`Backend` gives fluvial's runner (a factory, since every flow run enters its runner
afresh) and the raw equivalents of every graph scenario: a fan-out, a map, a chain and a
diamond. Raw sides use the backend's own idiom: Dask futures and Ray ObjectRefs are passed as
arguments, while a ``concurrent.futures`` executor cannot take futures as arguments, so there
a dependent submit waits for the previous result, as a user without fluvial would write it.

Only one backend is alive at a time: idle Dask or Ray workers still take CPU from the timed code.
"""

from __future__ import annotations

__all__ = ("Backend", "Backends")

import importlib.util
import logging
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Self

from ._model import Config, Skipped
from ._work import noop, step, total, total_args

if TYPE_CHECKING:
    from collections.abc import Callable

    from fluvial.runners import TaskRunner

_EXTRAS = {"dask": "distributed", "ray": "ray"}


@dataclass
class Backend:
    """One fluvial runner and the raw fan-out, map, chain and diamond on its backend."""

    runner: Callable[[], TaskRunner]
    fan_out: Callable[[int], object]
    map: Callable[[int], object]
    chain: Callable[[int], int]
    diamond: Callable[[int], int]


def _executor_backend(pool: Executor, runner: Callable[[], TaskRunner]) -> Backend:
    """Return the raw scenarios on a ``concurrent.futures`` executor."""

    def fan_out(n: int) -> None:
        for future in [pool.submit(noop, i) for i in range(n)]:
            future.result()

    def map_(n: int) -> None:
        list(pool.map(noop, range(n)))

    def chain(depth: int) -> int:
        x = 0
        for _ in range(depth):
            x = pool.submit(step, x).result()
        return x

    def diamond(width: int) -> int:
        top = pool.submit(step, 0).result()
        arms = [pool.submit(step, top) for _ in range(width)]
        return pool.submit(total, [f.result() for f in arms]).result()

    return Backend(runner, fan_out, map_, chain, diamond)


class Backends:
    """Build each backend on first use; close it when another is asked for, and on exit."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._stack = ExitStack()
        self._kind: str | None = None
        self._backend: Backend | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def get(self, kind: str) -> Backend:
        """Return the ``thread``, ``process``, ``dask`` or ``ray`` backend, or raise Skipped."""
        module = _EXTRAS.get(kind)
        if module is not None and importlib.util.find_spec(module) is None:
            raise Skipped(f"pip install 'fluvial[{kind}]'")
        if kind != self._kind or self._backend is None:
            self._stack.close()
            self._kind, self._backend = None, None
            build = {
                "thread": self._thread,
                "process": self._process,
                "dask": self._dask,
                "ray": self._ray,
            }[kind]
            self._backend = build()
            self._kind = kind
        return self._backend

    def _thread(self) -> Backend:
        """Return a raw ThreadPoolExecutor as wide as the thread runner."""
        from fluvial.runners import ThreadPoolTaskRunner

        workers = self._config.thread_workers
        pool = self._stack.enter_context(ThreadPoolExecutor(workers))
        return _executor_backend(pool, partial(ThreadPoolTaskRunner, max_workers=workers))

    def _process(self) -> Backend:
        """Return a raw ProcessPoolExecutor with spawned workers, as the process runner uses."""
        from fluvial.runners import ProcessPoolTaskRunner

        workers = self._config.cluster_workers
        context = multiprocessing.get_context("spawn")
        pool = self._stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
        return _executor_backend(pool, partial(ProcessPoolTaskRunner, max_workers=workers))

    def _dask(self) -> Backend:
        """Start a LocalCluster of single-threaded worker processes and a raw client on it."""
        import distributed

        from fluvial.runners import DaskTaskRunner

        cluster = self._stack.enter_context(
            distributed.LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=self._config.cluster_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            )
        )
        client: Any = self._stack.enter_context(
            distributed.Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        )

        def fan_out(n: int) -> None:
            client.gather([client.submit(noop, i, pure=False) for i in range(n)])

        def map_(n: int) -> None:
            client.gather(client.map(noop, range(n), pure=False))

        def chain(depth: int) -> int:
            future = client.submit(step, 0, pure=False)
            for _ in range(depth - 1):
                future = client.submit(step, future, pure=False)
            return int(future.result())

        def diamond(width: int) -> int:
            top = client.submit(step, 0, pure=False)
            arms = [client.submit(step, top, pure=False) for _ in range(width)]
            return int(client.submit(total, arms, pure=False).result())

        runner = partial(DaskTaskRunner, address=cluster.scheduler_address)
        return Backend(runner, fan_out, map_, chain, diamond)

    def _ray(self) -> Backend:
        """Start a local Ray with as many CPUs as cluster workers; shut down on exit."""
        import ray

        from fluvial.runners import RayTaskRunner

        ray.init(
            num_cpus=self._config.cluster_workers,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,  # worker log lines would interleave with the progress bar
        )
        self._stack.callback(ray.shutdown)
        r_noop: Any = ray.remote(noop)
        r_step: Any = ray.remote(step)
        r_total: Any = ray.remote(total_args)  # Ray resolves only top-level refs

        def fan_out(n: int) -> None:
            ray.get([r_noop.remote(i) for i in range(n)])

        def chain(depth: int) -> int:
            ref = r_step.remote(0)
            for _ in range(depth - 1):
                ref = r_step.remote(ref)
            return int(ray.get(ref))

        def diamond(width: int) -> int:
            top = r_step.remote(0)
            return int(ray.get(r_total.remote(*[r_step.remote(top) for _ in range(width)])))

        # Ray has no map: a list comprehension of .remote() calls is how users write one.
        return Backend(RayTaskRunner, fan_out, fan_out, chain, diamond)
