"""Measure fluvial's overhead against the raw Python it wraps, in one run.

DESIGN.md states its performance budgets as medians measured in the same run as their raw
baseline, because absolute numbers move with the machine while ratios mostly do not. So every
benchmark here times fluvial and its baseline alternately (after one untimed warm-up of each),
runs ``gc.collect()`` before every timed repeat, times with ``time.perf_counter`` and keeps every
sample, so the min–max spread printed next to each median shows how noisy the machine was.

Each side is timed as a whole call (flow call vs. the equivalent plain code, executor lifetime
and ``asyncio.run`` included on both sides), so nothing fluvial does per flow run is hidden.
Start-up costs need a fresh interpreter and are measured in subprocesses. Caching and
result persistence rows live in :mod:`benchmarks.caching` and are run from :func:`run_all`.

fluvial is imported lazily, inside each benchmark, so a broken or half-written package turns a
row into ERROR instead of hiding the whole table.
"""

from __future__ import annotations

__all__ = ("Config", "Result", "Skipped", "format_table", "run_all", "to_json")

import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's own default
SUBPROCESS_TIMEOUT = 120.0

# Runs in a fresh interpreter; prints seconds from just after import to the first flow's end.
_FIRST_FLOW_SCRIPT = """\
import logging
import time

import fluvial

logging.getLogger("fluvial").setLevel(logging.WARNING)
start = time.perf_counter()


@fluvial.task
def noop():
    return None


@fluvial.flow
def first_flow():
    return noop()


first_flow()
print(time.perf_counter() - start)
"""

Samples = tuple[list[float], list[float]]


@dataclass(frozen=True)
class Config:
    """How much work each benchmark does and how many times it is repeated."""

    repeats: int = 7
    subprocess_repeats: int = 7
    sequential_n: int = 20_000
    fanout_n: int = 10_000
    async_n: int = 10_000
    workers: int = DEFAULT_WORKERS
    cache_hit_n: int = 2_000  # memory:// and local disk
    s3_hit_n: int = 200
    cache_miss_n: int = 500
    s3_miss_n: int = 50
    persist_n: int = 20
    persist_bytes: int = 1_000_000
    process_n: int = 1_000
    dask_n: int = 1_000
    ray_n: int = 1_000
    chain_depth: int = 100
    runner_repeats: int = 5  # each sample costs ~1 s on a cluster; the table must stay short
    quick: bool = False

    @classmethod
    def quick_config(cls) -> Config:
        """Return smaller workloads and 3 repeats, for a smoke run."""
        return cls(
            repeats=3,
            subprocess_repeats=3,
            sequential_n=2_000,
            fanout_n=1_000,
            async_n=1_000,
            cache_hit_n=500,
            s3_hit_n=50,
            cache_miss_n=100,
            s3_miss_n=20,
            persist_n=10,
            process_n=200,
            dask_n=200,
            ray_n=200,
            runner_repeats=3,
            quick=True,
        )


class Skipped(Exception):
    """Raised by a benchmark that cannot run here; the message is printed as the row's result."""


@dataclass
class Result:
    """One table row: fluvial's samples, the baseline's samples and the budget they meet."""

    name: str
    unit: str
    budget: float | None  # None: reported, not budgeted
    checks: Literal["value", "ratio"]  # which number the budget applies to, and if a ratio shows
    samples: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None

    @property
    def value(self) -> float | None:
        """Return the median of fluvial's samples."""
        return statistics.median(self.samples) if self.samples else None

    @property
    def baseline_value(self) -> float | None:
        """Return the median of the baseline's samples."""
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        """Return fluvial's median over the baseline's, for rows budgeted as a ratio."""
        if self.checks != "ratio" or self.value is None or not self.baseline_value:
            return None
        return self.value / self.baseline_value

    @property
    def status(self) -> str:
        """Return PASS, OVER, report (no budget), ERROR or why the row was skipped."""
        if self.skipped is not None:
            return self.skipped
        measured = self.ratio if self.checks == "ratio" else self.value
        if self.error is not None or measured is None:
            return "ERROR"
        if self.budget is None:
            return "report"
        return "PASS" if measured <= self.budget else "OVER"


# --- timing helpers ---------------------------------------------------------------------------


def _time_once(fn: Callable[[], object]) -> float:
    """Return the seconds one call of *fn* takes, starting from a collected heap."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _time_pair(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    n: int,
    reset: Callable[[], object] | None = None,
) -> Samples:
    """Time *subject* and *baseline* alternately *n* times each, after one warm-up each.

    *reset*, if given, runs untimed before every call (to delete what the last call wrote).
    """
    before = reset or _noop
    before()
    subject()
    before()
    baseline()
    subject_s: list[float] = []
    baseline_s: list[float] = []
    for _ in range(n):
        before()
        subject_s.append(_time_once(subject))
        before()
        baseline_s.append(_time_once(baseline))
    return subject_s, baseline_s


def _run_python(*args: str) -> tuple[float, str]:
    """Run a fresh interpreter with *args*; return its wall-clock seconds and its stdout."""
    # Bytecode caches must be written and used, as on a user's machine; some environments
    # (CI images among them) set PYTHONDONTWRITEBYTECODE, which would time the compiler instead.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
        env=env,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RuntimeError(f"python {args[-1]!r} exited {proc.returncode}: {tail[0]}")
    return elapsed, proc.stdout


def _noop() -> None:
    """Do nothing: the baseline's unit of work."""


async def _async_noop() -> None:
    """Do nothing, asynchronously: the async baseline's unit of work."""


# --- the benchmarks ---------------------------------------------------------------------------


def bench_import(config: Config) -> Samples:
    """Return ms spent in ``import fluvial`` per fresh interpreter, and bare start-up ms."""
    _run_python("-c", "import fluvial")  # untimed: writes any missing bytecode caches
    overhead: list[float] = []
    bare: list[float] = []
    for _ in range(config.subprocess_repeats):
        empty, _ = _run_python("-c", "pass")
        full, _ = _run_python("-c", "import fluvial")
        bare.append(empty * 1e3)
        overhead.append((full - empty) * 1e3)
    return overhead, bare


def bench_first_flow(config: Config) -> Samples:
    """Return ms from just after ``import fluvial`` to the end of the first flow run."""
    with tempfile.TemporaryDirectory(prefix="fluvial-bench-") as tmp:
        script = Path(tmp, "first_flow.py")
        script.write_text(_FIRST_FLOW_SCRIPT, encoding="utf-8")
        _run_python(str(script))  # untimed: writes bytecode for lazily imported modules
        samples = []
        for _ in range(config.subprocess_repeats):
            _, stdout = _run_python(str(script))
            samples.append(float(stdout.split()[-1]) * 1e3)
    return samples, []


def bench_sequential(config: Config) -> Samples:
    """Return µs of overhead per sync task call in a flow, and µs per plain function call."""
    from fluvial import flow, task

    n = config.sequential_n
    noop_task = task(_noop)

    @flow
    def sequential() -> None:
        for _ in range(n):
            noop_task()

    def plain() -> None:
        for _ in range(n):
            _noop()

    subject, baseline = _time_pair(sequential, plain, config.repeats)
    per_call = 1e6 / n
    overhead = [(s - b) * per_call for s, b in zip(subject, baseline, strict=True)]
    return overhead, [b * per_call for b in baseline]


def bench_thread_fanout(config: Config) -> Samples:
    """Return µs per task for a thread-runner fan-out and for a raw ThreadPoolExecutor."""
    from fluvial import flow, task
    from fluvial.futures import wait
    from fluvial.runners import ThreadPoolTaskRunner

    n, workers = config.fanout_n, config.workers
    noop_task = task(_noop)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def fan_out() -> None:
        wait([noop_task.submit() for _ in range(n)])

    def raw() -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            wait_all([pool.submit(_noop) for _ in range(n)])

    subject, baseline = _time_pair(fan_out, raw, config.repeats)
    return [s * 1e6 / n for s in subject], [b * 1e6 / n for b in baseline]


def bench_async_gather(config: Config) -> Samples:
    """Return µs per task for an async flow gathering tasks and for a raw asyncio.gather."""
    from fluvial import flow, task

    n = config.async_n
    noop_task = task(_async_noop)

    @flow
    async def gathered() -> None:
        await asyncio.gather(*(noop_task() for _ in range(n)))

    async def raw_gather() -> None:
        await asyncio.gather(*(_async_noop() for _ in range(n)))

    def subject() -> None:
        asyncio.run(gathered())

    def baseline() -> None:
        asyncio.run(raw_gather())

    subject_s, baseline_s = _time_pair(subject, baseline, config.repeats)
    return [s * 1e6 / n for s in subject_s], [b * 1e6 / n for b in baseline_s]


# --- running and reporting --------------------------------------------------------------------


def _rows(config: Config) -> list[tuple[Result, Callable[[Config], Samples]]]:
    """Return each row, empty, with the benchmark that fills it."""
    n_seq, n_fan, n_async = config.sequential_n, config.fanout_n, config.async_n
    return [
        (Result("import fluvial, fresh process", "ms", 100, "value"), bench_import),
        (Result("first flow run after import", "ms", 50, "value"), bench_first_flow),
        (
            Result(f"sync task call minus plain call, n={n_seq:,}", "µs/call", 15, "value"),
            bench_sequential,
        ),
        (
            Result(f"thread fan-out, W={config.workers}, n={n_fan:,}", "µs/task", 1.5, "ratio"),
            bench_thread_fanout,
        ),
        (Result(f"async gather, n={n_async:,}", "µs/task", 2.0, "ratio"), bench_async_gather),
    ]


def run_all(config: Config, progress: Callable[[str], object] | None = None) -> list[Result]:
    """Run every benchmark; a benchmark that raises becomes an ERROR row, not a crash."""
    # Both import this module, so they are imported here rather than at the top.
    from .caching import Backends, caching_rows
    from .runners import Clusters, runner_rows

    # The backends (a moto S3 server among them) live until the last caching row is done,
    # and the clusters until the last runner row: one group's servers never share the CPUs.
    with Backends() as backends:
        results = _run_rows([*_rows(config), *caching_rows(config, backends)], config, progress)
    with Clusters() as clusters:
        results += _run_rows(runner_rows(config, clusters), config, progress)
    return results


def _run_rows(
    rows: list[tuple[Result, Callable[[Config], Samples]]],
    config: Config,
    progress: Callable[[str], object] | None,
) -> list[Result]:
    """Fill each row with its benchmark's samples, or with why it was skipped or failed."""
    results = []
    for result, bench in rows:
        if progress is not None:
            progress(result.name)
        # Report a failure and go on: one broken row must not hide the rest of the table.
        try:
            result.samples, result.baseline = bench(config)
        except Skipped as exc:
            result.skipped = str(exc)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        results.append(result)
    return results


def _fmt(value: float | None) -> str:
    """Format a number with about three significant digits."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _fmt_samples(samples: list[float]) -> str:
    """Format a median with its min–max spread."""
    if not samples:
        return "—"
    median = statistics.median(samples)
    return f"{_fmt(median)} [{_fmt(min(samples))}–{_fmt(max(samples))}]"


def _cells(result: Result) -> list[str]:
    """Return the table cells of one row."""
    unit = "×" if result.checks == "ratio" else f" {result.unit.split('/')[0]}"
    ratio = "—" if result.ratio is None else f"{result.ratio:.2f}×"
    budget = "report only" if result.budget is None else f"≤ {result.budget:g}{unit}"
    return [
        result.name,
        result.unit,
        _fmt_samples(result.samples),
        _fmt_samples(result.baseline),
        ratio,
        budget,
        result.status,
    ]


def _fluvial_version() -> str:
    """Return the installed fluvial version, or a note that it is not installed."""
    try:
        return metadata.version("fluvial")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _header(config: Config) -> str:
    """Describe the machine and the run above the table."""
    mode = "quick" if config.quick else "full"
    return (
        f"fluvial {_fluvial_version()} · {platform.python_implementation()} "
        f"{platform.python_version()} · {platform.system()} {platform.machine()} · "
        f"{os.cpu_count()} CPUs · {mode} run, {config.repeats} repeats "
        f"({config.subprocess_repeats} for fresh processes, {config.runner_repeats} for runners) "
        "· median [min–max]"
    )


def format_table(config: Config, results: list[Result]) -> str:
    """Render the results as one plain-text table, with error details below it."""
    heads = ["benchmark", "unit", "fluvial", "baseline", "ratio", "budget", "result"]
    rows = [heads, *(_cells(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    lines = [_header(config), ""]
    lines.extend(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
    lines[3:3] = ["  ".join("-" * w for w in widths)]
    lines += [f"ERROR in {r.name}: {r.error}" for r in results if r.error is not None]
    return "\n".join(line.rstrip() for line in lines)


def to_json(config: Config, results: list[Result]) -> str:
    """Serialise the configuration, the machine and every sample as JSON."""
    rows: list[dict[str, Any]] = [
        {
            **asdict(r),
            "value": r.value,
            "baseline_value": r.baseline_value,
            "ratio": r.ratio,
            "status": r.status,
        }
        for r in results
    ]
    meta = {
        "fluvial": _fluvial_version(),
        "python": sys.version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return json.dumps({"meta": meta, "config": asdict(config), "results": rows}, indent=2)
