"""The scenario catalogue, and a run: plan every selected row, then fill them in order.

Rows run grouped by runner (in-flow scenarios first, then thread, process, Dask and Ray), so
each cluster is started once and stopped before the next one starts. A scenario that raises
becomes an ERROR row with its message: one broken row must not hide the rest of the table.
"""

from __future__ import annotations

__all__ = ("SCENARIOS", "Scenario", "plan", "run_jobs")

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._caching import plan_cache_hit, plan_cache_miss, plan_persist
from ._graphs import GRAPH_SCENARIOS, plan_graph
from ._inline import plan_async, plan_sequential
from ._limits import plan_tag_limit
from ._model import RUNNERS, Job, Skipped
from ._startup import plan_first_flow, plan_import, plan_memory

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._backends import Backends
    from ._caching import Storages
    from ._model import Config

_CLUSTER = ("thread", "process", "dask", "ray")


@dataclass(frozen=True)
class Scenario:
    """A named measurement, the runners it applies to, and a one-line summary."""

    name: str
    runners: tuple[str, ...]
    summary: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("import", ("inline",), "import fluvial in a fresh interpreter"),
        Scenario("first-flow", ("inline",), "first flow run after import, fresh interpreter"),
        Scenario("sequential", ("inline",), "sync task calls in a flow vs plain calls"),
        Scenario("async", ("inline",), "async tasks gathered in a flow vs asyncio.gather"),
        Scenario("cache-hit", ("inline",), "cache hits on memory://, local disk, S3"),
        Scenario("cache-miss", ("inline",), "cache miss + record write vs fs.pipe_file"),
        Scenario("persist", ("inline",), "persisting 1 MB results vs fs.pipe_file, MB/s"),
        Scenario("fanout", _CLUSTER, "N no-op tasks submitted, then waited for"),
        Scenario("map", _CLUSTER, "task.map over N items"),
        Scenario("chain", _CLUSTER, "each task takes the previous task's future"),
        Scenario("diamond", _CLUSTER, "one task, N dependents, one fan-in task"),
        Scenario("memory", ("thread",), "memory retained per finished task, peak RSS"),
        Scenario("tag-limit", ("thread",), "tagged tasks under a tag concurrency limit of 2"),
    )
}


def _plan_one(
    config: Config, name: str, runner: str, backends: Backends, storages: Storages
) -> list[Job]:
    """Return the rows of scenario *name* on *runner*."""
    if name in GRAPH_SCENARIOS:
        return plan_graph(config, backends, name, runner)
    if name in ("cache-hit", "cache-miss", "persist"):
        by_name = {"cache-hit": plan_cache_hit, "cache-miss": plan_cache_miss}
        return by_name.get(name, plan_persist)(config, storages)
    simple = {
        "import": plan_import,
        "first-flow": plan_first_flow,
        "sequential": plan_sequential,
        "async": plan_async,
        "memory": plan_memory,
        "tag-limit": plan_tag_limit,
    }
    return simple[name](config)


def plan(
    config: Config,
    scenarios: list[str],
    runners: list[str],
    backends: Backends,
    storages: Storages,
) -> list[Job]:
    """Return every row of the selected scenarios on the selected runners, grouped by runner."""
    jobs: list[Job] = []
    for runner in (r for r in RUNNERS if r in runners):
        for name in (s for s in SCENARIOS if s in scenarios):
            if runner in SCENARIOS[name].runners:
                jobs.extend(_plan_one(config, name, runner, backends, storages))
    return jobs


def run_jobs(jobs: list[Job], advance: Callable[[Job], object]) -> None:
    """Fill every job's row in order, calling *advance* before each."""
    for job in jobs:
        advance(job)
        row = job.row
        try:
            row.samples, row.baseline = job.measure()
        except Skipped as exc:
            row.note = str(exc)
        except Exception as exc:
            row.note, row.failed = f"{type(exc).__name__}: {exc}", True
