"""Prefect 3's side of ``--compare-prefect``, run by path under an interpreter that has Prefect.

fluvial is not installed there, so this file imports only the standard library, Prefect and
what Prefect itself depends on (fsspec). It reads one JSON job from ``argv[1]`` and prints one
JSON line: a list of rows shaped like fluvial's, each with Prefect's samples and the same raw
baseline measured alternately in the same process. Prefect modules are imported through
:func:`importlib.import_module` so that type checkers of fluvial never need Prefect.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import itertools
import json
import multiprocessing
import os
import pickle
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

Samples = tuple[list[float], list[float]]
Rows = list[dict[str, Any]]
_inputs = itertools.count(1)
_runs = [0]


def noop(i: int = 0) -> None:
    """Do nothing: the unit of work of a fan-out or a map."""


def step(x: int) -> int:
    """Return ``x + 1``: one link of a chain, or one arm of a diamond."""
    return x + 1


def total(xs: list[int]) -> int:
    """Return the sum of *xs*: the fan-in task of a diamond."""
    return sum(xs)


def echo(x: int) -> int:
    """Return *x*, counting runs: the cached task's body."""
    _runs[0] += 1
    return x


async def anoop() -> None:
    """Do nothing, asynchronously."""


def time_pair(subject: Any, baseline: Any, repeats: int, reset: Any = None) -> Samples:
    """Time *subject* and *baseline* alternately after a warm-up each, as fluvial.bench does."""
    before = reset or (lambda: None)
    for warm_up in (subject, baseline):
        before()
        warm_up()
    ours: list[float] = []
    raw: list[float] = []
    for _ in range(repeats):
        for fn, out in ((subject, ours), (baseline, raw)):
            before()
            gc.collect()
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return ours, raw


def per_task(samples: Samples, n: int, scale: float = 1e6) -> Samples:
    """Turn seconds per *n* tasks into µs per task."""
    return [s * scale / n for s in samples[0]], [b * scale / n for b in samples[1]]


def row(scenario: str, runner: str, n: int, unit: str, samples: Samples, base: str) -> Any:
    """Return one result row."""
    return {
        "scenario": scenario,
        "runner": runner,
        "n": n,
        "unit": unit,
        "samples": samples[0],
        "baseline": samples[1],
        "baseline_name": base,
        "label": "",
        "note": None,
    }


class Prefect:
    """The Prefect names the scenarios use."""

    def __init__(self) -> None:
        prefect = importlib.import_module("prefect")
        self.flow, self.task = prefect.flow, prefect.task
        self.runners = importlib.import_module("prefect.task_runners")
        self.wait = importlib.import_module("prefect.futures").wait
        self.policies = importlib.import_module("prefect.cache_policies")


def _graph_sides(p: Prefect, pool: Executor, scenario: str, n: int) -> tuple[Any, Any]:
    """Return Prefect's side and the raw executor side of one graph scenario."""
    t_noop, t_step, t_total = p.task(noop), p.task(step), p.task(total)
    if scenario in ("fanout", "map"):

        def ours() -> None:
            futures = (
                t_noop.map(range(n)) if scenario == "map" else [t_noop.submit(i) for i in range(n)]
            )
            p.wait(futures)

        def raw() -> None:
            list(pool.map(noop, range(n))) if scenario == "map" else [
                f.result() for f in [pool.submit(noop, i) for i in range(n)]
            ]

        return ours, raw
    if scenario == "chain":

        def ours_chain() -> None:
            future = t_step.submit(0)
            for _ in range(n - 1):
                future = t_step.submit(future)
            assert future.result() == n

        def raw_chain() -> None:
            x = 0
            for _ in range(n):
                x = pool.submit(step, x).result()

        return ours_chain, raw_chain

    def ours_diamond() -> None:
        top = t_step.submit(0)
        assert t_total.submit([t_step.submit(top) for _ in range(n)]).result() == 2 * n

    def raw_diamond() -> None:
        top = pool.submit(step, 0).result()
        pool.submit(
            total, [f.result() for f in [pool.submit(step, top) for _ in range(n)]]
        ).result()

    return ours_diamond, raw_diamond


def graph_rows(p: Prefect, job: dict[str, Any], runner: str) -> Rows:
    """Measure every selected graph scenario on Prefect's thread or process runner."""
    wanted = [s for s in ("fanout", "map", "chain", "diamond") if s in job["scenarios"]]
    if not wanted:
        return []
    if runner == "thread":
        workers = job["thread_workers"]
        pool: Executor = ThreadPoolExecutor(workers)
        prefect_runner = p.runners.ThreadPoolTaskRunner(max_workers=workers)
    else:
        workers = job["cluster_workers"]
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        prefect_runner = p.runners.ProcessPoolTaskRunner(max_workers=workers)
    sizes = {"fanout": job["n"], "map": job["n"], "chain": job["depth"], "diamond": job["width"]}
    raw_name = type(pool).__name__

    def measure() -> Rows:
        # Prefect's process runner pickles the flow with its task context: this closure must
        # not hold the raw pool (its locks cannot be pickled), so it is looked up by name.
        raw_pool: Executor = globals()["_RAW_POOL"]
        p.wait([p.task(noop).submit(i) for i in range(16)])
        out = []
        for scenario in wanted:
            n = sizes[scenario]
            ours, raw = _graph_sides(p, raw_pool, scenario, n)
            samples = per_task(
                time_pair(ours, raw, job["repeats"]), n + 2 * (scenario == "diamond")
            )
            out.append(row(scenario, runner, n, "µs/task", samples, raw_name))
        return out

    with pool:
        globals()["_RAW_POOL"] = pool
        return list(p.flow(name="prefect-bench", task_runner=prefect_runner)(measure)())


def sequential_rows(p: Prefect, job: dict[str, Any]) -> Rows:
    """Measure sync task calls in a flow against plain calls."""
    n, t_noop = job["n"], p.task(noop)

    def calls() -> None:
        for _ in range(n):
            t_noop()

    ours = p.flow(name="prefect-bench-sequential")(calls)

    def raw() -> None:
        for _ in range(n):
            noop()

    return [
        row(
            "sequential",
            "inline",
            n,
            "µs/call",
            per_task(time_pair(ours, raw, job["repeats"]), n),
            "plain call",
        )
    ]


def async_rows(p: Prefect, job: dict[str, Any]) -> Rows:
    """Measure gathered async tasks in an async flow against asyncio.gather."""
    n, t_anoop = job["n"], p.task(anoop)

    async def gathered() -> None:
        await asyncio.gather(*(t_anoop() for _ in range(n)))

    ours = p.flow(name="prefect-bench-async")(gathered)

    async def raw() -> None:
        await asyncio.gather(*(anoop() for _ in range(n)))

    samples = time_pair(lambda: asyncio.run(ours()), lambda: asyncio.run(raw()), job["repeats"])
    return [row("async", "inline", n, "µs/task", per_task(samples, n), "asyncio.gather")]


def cache_rows(p: Prefect, job: dict[str, Any]) -> Rows:
    """Measure cache hits and misses on local disk (PREFECT_LOCAL_STORAGE_PATH)."""
    fs = importlib.import_module("fsspec").filesystem("file")
    raw_dir = os.path.join(job["tmp"], "raw")
    fs.makedirs(raw_dir, exist_ok=True)
    cached = p.task(cache_policy=p.policies.INPUTS, persist_result=True)(echo)
    n, out = job["cache_n"], []
    if "cache-hit" in job["scenarios"]:
        x = next(_inputs)
        hits = time_pair(
            lambda: [cached(x) for _ in range(n)],
            lambda: [echo(x) for _ in range(n)],
            job["repeats"],
        )
        out.append(row("cache-hit", "inline", n, "µs/hit", per_task(hits, n), "plain call"))
    if "cache-miss" in job["scenarios"]:

        def pipes() -> None:
            for _ in range(n):
                x = next(_inputs)
                fs.pipe_file(os.path.join(raw_dir, str(x)), pickle.dumps(x))

        misses = time_pair(lambda: [cached(next(_inputs)) for _ in range(n)], pipes, job["repeats"])
        out.append(row("cache-miss", "inline", n, "µs/call", per_task(misses, n), "fs.pipe_file"))
    for r in out:
        r["label"] = "local disk"
    return out


def persist_rows(p: Prefect, job: dict[str, Any]) -> Rows:
    """Measure MB/s persisting 1 MB results on local disk against fs.pipe_file."""
    fs = importlib.import_module("fsspec").filesystem("file")
    n, payload = job["persist_n"], os.urandom(job["persist_bytes"])
    raw_dir = os.path.join(job["tmp"], "raw-persist")
    fs.makedirs(raw_dir, exist_ok=True)
    produce = p.task(cache_policy=p.policies.NO_CACHE, persist_result=True)(lambda: payload)
    samples = time_pair(
        lambda: [produce() for _ in range(n)],
        lambda: [fs.pipe_file(os.path.join(raw_dir, str(i)), payload) for i in range(n)],
        job["repeats"],
    )
    mb = n * len(payload) / 1e6
    result = row(
        "persist",
        "inline",
        n,
        "MB/s",
        ([mb / s for s in samples[0]], [mb / b for b in samples[1]]),
        "fs.pipe_file",
    )
    result["label"] = "local disk"
    return [result]


def main() -> None:
    """Run the job on argv[1] and print the rows as one JSON line."""
    job = json.loads(sys.argv[1])
    p = Prefect()
    rows: Rows = []
    inline = "inline" in job["runners"]
    wanted = set(job["scenarios"])
    steps = [
        ("sequential", "inline", inline and "sequential" in wanted, sequential_rows),
        ("async", "inline", inline and "async" in wanted, async_rows),
        ("cache", "inline", inline and bool(wanted & {"cache-hit", "cache-miss"}), cache_rows),
        ("persist", "inline", inline and "persist" in wanted, persist_rows),
        ("graphs", "thread", "thread" in job["runners"], lambda p, j: graph_rows(p, j, "thread")),
        (
            "graphs",
            "process",
            "process" in job["runners"],
            lambda p, j: graph_rows(p, j, "process"),
        ),
    ]
    for name, runner, selected, measure in steps:
        if not selected:
            continue
        try:
            rows += measure(p, job)
        except Exception as exc:  # one failing step must not hide the others
            failed = row(name, runner, 0, "", ([], []), "")
            rows.append({**failed, "note": f"{type(exc).__name__}: {exc}", "failed": True})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
