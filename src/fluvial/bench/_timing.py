"""Timing helpers: alternate a subject with its baseline, and run fresh interpreters.

Absolute numbers move with the machine (and with whatever else runs on it), ratios mostly do
not, so a subject and its baseline are timed alternately, after one untimed warm-up each, from
a collected heap each time, with ``time.perf_counter``. Every sample is kept.
"""

from __future__ import annotations

__all__ = ("per_task_us", "python_env", "run_python", "time_pair")

import gc
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._model import Samples

SUBPROCESS_TIMEOUT = 300.0


def _noop() -> None:
    """Do nothing: the default reset between samples."""


def _time_once(fn: Callable[[], object]) -> float:
    """Return the seconds one call of *fn* takes, starting from a collected heap."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_pair(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    repeats: int,
    reset: Callable[[], object] = _noop,
) -> Samples:
    """Time *subject* and *baseline* alternately *repeats* times each, after a warm-up of each.

    *reset* runs untimed before every call (to delete what the previous call wrote, say).
    """
    reset()
    subject()
    reset()
    baseline()
    subject_s: list[float] = []
    baseline_s: list[float] = []
    for _ in range(repeats):
        reset()
        subject_s.append(_time_once(subject))
        reset()
        baseline_s.append(_time_once(baseline))
    return subject_s, baseline_s


def per_task_us(samples: Samples, n: int) -> Samples:
    """Turn seconds per *n* tasks into µs per task, on both sides."""
    subject, baseline = samples
    return [s * 1e6 / n for s in subject], [b * 1e6 / n for b in baseline]


def python_env() -> dict[str, str]:
    """Return this environment for a child interpreter that writes and reads bytecode caches."""
    # Some environments (CI images, this one) set PYTHONDONTWRITEBYTECODE, which would time the
    # compiler instead of the import a user sees.
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_python(
    *args: str,
    python: str = sys.executable,
    timeout: float = SUBPROCESS_TIMEOUT,
    env: dict[str, str] | None = None,
) -> tuple[float, str]:
    """Run a fresh interpreter with *args*; return its wall-clock seconds and its stdout.

    *env* adds to (and overrides) this process's environment.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [python, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**python_env(), **(env or {})},
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RuntimeError(f"{python} exited {proc.returncode}: {tail[0]}")
    return elapsed, proc.stdout
