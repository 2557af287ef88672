"""Retries: counts, delays (number, list, exponential backoff), jitter and retry conditions."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluvial.runtime
from fluvial import flow, task
from fluvial.engine import effects
from fluvial.engine.retries import jittered, normalize_retry_delays, retry_delay
from fluvial.states import State


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record retry sleeps instead of waiting (the engine sleeps only through its Sleep effect)."""
    recorded: list[float] = []

    def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(effects.time, "sleep", fake_sleep)
    return recorded


def failing_until(successful_attempt: int) -> Any:
    @task(retries=5)
    def sometimes() -> int:
        attempt = fluvial.runtime.task_run.run_count
        if attempt < successful_attempt:
            raise ConnectionError(f"attempt {attempt}")
        return attempt

    return sometimes


def test_retries_until_success() -> None:
    assert failing_until(3)() == 3


def test_retries_exhausted_raise_the_last_exception() -> None:
    attempts: list[int] = []

    @task(retries=2)
    def always() -> None:
        attempts.append(fluvial.runtime.task_run.run_count)
        raise ValueError(f"attempt {len(attempts)}")

    with pytest.raises(ValueError, match="attempt 3") as info:
        always()
    assert attempts == [1, 2, 3]
    assert any("attempt 3 of 3" in note for note in info.value.__notes__)


def test_states_during_retries(sleeps: list[float]) -> None:
    @task(retries=2, retry_delay_seconds=5)
    def twice_broken(box: list[int]) -> int:
        box.append(1)
        if len(box) < 3:
            raise RuntimeError("not yet")
        return len(box)

    @flow
    def my_flow() -> list[str]:
        future = twice_broken.submit([])
        future.wait()
        return [state.name for state in future.task_run.state_history]

    assert my_flow() == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    assert sleeps == [5, 5]


def test_delay_list_uses_the_last_entry_when_exhausted(sleeps: list[float]) -> None:
    @task(retries=4, retry_delay_seconds=[1, 2])
    def broken() -> None:
        raise RuntimeError("always")

    broken(return_state=True)
    assert sleeps == [1, 2, 2, 2]


def test_exponential_backoff_sleeps(sleeps: list[float]) -> None:
    from fluvial.tasks import exponential_backoff

    @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=0.5))
    def broken() -> None:
        raise RuntimeError("always")

    broken(return_state=True)
    assert sleeps == [0.5, 1.0, 2.0]


def test_jitter_is_applied_to_task_retries(sleeps: list[float]) -> None:
    @task(retries=20, retry_delay_seconds=10, retry_jitter_factor=0.5)
    def broken() -> None:
        raise RuntimeError("always")

    broken(return_state=True)
    assert len(sleeps) == 20
    assert all(5 <= delay <= 15 for delay in sleeps)
    assert len(set(sleeps)) > 1  # spread, not the bare delay every time


@given(
    delay=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    factor=st.floats(min_value=0, max_value=10, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jitter_bounds(delay: float, factor: float, seed: int) -> None:
    value = jittered(delay, factor, random.Random(seed))
    assert 0 <= value <= delay * (1 + factor) + 1e-9
    if factor <= 1:
        assert value >= delay * (1 - factor) - 1e-9


def test_delay_normalisation() -> None:
    assert normalize_retry_delays(None, 3) == 0.0
    assert normalize_retry_delays(2, 3) == 2.0
    assert normalize_retry_delays([1, 2], 3) == (1.0, 2.0)
    assert normalize_retry_delays(lambda n: [7] * n, 2) == (7.0, 7.0)
    assert retry_delay((1.0, 2.0), 1) == 1.0
    assert retry_delay((1.0, 2.0), 5) == 2.0
    assert retry_delay(3.0, 9) == 3.0


def test_retry_condition_fn_can_stop_retries() -> None:
    attempts: list[int] = []

    def only_connection_errors(task: Any, task_run: Any, state: State[Any]) -> bool:
        return isinstance(state.result(raise_on_failure=False), ConnectionError)

    @task(retries=5, retry_condition_fn=only_connection_errors)
    def picky(errors: list[type[Exception]]) -> None:
        attempts.append(1)
        raise errors[len(attempts) - 1]("boom")

    with pytest.raises(ValueError, match="boom"):
        picky([ConnectionError, ConnectionError, ValueError, ConnectionError])
    assert len(attempts) == 3


def test_retry_condition_may_be_any_callable_or_async() -> None:
    class Policy:
        def __init__(self) -> None:
            self.asked = 0

        def __call__(self, task: Any, task_run: Any, state: State[Any]) -> bool:
            self.asked += 1
            return True

    policy = Policy()

    async def async_no(task: Any, task_run: Any, state: State[Any]) -> bool:
        return False

    assert task(retries=2, retry_condition_fn=policy)(failing_until(2).fn)() == 2
    assert policy.asked == 1
    state = task(retries=2, retry_condition_fn=async_no)(failing_until(2).fn)(return_state=True)
    assert state.is_failed()


def test_retry_condition_that_raises_means_no_retry(caplog: pytest.LogCaptureFixture) -> None:
    def broken_condition(*_: Any) -> bool:
        raise RuntimeError("condition bug")

    state = task(retries=3, retry_condition_fn=broken_condition)(failing_until(2).fn)(
        return_state=True
    )
    assert state.is_failed()
    assert "retry_condition_fn" in caplog.text


def test_returning_a_failed_state_is_retried() -> None:
    from fluvial.states import Completed, Failed

    @task(retries=1)
    def by_state() -> State[Any]:
        if fluvial.runtime.task_run.run_count == 1:
            return Failed(message="first")
        return Completed(data="second")

    assert by_state() == "second"


@pytest.mark.anyio
async def test_async_task_retries(sleeps: list[float]) -> None:
    attempts: list[int] = []

    @task(retries=2, retry_delay_seconds=0.01)
    async def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("again")
        return len(attempts)

    assert await flaky() == 3
    assert sleeps == []  # async retries sleep on the event loop, not time.sleep


def test_retry_sleep_does_not_hold_a_worker_slot() -> None:
    import threading

    from fluvial.runners import ThreadPoolTaskRunner

    released = threading.Event()

    @task(retries=1, retry_delay_seconds=0.5)
    def waits_for_release() -> str:
        if fluvial.runtime.task_run.run_count == 1:
            raise ConnectionError("retry me")
        return "retried"

    @task
    def releaser() -> str:
        released.set()
        return "released"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def my_flow() -> list[str]:
        first = waits_for_release.submit()
        second = releaser.submit()
        # The one worker is sleeping before the retry; the releaser still gets a thread.
        assert released.wait(10), "the retry sleep held the only worker"
        return [first.result(), second.result()]

    assert my_flow() == ["retried", "released"]
