"""Scenarios that need a fresh interpreter: import time, first-flow time and memory per task.

* import: wall time of ``python -c "import fluvial"`` minus ``python -c pass`` (the baseline
  column shows the bare interpreter start);
* first-flow: from just after ``import fluvial`` to the end of the first flow run with one task;
* memory: 100k no-op tasks submitted to the thread runner in batches of 1,000 whose futures are
  dropped, inside one flow run. ``tracemalloc`` counts what is still allocated after the last
  batch and a ``gc.collect()``, per finished task; the baseline does the same with a raw
  ``ThreadPoolExecutor``. The same child processes report their peak RSS (``ru_maxrss``),
  which includes ``tracemalloc``'s own bookkeeping on both sides (``VmHWM`` on
  Linux, since ``ru_maxrss`` there survives ``exec`` and would report the parent's size).
"""

from __future__ import annotations

__all__ = ("plan_first_flow", "plan_import", "plan_memory")

import json
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ._model import Job, Row
from ._timing import run_python

if TYPE_CHECKING:
    from ._model import Config, Samples

FIRST_FLOW_SCRIPT = """\
import logging, time
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

MEMORY_SCRIPT = """\
import gc, json, logging, resource, sys, tracemalloc
from concurrent.futures import ThreadPoolExecutor, wait
n, side, workers = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
BATCH = 1000

def noop(i):
    return None

def measure(batch):
    batch(BATCH)  # warm-up: first-use allocations are not per-task costs
    gc.collect()
    tracemalloc.start()
    for _ in range(max(1, n // BATCH)):
        batch(BATCH)
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return retained

if side == "fluvial":
    import fluvial
    from fluvial.futures import wait as fwait
    from fluvial.runners import ThreadPoolTaskRunner
    logging.getLogger("fluvial").setLevel(logging.WARNING)
    task = fluvial.task(noop)

    def batch(k):
        futures = [task.submit(i) for i in range(k)]
        fwait(futures)
        if not all(f.state.is_completed() for f in futures):
            raise SystemExit("a task run did not complete")

    runner = ThreadPoolTaskRunner(max_workers=workers)
    retained = fluvial.flow(name="fluvial-bench-memory", task_runner=runner)(measure)(batch)
else:
    with ThreadPoolExecutor(workers) as pool:
        retained = measure(lambda k: wait([pool.submit(noop, i) for i in range(k)]))
try:  # Linux keeps ru_maxrss across exec (the parent's size); VmHWM is this process's own
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
except OSError:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
print(json.dumps({"retained": retained, "tasks": max(1, n // BATCH) * BATCH, "peak_rss": peak}))
"""


def _import_ms(repeats: int) -> Samples:
    """Return ms spent in ``import fluvial`` per fresh interpreter, and bare start-up ms."""
    run_python("-c", "import fluvial")  # untimed: writes any missing bytecode caches
    overhead: list[float] = []
    bare: list[float] = []
    for _ in range(repeats):
        empty, _ = run_python("-c", "pass")
        full, _ = run_python("-c", "import fluvial")
        bare.append(empty * 1e3)
        overhead.append((full - empty) * 1e3)
    return overhead, bare


def _first_flow_ms(repeats: int) -> Samples:
    """Return ms from just after ``import fluvial`` to the end of the first flow run."""
    with tempfile.TemporaryDirectory(prefix="fluvial-bench-") as tmp:
        script = Path(tmp, "first_flow.py")
        script.write_text(FIRST_FLOW_SCRIPT, encoding="utf-8")
        run_python(str(script))  # untimed: writes bytecode for lazily imported modules
        samples = [float(run_python(str(script))[1].split()[-1]) * 1e3 for _ in range(repeats)]
    return samples, []


class _MemoryRuns:
    """Run the memory children once and serve both the retained and the peak-RSS row."""

    def __init__(self, n: int, workers: int, repeats: int) -> None:
        self._args = (str(n), str(workers))
        self._repeats = repeats
        self._runs: dict[str, list[dict[str, float]]] | None = None

    def _child(self, side: str) -> dict[str, float]:
        """Run one child interpreter for *side* and return what it printed."""
        n, workers = self._args
        out = run_python("-c", MEMORY_SCRIPT, n, side, workers)[1]
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return result

    def _all(self) -> dict[str, list[dict[str, float]]]:
        """Return every child's report, running fluvial and raw children alternately once."""
        if self._runs is None:
            runs: dict[str, list[dict[str, float]]] = {"fluvial": [], "raw": []}
            for _ in range(self._repeats):
                for side, reports in runs.items():
                    reports.append(self._child(side))
            self._runs = runs
        return self._runs

    def retained(self) -> Samples:
        """Return bytes retained per finished task, fluvial and raw."""
        runs = self._all()
        per = [[r["retained"] / r["tasks"] for r in runs[side]] for side in ("fluvial", "raw")]
        return per[0], per[1]

    def peak_rss(self) -> Samples:
        """Return the children's peak RSS in MB, fluvial and raw."""
        runs = self._all()
        peaks = [[r["peak_rss"] / 1e6 for r in runs[side]] for side in ("fluvial", "raw")]
        return peaks[0], peaks[1]


def plan_import(config: Config) -> list[Job]:
    """Return the import row: ≤ 100 ms."""
    row = Row("import", "inline", 1, "ms", 100.0, "value", baseline_name="python -c pass")
    row.compare = False  # the baseline column shows bare start-up, already subtracted
    return [Job(row, partial(_import_ms, config.subprocess_repeats))]


def plan_first_flow(config: Config) -> list[Job]:
    """Return the first-flow row: ≤ 50 ms after import."""
    row = Row("first-flow", "inline", 1, "ms", 50.0, "value", baseline_name="(absolute budget)")
    return [Job(row, partial(_first_flow_ms, config.subprocess_repeats))]


def plan_memory(config: Config) -> list[Job]:
    """Return the retained-memory row (≤ 1 KB per task) and the peak-RSS row."""
    runs = _MemoryRuns(config.memory_n, config.thread_workers, min(3, config.subprocess_repeats))
    base = "ThreadPoolExecutor"
    retained = Row("memory", "thread", config.memory_n, "B/task", 1024.0, "value", label="retained")
    retained.compare = False  # the raw pool retains ~0 B: a ratio to it means nothing
    retained.baseline_name = base
    peak = Row(
        "memory", "thread", config.memory_n, "MB", None, label="peak RSS", baseline_name=base
    )
    return [Job(retained, runs.retained), Job(peak, runs.peak_rss)]
