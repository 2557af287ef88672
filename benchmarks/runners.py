"""What the process, Dask and Ray runners cost per task against their raw backends, in one run.

Why: DESIGN.md budgets a fan-out at ≤ 1.3× a raw ``ProcessPoolExecutor``, ≤ 1.2× raw
``client.submit`` on the same Dask cluster and ≤ 1.2× raw ``f.remote()`` on the same Ray, and
issue 4 asks the benchmarks to report each runner against that baseline. Each pair shares the
infrastructure and is timed alternately in the same run (see :mod:`benchmarks.core`):

* fan-out: N no-op tasks submitted from a flow, then all waited for, against the raw backend's
  submit of the same module-level no-op and a gather of every result;
* chain (report only): 100 tasks, each submitted with the previous one's future as argument,
  against the raw chain (Dask futures and Ray ObjectRefs as arguments; a ``ProcessPoolExecutor``
  cannot take futures as arguments, so there each submit waits for the previous result).

Every flow run starts its runner afresh (spawning process workers, connecting a Dask client),
so all samples of a row are taken inside one flow run, after one untimed warm-up of each side:
the rows measure warm workers, not start-up. Only one backend is alive at a time (two worker
processes each, on the caller's machine). Workers import the no-ops from this module by name:
spawned processes and LocalCluster workers inherit ``sys.path`` and Ray adds the driver's
working directory to its workers' path, so run ``python -m benchmarks`` from the repository root.
"""

from __future__ import annotations

__all__ = ("Clusters", "runner_rows")

import importlib.util
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Self, cast

from .core import Config, Result, Samples, Skipped, _time_pair

if TYPE_CHECKING:
    from collections.abc import Callable

    from fluvial.futures import Future
    from fluvial.runners import TaskRunner
    from fluvial.tasks import Task

    BenchFn = Callable[[Config], Samples]

WORKERS = 2
BUDGETS = {"process": 1.3, "dask": 1.2, "ray": 1.2}
_EXTRAS = {"dask": "distributed", "ray": "ray"}
_WARM_UP_N = 8 * WORKERS  # enough concurrent tasks that every worker gets one


def noop(i: int = 0) -> None:
    """Do nothing: the unit of work on every side of a fan-out."""


def step(x: int) -> int:
    """Return ``x + 1``: one link of a dependency chain."""
    return x + 1


@dataclass
class Backend:
    """One runner and the raw equivalents of its fan-out and chain, on the same workers."""

    runner: Callable[[], TaskRunner]
    fan_out: Callable[[int], object]
    chain: Callable[[int], int]


class Clusters:
    """Build each backend on first use; close it when another is asked for, and on exit."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._kind: str | None = None
        self._backend: Backend | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def get(self, kind: str) -> Backend:
        """Return the ``process``, ``dask`` or ``ray`` backend, or raise Skipped."""
        module = _EXTRAS.get(kind)
        if module is not None and importlib.util.find_spec(module) is None:
            raise Skipped(f"skipped: pip install 'fluvial[{kind}]'")
        if kind != self._kind or self._backend is None:
            self._stack.close()  # one backend at a time: idle workers still cost CPU
            self._kind, self._backend = None, None
            build = {"process": self._process, "dask": self._dask, "ray": self._ray}[kind]
            self._backend = build()
            self._kind = kind
        return self._backend

    def _process(self) -> Backend:
        """Start a raw ProcessPoolExecutor with spawned workers."""
        from fluvial.runners import ProcessPoolTaskRunner

        context = multiprocessing.get_context("spawn")
        pool = self._stack.enter_context(ProcessPoolExecutor(WORKERS, mp_context=context))

        def fan_out(n: int) -> None:
            for future in [pool.submit(noop, i) for i in range(n)]:
                future.result()

        def chain(depth: int) -> int:
            x = 0
            for _ in range(depth):
                x = pool.submit(step, x).result()
            return x

        return Backend(partial(ProcessPoolTaskRunner, max_workers=WORKERS), fan_out, chain)

    def _dask(self) -> Backend:
        """Start a LocalCluster of two single-threaded worker processes and a raw client."""
        import distributed

        from fluvial.runners import DaskTaskRunner

        cluster = self._stack.enter_context(
            distributed.LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
        )
        client = self._stack.enter_context(
            distributed.Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        )

        def fan_out(n: int) -> None:
            client.gather([client.submit(noop, i, pure=False) for i in range(n)])

        def chain(depth: int) -> int:
            future = client.submit(step, 0, pure=False)
            for _ in range(depth - 1):
                future = client.submit(step, future, pure=False)
            return int(future.result())

        address = cluster.scheduler_address
        return Backend(partial(DaskTaskRunner, address=address), fan_out, chain)

    def _ray(self) -> Backend:
        """Start a local Ray with two CPUs, shut down on exit."""
        import ray

        from fluvial.runners import RayTaskRunner

        ray.init(num_cpus=WORKERS, include_dashboard=False)
        self._stack.callback(ray.shutdown)
        remote_noop: Any = ray.remote(noop)
        remote_step: Any = ray.remote(step)

        def fan_out(n: int) -> None:
            ray.get([remote_noop.remote(i) for i in range(n)])

        def chain(depth: int) -> int:
            ref = remote_step.remote(0)
            for _ in range(depth - 1):
                ref = remote_step.remote(ref)
            return int(ray.get(ref))

        return Backend(RayTaskRunner, fan_out, chain)


# --- the fluvial side -------------------------------------------------------------------------


def _check_completed(futures: list[Future[Any]]) -> None:
    """Raise if some run did not complete, so a broken runner cannot pass as fast."""
    bad = [f.state for f in futures if not f.state.is_completed()]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(futures)} task runs did not complete: {bad[0]}")


def _fluvial_fan_out(noop_task: Task[..., None], n: int) -> None:
    """Submit *n* no-op tasks to the flow's runner and wait for all of them."""
    from fluvial.futures import wait

    futures = [cast("Future[None]", noop_task.submit(i)) for i in range(n)]
    wait(futures)
    _check_completed(futures)


def _fluvial_chain(step_task: Task[..., int], depth: int) -> int:
    """Submit *depth* tasks, each taking the previous one's future; return the last value."""
    future = cast("Future[int]", step_task.submit(0))
    for _ in range(depth - 1):
        future = cast("Future[int]", step_task.submit(future))
    return future.result()


def _checked_chain(chain: Callable[[int], int], depth: int) -> None:
    """Run *chain* to *depth*; raise unless it computed *depth*."""
    got = chain(depth)
    if got != depth:
        raise RuntimeError(f"a chain of depth {depth} returned {got}")


def _in_flow(
    backend: Backend,
    subject: Callable[[], object],
    baseline: Callable[[], object],
    n: int,
    repeats: int,
) -> Samples:
    """Time *subject* against *baseline* inside one flow run on *backend*; µs per task each."""
    from fluvial import flow, task

    @flow(name="runner-benchmark", task_runner=backend.runner())
    def measure() -> Samples:
        """Take every sample in this one flow run, so the runner's workers stay warm."""
        # A chain keeps one worker busy at a time: start every worker before any timing.
        _fluvial_fan_out(task(noop), _WARM_UP_N)
        backend.fan_out(_WARM_UP_N)
        return _time_pair(subject, baseline, repeats)

    subject_s, baseline_s = measure()
    return [s * 1e6 / n for s in subject_s], [b * 1e6 / n for b in baseline_s]


def bench_fan_out(config: Config, clusters: Clusters, kind: str, n: int) -> Samples:
    """Return µs per task of a fan-out of *n* no-ops on the runner and on its raw backend."""
    from fluvial import task

    backend = clusters.get(kind)
    fluvial_side = partial(_fluvial_fan_out, task(noop), n)
    raw_side = partial(backend.fan_out, n)
    return _in_flow(backend, fluvial_side, raw_side, n, config.runner_repeats)


def bench_chain(config: Config, clusters: Clusters, kind: str, depth: int) -> Samples:
    """Return µs per task of a dependency chain of *depth* on the runner and on its raw backend."""
    from fluvial import task

    backend = clusters.get(kind)
    fluvial_side = partial(_checked_chain, partial(_fluvial_chain, task(step)), depth)
    raw_side = partial(_checked_chain, backend.chain, depth)
    return _in_flow(backend, fluvial_side, raw_side, depth, config.runner_repeats)


# --- rows -------------------------------------------------------------------------------------


def runner_rows(config: Config, clusters: Clusters) -> list[tuple[Result, BenchFn]]:
    """Return a fan-out and a chain row per runner, grouped by runner, with their benchmarks."""
    runners = [
        ("process", "process runner", config.process_n),
        ("dask", "Dask runner (LocalCluster)", config.dask_n),
        ("ray", "Ray runner (local Ray)", config.ray_n),
    ]
    rows: list[tuple[Result, BenchFn]] = []
    for kind, label, n in runners:
        fan = Result(f"{label} fan-out, W={WORKERS}, n={n:,}", "µs/task", BUDGETS[kind], "ratio")
        rows.append((fan, partial(bench_fan_out, clusters=clusters, kind=kind, n=n)))
        depth = config.chain_depth
        chain = Result(f"{label} chain, depth={depth}", "µs/task", None, "ratio")
        rows.append((chain, partial(bench_chain, clusters=clusters, kind=kind, depth=depth)))
    return rows
