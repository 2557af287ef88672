"""Timeouts for sync and async tasks and flows, including code that ignores cancellation.

The bounds asserted here are generous on purpose: they check that a timeout is reported near
its deadline rather than when a blocked function finally returns.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fluvial import flow, task
from fluvial.exceptions import FlowRunTimeoutError, TaskRunTimeoutError
from fluvial.runners import ThreadPoolTaskRunner


def test_sync_task_timeout_gives_timed_out() -> None:
    @task(timeout_seconds=0.2)
    def spins() -> None:
        while True:  # pure Python: the stop request interrupts it
            pass

    state = spins(return_state=True)
    assert state.is_failed()
    assert state.name == "TimedOut"
    assert "timeout of 0.2 second" in (state.message or "")
    with pytest.raises(TaskRunTimeoutError):
        state.result()
    with pytest.raises(TimeoutError):  # a TimeoutError, as users would catch it
        spins()


def test_sync_task_ignoring_cancellation_is_reported_on_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    finished = threading.Event()

    @task(timeout_seconds=0.3)
    def stuck_in_c() -> None:
        release.wait(30)  # blocked in C: cannot see the stop request
        finished.set()

    started = time.monotonic()
    state = stuck_in_c(return_state=True)
    elapsed = time.monotonic() - started
    try:
        assert state.name == "TimedOut"
        assert elapsed < 10, "the timeout waited for the blocked function"
        assert not finished.is_set()
        assert "abandoned" in caplog.text
    finally:
        release.set()


def test_fast_sync_task_with_timeout_returns_normally_and_keeps_context() -> None:
    import fluvial.runtime

    @task(timeout_seconds=5, task_run_name="quick-{x}")
    def quick(x: int) -> str:
        return f"{fluvial.runtime.task_run.name}:{x}"

    assert quick(3) == "quick-3:3"


def test_sync_task_timeout_with_retries() -> None:
    attempts: list[int] = []

    @task(timeout_seconds=0.2, retries=1)
    def slow_then_fast() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            while True:
                pass
        return "ok"

    assert slow_then_fast() == "ok"
    assert len(attempts) == 2


@pytest.mark.anyio
async def test_async_task_timeout() -> None:
    @task(timeout_seconds=0.1)
    async def sleeps() -> None:
        await asyncio.sleep(30)

    started = time.monotonic()
    state = await sleeps(return_state=True)
    assert state.name == "TimedOut"
    assert time.monotonic() - started < 10


@pytest.mark.anyio
async def test_async_task_raising_its_own_timeout_error_is_failed_not_timed_out() -> None:
    @task(timeout_seconds=5)
    async def raises() -> None:
        raise TimeoutError("from the user's code")

    state = await raises(return_state=True)
    assert state.name == "Failed"
    with pytest.raises(TimeoutError, match="user's code"):
        state.result()


def test_submitted_sync_task_timeout_on_a_worker_thread() -> None:
    release = threading.Event()

    @task(timeout_seconds=0.2)
    def blocked() -> None:
        release.wait(30)

    @flow(task_runner=ThreadPoolTaskRunner(2))
    def my_flow() -> str:
        future = blocked.submit()
        future.wait(20)
        return future.state.name

    try:
        assert my_flow() == "TimedOut"
    finally:
        release.set()


def test_sync_flow_timeout() -> None:
    release = threading.Event()

    @flow(timeout_seconds=0.3)
    def slow_flow() -> None:
        release.wait(30)

    try:
        started = time.monotonic()
        state = slow_flow(return_state=True)
        assert state.name == "TimedOut"
        assert time.monotonic() - started < 10
        with pytest.raises(FlowRunTimeoutError):
            state.result()
    finally:
        release.set()


def test_flow_timeout_can_be_retried() -> None:
    attempts: list[int] = []

    @flow(timeout_seconds=0.3, retries=1)
    def once_slow() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            while True:
                pass
        return "second attempt"

    assert once_slow() == "second attempt"


@pytest.mark.anyio
async def test_async_flow_timeout() -> None:
    @flow(timeout_seconds=0.1)
    async def slow_flow() -> None:
        await asyncio.sleep(30)

    state = await slow_flow(return_state=True)
    assert state.name == "TimedOut"
    assert state.is_failed()
