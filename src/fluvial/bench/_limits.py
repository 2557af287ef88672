"""Tasks with a tag under a concurrency limit, against a raw pool that takes a semaphore.

fluvial side: N no-op tasks tagged ``fluvial-bench`` submitted to the thread runner while the
tag limit ``tag:fluvial-bench`` allows 2 at once (fewer than the runner's threads, so the limit
binds); each attempt takes and releases a slot. Raw side: the same N calls on a
``ThreadPoolExecutor`` of the same width, each inside a ``threading.Semaphore(2)``. Both sides
record how many calls ran at once, and the row fails if fluvial ever ran more than the limit.
"""

from __future__ import annotations

__all__ = ("plan_tag_limit",)

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from ._model import Job, Row
from ._timing import per_task_us, time_pair

if TYPE_CHECKING:
    from fluvial.futures import Future

    from ._model import Config, Samples

TAG = "fluvial-bench"
LIMIT = 2


class _Gauge:
    """Count the calls running at once and remember the most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0

    def call(self, i: int = 0) -> None:
        """Do nothing, counted: the unit of work on both sides."""
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        with self._lock:
            self.running -= 1


def _measure(n: int, workers: int, repeats: int) -> Samples:
    """Time tagged tasks under the limit against semaphore-guarded raw calls, in one flow."""
    from fluvial import flow, task
    from fluvial.concurrency import create_tag_limit, delete_tag_limit
    from fluvial.futures import wait
    from fluvial.runners import ThreadPoolTaskRunner

    ours, theirs = _Gauge(), _Gauge()
    tagged = task(tags=[TAG])(ours.call)
    slots = threading.Semaphore(LIMIT)

    def fluvial_side() -> None:
        futures = [cast("Future[None]", tagged.submit(i)) for i in range(n)]
        wait(futures)
        if not all(f.state.is_completed() for f in futures):
            raise RuntimeError("a tagged task run did not complete")

    def raw_side(pool: ThreadPoolExecutor) -> None:
        def limited(i: int) -> None:
            with slots:
                theirs.call(i)

        wait_all([pool.submit(limited, i) for i in range(n)])

    @flow(name="fluvial-bench-tag-limit", task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def measure(pool: Any) -> Samples:
        return time_pair(fluvial_side, partial(raw_side, pool), repeats)

    create_tag_limit(TAG, LIMIT)
    try:
        with ThreadPoolExecutor(workers) as pool:
            samples = measure(pool)
    finally:
        delete_tag_limit(TAG)
    if ours.most > LIMIT:
        raise RuntimeError(f"{ours.most} tagged runs ran at once under a limit of {LIMIT}")
    return per_task_us(samples, n)


def plan_tag_limit(config: Config) -> list[Job]:
    """Return the tag-limit row on the thread runner."""
    n = config.tag_limit_n
    row = Row("tag-limit", "thread", n, "µs/task", label=f"limit {LIMIT}")
    row.baseline_name = f"Semaphore({LIMIT}) + ThreadPoolExecutor"
    return [Job(row, partial(_measure, n, config.thread_workers, config.repeats))]
