"""Task graphs on every runner: fan-out, map, chain and diamond, each against its raw backend.

* fan-out: N no-op tasks submitted from a flow, then all waited for; raw: N submits, then every
  result;
* map: ``task.map`` over N items; raw: the backend's map (``Executor.map``, ``client.map``, a
  list of ``.remote()`` calls on Ray, which has no map);
* chain: each task takes the previous task's future; raw: the backend's idiom (see
  :mod:`._backends`);
* diamond: one task, N tasks that each take its future, one task that takes all N futures.

Every flow run enters its runner afresh (spawning process workers, connecting a Dask client),
so all samples of a row are taken inside one flow run after a warm-up fan-out on both sides:
the rows measure warm workers, not start-up. Results are µs per task.
"""

from __future__ import annotations

__all__ = ("GRAPH_SCENARIOS", "plan_graph")

from functools import partial
from typing import TYPE_CHECKING, Any, cast

from ._model import Job, Row
from ._timing import per_task_us, time_pair
from ._work import noop, step, total

if TYPE_CHECKING:
    from collections.abc import Callable

    from fluvial.futures import Future
    from fluvial.tasks import Task

    from ._backends import Backend, Backends
    from ._model import Config, Samples

GRAPH_SCENARIOS = ("fanout", "map", "chain", "diamond")
RUNNER_BUDGETS = {"thread": 1.5, "process": 1.3, "dask": 1.2, "ray": 1.2}
_RAW_NAMES = {
    "thread": "ThreadPoolExecutor",
    "process": "ProcessPoolExecutor",
    "dask": "client.submit",
    "ray": "f.remote()",
}


def _check_completed(futures: list[Future[Any]]) -> None:
    """Raise unless every run completed, so a broken runner cannot pass as fast."""
    bad = [f.state for f in futures if not f.state.is_completed()]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(futures)} task runs did not complete: {bad[0]}")


def _fan_out(noop_task: Task[..., None], n: int) -> None:
    """Submit *n* no-op tasks to the flow's runner and wait for all of them."""
    from fluvial.futures import wait

    futures = [cast("Future[None]", noop_task.submit(i)) for i in range(n)]
    wait(futures)
    _check_completed(futures)


def _map(noop_task: Task[..., None], n: int) -> None:
    """Map a no-op task over *n* items and wait for every run."""
    futures = cast("list[Future[None]]", noop_task.map(range(n)))
    from fluvial.futures import wait

    wait(futures)
    _check_completed(futures)


def _chain(step_task: Task[..., int], depth: int) -> int:
    """Submit *depth* tasks, each taking the previous one's future; return the last value."""
    future = cast("Future[int]", step_task.submit(0))
    for _ in range(depth - 1):
        future = cast("Future[int]", step_task.submit(future))
    return future.result()


def _diamond(step_task: Task[..., int], total_task: Task[..., int], width: int) -> int:
    """Run one task, *width* tasks on its future and one task on all of theirs; return it."""
    top = step_task.submit(0)
    arms = [step_task.submit(top) for _ in range(width)]
    return cast("Future[int]", total_task.submit(arms)).result()


def _checked(fn: Callable[[int], int], n: int, expected: int) -> None:
    """Run ``fn(n)``; raise unless it returned *expected*."""
    got = fn(n)
    if got != expected:
        raise RuntimeError(f"expected {expected}, the graph returned {got}")


def _sides(backend: Backend, scenario: str, n: int) -> tuple[Callable[[], object], ...]:
    """Return fluvial's and the raw side of *scenario* at size *n*."""
    from fluvial import task

    if scenario == "fanout":
        return partial(_fan_out, task(noop), n), partial(backend.fan_out, n)
    if scenario == "map":
        return partial(_map, task(noop), n), partial(backend.map, n)
    if scenario == "chain":
        ours = partial(_chain, task(step))
        return partial(_checked, ours, n, n), partial(_checked, backend.chain, n, n)
    ours = partial(_diamond, task(step), task(total))
    return partial(_checked, ours, n, 2 * n), partial(_checked, backend.diamond, n, 2 * n)


def _measure(backends: Backends, runner: str, scenario: str, n: int, repeats: int) -> Samples:
    """Time *scenario* on *runner* against its raw backend inside one flow run."""
    from fluvial import flow, task

    backend = backends.get(runner)
    subject, baseline = _sides(backend, scenario, n)
    warm = 8 * 6  # enough concurrent tasks that every worker of either side gets one

    @flow(name="fluvial-bench", task_runner=backend.runner())
    def measure() -> Samples:
        """Take every sample in this one flow run, so the runner's workers stay warm."""
        _fan_out(task(noop), warm)
        backend.fan_out(warm)
        return time_pair(subject, baseline, repeats)

    tasks = n + 2 if scenario == "diamond" else n
    return per_task_us(measure(), tasks)


def plan_graph(config: Config, backends: Backends, scenario: str, runner: str) -> list[Job]:
    """Return the rows of one graph scenario on one runner, at each of its sizes."""
    if scenario in ("chain", "diamond"):
        sizes: tuple[int, ...] = (
            config.chain_depth if scenario == "chain" else config.diamond_width,
        )
    else:
        sizes = config.ns_for(runner)
    budget = RUNNER_BUDGETS[runner] if scenario == "fanout" else None
    jobs = []
    for n in sizes:
        raw = "client.map" if (runner, scenario) == ("dask", "map") else _RAW_NAMES[runner]
        row = Row(scenario, runner, n, "µs/task", budget, baseline_name=raw)
        jobs.append(Job(row, partial(_measure, backends, runner, scenario, n, config.repeats)))
    return jobs
