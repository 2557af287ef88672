"""Scenarios that run in the flow's own thread: sequential task calls and gathered async tasks.

* sequential: N sync no-op task calls in a flow against N plain calls of the same function,
  both timed whole (flow call included); the budget applies to the difference per call;
* async: an async flow gathering N async no-op tasks against ``asyncio.gather`` of N plain
  coroutines, both under their own ``asyncio.run``; the budget applies to the ratio.
"""

from __future__ import annotations

__all__ = ("plan_async", "plan_sequential")

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from ._model import Job, Row
from ._timing import per_task_us, time_pair
from ._work import noop

if TYPE_CHECKING:
    from ._model import Config, Samples


async def _async_noop() -> None:
    """Do nothing, asynchronously: the unit of work of the async scenario."""


def _sequential(n: int, repeats: int) -> Samples:
    """Return µs per sync task call in a flow, and µs per plain call."""
    from fluvial import flow, task

    noop_task = task(noop)

    @flow(name="fluvial-bench-sequential")
    def sequential() -> None:
        for _ in range(n):
            noop_task()

    def plain() -> None:
        for _ in range(n):
            noop()

    return per_task_us(time_pair(sequential, plain, repeats), n)


def _gathered(n: int, repeats: int) -> Samples:
    """Return µs per task for an async flow gathering tasks, and for a raw asyncio.gather."""
    from fluvial import flow, task

    noop_task = task(_async_noop)

    @flow(name="fluvial-bench-async")
    async def gathered() -> None:
        await asyncio.gather(*(noop_task() for _ in range(n)))

    async def raw() -> None:
        await asyncio.gather(*(_async_noop() for _ in range(n)))

    def subject() -> None:
        run: Any = gathered()  # a coroutine; Flow's call type does not say so for async flows
        asyncio.run(run)

    def baseline() -> None:
        asyncio.run(raw())

    return per_task_us(time_pair(subject, baseline, repeats), n)


def plan_sequential(config: Config) -> list[Job]:
    """Return the sequential-calls row: overhead per call budgeted at 15 µs."""
    n = config.sequential_n
    row = Row("sequential", "inline", n, "µs/call", 15.0, "overhead", baseline_name="plain call")
    row.compare = False  # the budget is on the difference; a ratio to a bare call means little
    return [Job(row, partial(_sequential, n, config.repeats))]


def plan_async(config: Config) -> list[Job]:
    """Return the async row: ≤ 2× ``asyncio.gather`` per task."""
    n = config.async_n
    row = Row("async", "inline", n, "µs/task", 2.0, baseline_name="asyncio.gather")
    return [Job(row, partial(_gathered, n, config.repeats))]
