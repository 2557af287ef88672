"""Futures of submitted task runs, and the helpers that wait on groups of them.

Semantics follow Prefect 3 (reference/prefect-semantics.md §1.4): ``result(timeout)`` raises
``TimeoutError``, ``wait(timeout)`` never raises, ``FutureList.result()`` keeps order and fails
fast, ``wait()`` returns (done, not_done), ``as_completed`` yields finished futures first and
raises ``TimeoutError`` naming the unfinished count, and a flow that returns futures waits for
them and takes its state from them by the aggregation rule.

Slow tasks are held with ``threading.Event`` (with a generous safety timeout so a broken
runtime fails the test instead of hanging it); nothing here measures speed.
"""

from __future__ import annotations

import threading

import pytest

import fluvial
from fluvial import flow, task
from fluvial.futures import (
    Future,
    FutureList,
    PrefectFuture,
    PrefectFutureList,
    as_completed,
    resolve_futures_to_results,
    resolve_futures_to_states,
    wait,
)
from fluvial.states import State, StateType

SAFETY = 30  # seconds: only ever reached when something is broken

pytestmark = pytest.mark.timeout(60)


@task
def inc(x):
    return x + 1


@task
def fail(message="boom"):
    raise ValueError(message)


@task
def held(gate: threading.Event, started: threading.Event | None = None, value=None):
    if started is not None:
        started.set()
    if not gate.wait(SAFETY):
        raise RuntimeError("test gate was never opened")
    return value


# --------------------------------------------------------------------------------------------
# One future
# --------------------------------------------------------------------------------------------


def test_submit_returns_a_future_with_the_result():
    @flow
    def my_flow():
        future = inc.submit(1)
        assert isinstance(future, Future)
        assert PrefectFuture is Future
        return future.result()

    assert my_flow() == 2


def test_future_has_a_task_run_id():
    @flow
    def my_flow():
        a, b = inc.submit(1), inc.submit(2)
        a.wait()
        b.wait()
        return a.task_run_id, b.task_run_id

    first, second = my_flow()
    assert first is not None
    assert first != second


def test_result_raises_the_task_exception():
    @flow
    def my_flow():
        future = fail.submit("bad input")
        with pytest.raises(ValueError, match="bad input"):
            future.result()
        return "checked"

    assert my_flow() == "checked"


def test_result_without_raising_returns_the_exception():
    @flow
    def my_flow():
        return fail.submit("kept").result(raise_on_failure=False)

    exc = my_flow()
    assert isinstance(exc, ValueError)
    assert str(exc) == "kept"


def test_result_timeout_raises_timeout_error_then_succeeds():
    gate = threading.Event()

    @flow
    def my_flow():
        future = held.submit(gate, value="done")
        try:
            with pytest.raises(TimeoutError):
                future.result(timeout=0.1)
            assert not future.done()
        finally:
            gate.set()
        return future.result(timeout=SAFETY)

    assert my_flow() == "done"


def test_wait_with_timeout_never_raises():
    gate = threading.Event()
    failing_gate = threading.Event()

    @task
    def held_then_fail(g):
        g.wait(SAFETY)
        raise ValueError("late failure")

    @flow
    def my_flow():
        slow = held.submit(gate, value=1)
        doomed = held_then_fail.submit(failing_gate)
        try:
            assert slow.wait(0.05) is None
            assert not slow.done()
        finally:
            gate.set()
            failing_gate.set()
        slow.wait()
        doomed.wait()  # a failed run: still no exception from wait()
        assert slow.done()
        assert doomed.done()
        assert doomed.state.is_failed()
        return slow.result()

    assert my_flow() == 1


def test_state_before_and_after_completion():
    gate = threading.Event()
    started = threading.Event()

    @flow
    def my_flow():
        first = held.submit(gate, started, value=1)
        second = inc.submit(first)  # cannot start before `first` finishes
        try:
            assert started.wait(SAFETY)
            assert first.state.type is StateType.RUNNING
            assert not first.state.is_final()
            assert second.state.type is StateType.PENDING
            assert not first.done()
            assert not second.done()
        finally:
            gate.set()
        second.wait()
        assert first.state.is_completed()
        assert second.state.is_completed()
        assert isinstance(second.state, State)
        return second.state.result()

    assert my_flow() == 2


def test_state_is_failed_after_failure():
    @flow
    def my_flow():
        future = fail.submit()
        future.wait()
        states.append(future.state)

    states = []
    my_flow()
    [state] = states
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), ValueError)


def test_done_callback_runs_once_with_the_future():
    gate = threading.Event()
    calls = []
    called = threading.Event()

    def callback(future):
        calls.append(future)
        called.set()

    @flow
    def my_flow():
        future = held.submit(gate, value=3)
        future.add_done_callback(callback)
        assert calls == []
        gate.set()
        assert future.result() == 3
        assert called.wait(SAFETY)
        submitted.append(future)

    submitted = []
    my_flow()
    assert calls == submitted


def test_done_callback_added_after_completion_runs_at_once():
    calls = []

    @flow
    def my_flow():
        future = inc.submit(1)
        future.wait()
        future.add_done_callback(calls.append)
        assert calls == [future]  # ran immediately, in this thread
        submitted.append(future)

    submitted = []
    my_flow()
    assert calls == submitted


def test_done_callback_runs_for_failed_runs():
    called = threading.Event()
    seen = []

    def callback(future):
        seen.append(future.state.type)
        called.set()

    @flow
    def my_flow():
        future = fail.submit()
        future.add_done_callback(callback)
        future.wait()

    my_flow()
    assert called.wait(SAFETY)
    assert seen == [StateType.FAILED]


# --------------------------------------------------------------------------------------------
# FutureList
# --------------------------------------------------------------------------------------------


def test_future_list_result_keeps_order():
    gates = [threading.Event() for _ in range(4)]

    @task
    def item(i, gates):
        # finish in reverse order: item i waits for item i+1 to have finished
        if i + 1 < len(gates):
            assert gates[i + 1].wait(SAFETY)
        gates[i].set()
        return i * 10

    @flow
    def my_flow():
        futures = item.map(range(4), fluvial.unmapped(gates))
        assert isinstance(futures, FutureList)
        assert PrefectFutureList is FutureList
        return futures.result()

    assert my_flow() == [0, 10, 20, 30]


def test_future_list_result_fails_fast():
    gate = threading.Event()

    @task
    def item(kind, gate):
        if kind == "slow":
            gate.wait(SAFETY)
            return "slow"
        raise ValueError("fast failure")

    @flow
    def my_flow():
        futures = item.map(["slow", "fail"], fluvial.unmapped(gate))
        try:
            with pytest.raises(ValueError, match="fast failure"):
                futures.result()
            # it raised while the slow item was still running
            assert not futures[0].done()
        finally:
            gate.set()
        return futures.result(raise_on_failure=False)

    slow, exc = my_flow()
    assert slow == "slow"
    assert isinstance(exc, ValueError)


def test_future_list_result_timeout():
    gate = threading.Event()

    @flow
    def my_flow():
        futures = FutureList([held.submit(gate, value=1), inc.submit(1)])
        try:
            with pytest.raises(TimeoutError):
                futures.result(timeout=0.1)
        finally:
            gate.set()
        return futures.result()

    assert my_flow() == [1, 2]


def test_future_list_wait():
    @flow
    def my_flow():
        futures = inc.map([1, 2, 3])
        futures.wait()
        assert all(f.done() for f in futures)
        return [f.state.result() for f in futures]

    assert my_flow() == [2, 3, 4]


# --------------------------------------------------------------------------------------------
# wait / as_completed
# --------------------------------------------------------------------------------------------


def test_wait_returns_done_and_not_done_without_raising():
    gate = threading.Event()

    @flow
    def my_flow():
        quick = inc.submit(1)
        failed = fail.submit()
        slow = held.submit(gate)
        quick.wait()
        failed.wait()
        try:
            done, not_done = wait([quick, failed, slow], timeout=0.1)
            assert done == {quick, failed}
            assert not_done == {slow}
        finally:
            gate.set()
        result = wait([quick, failed, slow])
        assert result.done == {quick, failed, slow}
        assert result.not_done == set()
        return "checked"

    assert my_flow() == "checked"


def test_as_completed_yields_all_in_completion_order():
    first_gate, second_gate = threading.Event(), threading.Event()

    @flow
    def my_flow():
        a = held.submit(first_gate, value="a")
        b = held.submit(second_gate, value="b")
        seen = []
        second_gate.set()
        for future in as_completed([a, b], timeout=SAFETY):
            seen.append(future.result())
            first_gate.set()
        return seen

    assert my_flow() == ["b", "a"]


def test_as_completed_yields_done_first_then_times_out():
    gate = threading.Event()

    @flow
    def my_flow():
        slow = held.submit(gate)
        quick = inc.submit(1)
        quick.wait()
        yielded = []
        try:
            with pytest.raises(TimeoutError, match=r"1 \(of 2\)"):
                for future in as_completed([slow, quick], timeout=0.1):
                    yielded.append(future)  # noqa: PERF402 - keeps what came before the raise
        finally:
            gate.set()
        assert yielded == [quick]
        return "checked"

    assert my_flow() == "checked"


def test_as_completed_yields_each_future_once():
    @flow
    def my_flow():
        a = inc.submit(1)
        b = inc.submit(2)
        return [f.result() for f in as_completed([a, b, a], timeout=SAFETY)]

    assert sorted(my_flow()) == [2, 3]


# --------------------------------------------------------------------------------------------
# resolve_futures_to_states / resolve_futures_to_results
# --------------------------------------------------------------------------------------------


def test_resolve_futures_to_states_in_nested_collections():
    @flow
    def my_flow():
        a, b, c = inc.submit(1), fail.submit(), inc.submit(10)
        return resolve_futures_to_states({"list": [a, [b]], "tuple": (c, 5), "plain": "x"})

    resolved = my_flow()
    assert set(resolved) == {"list", "tuple", "plain"}
    a_state, [b_state] = resolved["list"]
    c_state, five = resolved["tuple"]
    assert isinstance(resolved["tuple"], tuple)
    assert a_state.is_completed()
    assert a_state.result() == 2
    assert b_state.is_failed()
    assert c_state.is_completed()
    assert c_state.result() == 11
    assert five == 5
    assert resolved["plain"] == "x"


def test_resolve_futures_to_results_in_nested_collections():
    @flow
    def my_flow():
        a, b = inc.submit(1), inc.submit(2)
        return resolve_futures_to_results([{"a": a, "n": [b, 3]}, (a,)])

    assert my_flow() == [{"a": 2, "n": [3, 3]}, (2,)]


def test_resolve_futures_to_results_raises_for_a_failed_future():
    @flow
    def my_flow():
        with pytest.raises(ValueError, match="boom"):
            resolve_futures_to_results({"x": [inc.submit(1), fail.submit()]})
        return "checked"

    assert my_flow() == "checked"


def test_resolve_leaves_expressions_without_futures_alone():
    value = {"a": [1, 2], "b": (3,)}
    assert resolve_futures_to_states(value) == value
    assert resolve_futures_to_results(value) == value


# --------------------------------------------------------------------------------------------
# Async
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_await_future_in_async_flow():
    @task
    async def async_double(x):
        return x * 2

    @flow
    async def my_flow():
        sync_future = inc.submit(1)
        async_future = async_double.submit(4)
        return await sync_future, await async_future

    assert await my_flow() == (2, 8)


@pytest.mark.anyio
async def test_await_failed_future_raises():
    @flow
    async def my_flow():
        with pytest.raises(ValueError, match="awaited"):
            await fail.submit("awaited")
        return "checked"

    assert await my_flow() == "checked"


@pytest.mark.anyio
async def test_await_does_not_block_the_event_loop():
    gate = threading.Event()

    @flow
    async def my_flow():
        import asyncio

        future = held.submit(gate, value="released")

        async def opener():
            await asyncio.sleep(0.05)
            gate.set()

        opening = asyncio.create_task(opener())
        value = await asyncio.wait_for(future, SAFETY)  # the loop must run `opener` meanwhile
        await opening
        return value

    assert await my_flow() == "released"


# --------------------------------------------------------------------------------------------
# Flows and futures
# --------------------------------------------------------------------------------------------


def test_flow_returning_futures_waits_for_them():
    gate = threading.Event()
    finished = []

    @task
    def slow_item(g):
        g.wait(SAFETY)
        finished.append(True)
        return "slow"

    @flow
    def my_flow():
        future = slow_item.submit(gate)
        threading.Timer(0.05, gate.set).start()
        return [future, inc.submit(1)]

    state = my_flow(return_state=True)
    assert finished == [True]
    assert state.is_completed()
    assert state.message == "All states completed."
    states = state.result()
    assert [s.result() for s in states] == ["slow", 2]


def test_flow_returning_a_failed_future_fails():
    @flow
    def my_flow():
        return [inc.submit(1), fail.submit("returned failure")]

    state = my_flow(return_state=True)
    assert state.is_failed()
    assert state.message == "1/2 states failed."
    with pytest.raises(ValueError, match="returned failure"):
        state.result()
    with pytest.raises(ValueError, match="returned failure"):
        my_flow()


def test_flow_returning_a_single_failed_future_fails():
    @flow
    def my_flow():
        return fail.submit("single")

    state = my_flow(return_state=True)
    assert state.is_failed()
    assert state.message == "1/1 states failed."


def test_flow_returning_futures_in_a_dict_waits_for_them():
    @flow
    def my_flow():
        return {"a": inc.submit(1), "b": [inc.submit(2)]}

    state = my_flow(return_state=True)
    assert state.is_completed()
    value = state.result()
    assert value["a"].is_completed()
    assert value["a"].result() == 2
    assert value["b"][0].result() == 3


def test_flow_with_unreturned_failed_task_completes():
    @flow
    def my_flow():
        fail.submit("ignored")
        return 42

    state = my_flow(return_state=True)
    assert state.is_completed()
    assert state.result() == 42


def test_flow_waits_for_unreturned_submitted_tasks():
    gate = threading.Event()
    finished = []

    @task
    def side_effect(g):
        g.wait(SAFETY)
        finished.append("done")

    @flow
    def my_flow():
        side_effect.submit(gate)
        threading.Timer(0.05, gate.set).start()
        return "returned"

    assert my_flow() == "returned"
    assert finished == ["done"]


def test_flow_returning_a_map_aggregates_its_states():
    @flow
    def good():
        return inc.map([1, 2])

    @flow
    def bad():
        return fail.map(["a", "b", "c"])

    state = good(return_state=True)
    assert state.is_completed()
    assert [s.result() for s in state.result()] == [2, 3]
    state = bad(return_state=True)
    assert state.is_failed()
    assert state.message == "3/3 states failed."


def test_resolve_helpers_accept_a_future_list():
    @flow
    def my_flow():
        mapped = inc.map([1, 2, 3])
        states = resolve_futures_to_states(mapped)
        assert [s.type for s in states] == [StateType.COMPLETED] * 3
        return resolve_futures_to_results({"mapped": mapped})

    assert my_flow() == {"mapped": [2, 3, 4]}


def test_future_list_argument_is_resolved_for_direct_and_submitted_calls():
    @task
    def total(values):
        return sum(values)

    @flow
    def my_flow():
        mapped = inc.map([1, 2, 3])
        return total(mapped), total.submit(mapped).result()

    assert my_flow() == (9, 9)
