"""The thread runner's max_workers bound and stepping aside, for sync and async tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from fluvial import flow, task
from fluvial.runners import ThreadPoolTaskRunner


class Gauge:
    """Counts how many callers are inside at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


@pytest.mark.timeout(60)
def test_leaf_work_stays_within_max_workers_while_parents_wait() -> None:
    gauge = Gauge()

    @task
    def work(i: int) -> int:
        with gauge:
            time.sleep(0.02)
        return i

    @task
    def fan_out(n: int) -> int:
        return sum(work.map(range(n)).result())

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def nested() -> int:
        return sum(f.result() for f in [fan_out.submit(5) for _ in range(4)])

    assert nested() == 4 * sum(range(5))
    assert gauge.peak <= 2


@pytest.mark.timeout(60)
def test_tasks_with_timeouts_stay_within_max_workers() -> None:
    gauge = Gauge()

    @task(timeout_seconds=30)
    def guarded() -> None:
        with gauge:
            time.sleep(0.05)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def many() -> None:
        for future in [guarded.submit() for _ in range(8)]:
            future.result()

    many()
    assert gauge.peak <= 2


@pytest.mark.timeout(60)
def test_async_task_awaiting_its_own_submissions_does_not_deadlock_one_worker() -> None:
    @task
    def child(i: int) -> int:
        return i * 2

    @task
    async def parent() -> list[int]:
        futures = [child.submit(i) for i in range(3)]
        return [await future for future in futures]

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def my_flow() -> list[int]:
        return parent.submit().result(timeout=30)

    assert my_flow() == [0, 2, 4]


@pytest.mark.timeout(60)
def test_async_retry_sleep_frees_the_worker() -> None:
    released = threading.Event()

    @task(retries=1, retry_delay_seconds=1)
    async def flaky(attempts: list[int]) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("again")
        return "ok"

    @task
    def releaser() -> None:
        released.set()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def my_flow() -> tuple[str, bool]:
        first = flaky.submit([])
        releaser.submit()
        freed = released.wait(20)
        return first.result(), freed

    assert my_flow() == ("ok", True)


@pytest.mark.anyio
async def test_awaiting_futures_in_the_flow_loop_works_without_a_pool() -> None:
    @task
    def slow(x: int) -> int:
        time.sleep(0.01)
        return x

    @flow
    async def my_flow() -> list[Any]:
        futures = [slow.submit(i) for i in range(4)]
        return list(await asyncio.gather(*futures))  # type: ignore[arg-type]

    assert await my_flow() == [0, 1, 2, 3]
