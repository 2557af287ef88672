"""The data a benchmark run produces: its configuration, its rows and their statistics.

A row pairs fluvial's samples with its raw baseline's samples, measured alternately in the same
run, and says which number its budget from DESIGN.md applies to: the median itself
(``value``), fluvial over the baseline (``ratio``), or fluvial minus the baseline
(``overhead``). Everything here is plain data so that the JSON, the table and the plot read the
same numbers.
"""

from __future__ import annotations

__all__ = ("Config", "Job", "Row", "Skipped", "Spread", "spread")

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

BudgetOn = Literal["value", "ratio", "overhead"]
Samples = tuple[list[float], list[float]]

# The runners a scenario can run on; "inline" means in the flow's own thread, no task runner.
RUNNERS = ("inline", "thread", "process", "dask", "ray")


class Skipped(Exception):
    """Raised by a scenario that cannot run here; the message says what to install or do."""


@dataclass(frozen=True)
class Config:
    """How much work each scenario does and how many samples each side takes."""

    quick: bool = False
    repeats: int = 5
    subprocess_repeats: int = 5
    thread_workers: int = 6  # ThreadPoolExecutor's default on a 2-core machine
    cluster_workers: int = 2
    sequential_n: int = 20_000
    thread_ns: tuple[int, ...] = (1_000, 10_000, 100_000)
    cluster_ns: tuple[int, ...] = (1_000, 10_000)
    dask_ns: tuple[int, ...] = (1_000, 5_000)
    chain_depth: int = 1_000
    diamond_width: int = 1_000
    async_n: int = 10_000
    cache_hit_n: int = 2_000
    cache_miss_n: int = 300
    s3_n: int = 50
    persist_n: int = 20
    persist_bytes: int = 1_000_000
    memory_n: int = 100_000
    tag_limit_n: int = 10_000
    prefect_n: int = 200

    @classmethod
    def quick_config(cls) -> Config:
        """Return small workloads and 3 samples per side: about a minute, clusters included."""
        return cls(
            quick=True,
            repeats=3,
            subprocess_repeats=3,
            sequential_n=2_000,
            thread_ns=(1_000, 5_000),
            cluster_ns=(200,),
            dask_ns=(200,),
            chain_depth=100,
            diamond_width=100,
            async_n=2_000,
            cache_hit_n=300,
            cache_miss_n=50,
            s3_n=10,
            persist_n=5,
            memory_n=10_000,
            tag_limit_n=1_000,
            prefect_n=50,
        )

    def ns_for(self, runner: str) -> tuple[int, ...]:
        """Return the fan-out and map sizes for *runner*."""
        if runner in ("inline", "thread"):
            return self.thread_ns
        return self.dask_ns if runner == "dask" else self.cluster_ns


@dataclass(frozen=True)
class Spread:
    """The median of some samples with their extremes and quartiles."""

    median: float
    min: float
    max: float
    q1: float
    q3: float


def spread(samples: list[float]) -> Spread | None:
    """Return the median, min, max and quartiles of *samples*, or None if there are none."""
    if not samples:
        return None
    if len(samples) == 1:
        q1 = q3 = samples[0]
    else:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Spread(statistics.median(samples), min(samples), max(samples), q1, q3)


@dataclass
class Row:
    """One line of the table: a scenario on one runner at one size, from one implementation."""

    scenario: str
    runner: str
    n: int
    unit: str
    budget: float | None = None
    budget_on: BudgetOn = "ratio"
    higher_is_better: bool = False  # throughput rows (MB/s)
    source: str = "fluvial"  # or "prefect" for --compare-prefect rows
    label: str = ""  # what the row measures beyond scenario and runner (a storage, ...)
    samples: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = ""
    note: str | None = None  # why the row was skipped, or the error it raised
    failed: bool = False
    compare: bool = True  # False where the baseline is a floor, not an equivalent (plain call)

    @property
    def value(self) -> float | None:
        """Return the median of the measured samples."""
        return statistics.median(self.samples) if self.samples else None

    @property
    def baseline_value(self) -> float | None:
        """Return the median of the baseline's samples."""
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        """Return the measured median over the baseline's (higher means slower for times)."""
        value, base = self.value, self.baseline_value
        if not self.compare or value is None or not base:
            return None
        return base / value if self.higher_is_better else value / base

    @property
    def verdict(self) -> str:
        """Return PASS, OVER, report (no budget), skipped or ERROR."""
        if self.failed:
            return "ERROR"
        if self.note is not None or self.value is None:
            return "skipped"
        if self.budget is None:
            return "report"
        measured = self._budgeted()
        if measured is None:
            return "ERROR"
        return "PASS" if measured <= self.budget else "OVER"

    def _budgeted(self) -> float | None:
        """Return the number the budget applies to."""
        if self.budget_on == "ratio":
            return self.ratio
        if self.budget_on == "overhead":
            base = self.baseline_value
            return None if self.value is None or base is None else self.value - base
        return self.value

    def to_dict(self) -> dict[str, Any]:
        """Return every field, sample and statistic, ready for JSON."""
        stats, base_stats = spread(self.samples), spread(self.baseline)
        return {
            "scenario": self.scenario,
            "runner": self.runner,
            "n": self.n,
            "label": self.label,
            "source": self.source,
            "unit": self.unit,
            "samples": self.samples,
            "baseline_name": self.baseline_name,
            "baseline_samples": self.baseline,
            "stats": None if stats is None else vars(stats),
            "baseline_stats": None if base_stats is None else vars(base_stats),
            "ratio": self.ratio,
            "budget": self.budget,
            "budget_on": self.budget_on,
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass
class Job:
    """A row still to fill, and the measurement that fills it with (fluvial, baseline) samples."""

    row: Row
    measure: Callable[[], Samples]
