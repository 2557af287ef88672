"""Tag limits in the task engine: per attempt, never while waiting, and failing on a zero limit."""

from __future__ import annotations

import asyncio
import time

import pytest

from fluvial import flow, tags, task
from fluvial.concurrency import create_tag_limit, read_tag_limit
from fluvial.exceptions import ConcurrencySlotAcquisitionError
from fluvial.runners import ThreadPoolTaskRunner
from fluvial.states import StateType

from .conftest import max_overlap


def test_a_retry_delay_holds_no_slot() -> None:
    create_tag_limit("api", 1)
    attempts: list[float] = []
    other: list[float] = []

    @task(tags=["api"], retries=1, retry_delay_seconds=0.5)
    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        return "ok"

    @task(tags=["api"])
    def quick() -> None:
        other.append(time.monotonic())

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def pipeline() -> str:
        first = flaky.submit()
        time.sleep(0.1)  # flaky is in its retry delay now
        quick.submit().wait()
        return first.result()

    assert pipeline() == "ok"
    assert attempts[0] < other[0] < attempts[1]


def test_waiting_on_upstream_holds_no_slot() -> None:
    create_tag_limit("db", 1)
    order: list[str] = []

    @task
    def slow_upstream() -> int:
        time.sleep(0.4)
        return 1

    @task(tags=["db"])
    def downstream(x: int) -> int:
        order.append("downstream")
        return x

    @task(tags=["db"])
    def independent() -> None:
        order.append("independent")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def pipeline() -> None:
        later = downstream.submit(slow_upstream.submit())
        independent.submit().wait()
        later.wait()

    pipeline()
    assert order == ["independent", "downstream"]


def test_tags_from_the_context_count() -> None:
    create_tag_limit("ctx", 1)
    spans: list[tuple[float, float]] = []

    @task
    def work() -> None:
        start = time.monotonic()
        time.sleep(0.05)
        spans.append((start, time.monotonic()))

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def pipeline() -> None:
        with tags("ctx"):
            futures = [work.submit() for _ in range(4)]
        for future in futures:
            future.wait()

    pipeline()
    assert len(spans) == 4
    assert max_overlap(spans) == 1


def test_async_tasks_share_the_limit() -> None:
    create_tag_limit("io", 2)
    spans: list[tuple[float, float]] = []

    @task(tags=["io"])
    async def fetch() -> None:
        start = time.monotonic()
        await asyncio.sleep(0.05)
        spans.append((start, time.monotonic()))

    @flow
    async def pipeline() -> None:
        await asyncio.gather(*(fetch() for _ in range(8)))

    asyncio.run(pipeline())
    assert len(spans) == 8
    assert max_overlap(spans) == 2


def test_a_zero_limit_fails_the_run_at_once() -> None:
    create_tag_limit("off", 0)

    @task(tags=["off"], retries=3, retry_delay_seconds=10)
    def never() -> None:
        raise AssertionError("must not run")

    state = never(return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ConcurrencySlotAcquisitionError, match="tag:off"):
        state.result()


def test_slots_are_given_back_after_failure_and_success() -> None:
    create_tag_limit("db", 1)

    @task(tags=["db"])
    def boom() -> None:
        raise KeyError("boom")

    @task(tags=["db", "unlimited"])
    def fine() -> int:
        return 1

    assert boom(return_state=True).type is StateType.FAILED
    assert fine() == 1
    assert read_tag_limit("db").active_slots == 0
