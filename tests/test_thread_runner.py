"""The thread runner: bounded pools that cannot deadlock, mapping, dependencies and context.

DESIGN.md (principle 4, Runners) promises that a bounded ``ThreadPoolTaskRunner`` is safe for
dependency chains, tasks that submit and wait on tasks, and map-then-reduce, because runs are
dispatched only once their upstream futures are done and a worker that must wait steps aside.
Prefect deadlocks in these cases with a bounded pool (reference §5.2, issue #17060). Mapping
and upstream-failure semantics follow reference §1.3, §4.2 and §5.1.

Every test has a generous timeout as a safety net; nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import fluvial
import fluvial.runtime
from fluvial import allow_failure, flow, quote, task, unmapped
from fluvial.exceptions import (
    CrashedRun,
    MappingLengthMismatch,
    MappingMissingIterable,
    MissingContextError,
)
from fluvial.futures import Future, FutureList
from fluvial.runners import ThreadPoolTaskRunner
from fluvial.states import StateType

SAFETY = 30  # seconds: only ever reached when something is broken

pytestmark = pytest.mark.timeout(60)


@task
def inc(x):
    return x + 1


@task
def add(x, y):
    return x + y


@task
def fail(message="boom"):
    raise ValueError(message)


def two_workers():
    return ThreadPoolTaskRunner(max_workers=2)


# --------------------------------------------------------------------------------------------
# Deadlock cases with a bounded pool
# --------------------------------------------------------------------------------------------


def test_long_chain_of_dependent_submits():
    @flow(task_runner=two_workers())
    def chain():
        x = inc.submit(0)
        for _ in range(199):
            x = inc.submit(x)
        return x.result()

    assert chain() == 200


@task
def fan_out(level: int) -> int:
    if level == 0:
        return 1
    children = [fan_out.submit(level - 1) for _ in range(4)]
    return sum(child.result() for child in children)


def test_tasks_that_submit_and_wait_for_tasks():
    @flow(task_runner=two_workers())
    def nested():
        return fan_out.submit(3).result()

    assert nested() == 4**3


def test_tasks_that_submit_and_wait_inside_a_map():
    @flow(task_runner=two_workers())
    def nested():
        return fan_out.map([2, 2, 2, 2]).result()

    assert nested() == [16, 16, 16, 16]


def test_wide_map_feeding_a_reduce():
    @task
    def total(values):
        assert all(isinstance(v, int) for v in values)
        return sum(values)

    @flow(task_runner=two_workers())
    def map_reduce():
        mapped = inc.map(range(500))
        return total.submit(mapped).result()

    assert map_reduce() == sum(range(1, 501))


def test_retry_delay_does_not_hold_the_pool():
    first_attempt = threading.Event()
    order = []
    lock = threading.Lock()

    @task(retries=1, retry_delay_seconds=2)
    def flaky():
        run_count = fluvial.runtime.task_run.run_count
        with lock:
            order.append(f"flaky-{run_count}")
        if run_count == 1:
            first_attempt.set()
            raise RuntimeError("first attempt fails")
        return "recovered"

    @task
    def quick(i):
        with lock:
            order.append(f"quick-{i}")
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def my_flow():
        retried = flaky.submit()
        assert first_attempt.wait(SAFETY)
        quick_results = quick.map(range(5)).result()
        return retried.result(), quick_results

    assert my_flow() == ("recovered", [0, 1, 2, 3, 4])
    # While flaky slept before its retry, the single worker ran the quick tasks.
    assert order[0] == "flaky-1"
    assert order.index("flaky-2") > max(order.index(f"quick-{i}") for i in range(5))


def test_concurrency_is_bounded_by_max_workers():
    lock = threading.Lock()
    running = [0]
    peak = [0]

    @task
    def busy(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            threading.Event().wait(0.05)
        finally:
            with lock:
                running[0] -= 1
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def my_flow():
        return busy.map(range(12)).result()

    assert my_flow() == list(range(12))
    assert 1 <= peak[0] <= 3


def test_tasks_run_in_parallel():
    barrier = threading.Barrier(3, timeout=SAFETY)

    @task
    def rendezvous(i):
        barrier.wait()  # breaks (and raises) unless three tasks are running at once
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def my_flow():
        return rendezvous.map(range(12)).result()

    assert my_flow() == list(range(12))


# --------------------------------------------------------------------------------------------
# map
# --------------------------------------------------------------------------------------------


def test_map_returns_future_list_in_order():
    @flow(task_runner=two_workers())
    def my_flow():
        futures = add.map([1, 2, 3], [10, 20, 30])
        assert isinstance(futures, FutureList)
        assert all(isinstance(f, Future) for f in futures)
        return futures.result()

    assert my_flow() == [11, 22, 33]


def test_map_with_unmapped():
    @task
    def pair(x, items):
        return (x, items)

    @flow(task_runner=two_workers())
    def my_flow():
        return (
            add.map([1, 2, 3], unmapped(10)).result(),
            pair.map([1, 2], unmapped([7, 8, 9])).result(),
        )

    added, paired = my_flow()
    assert added == [11, 12, 13]
    assert paired == [(1, [7, 8, 9]), (2, [7, 8, 9])]


def test_map_with_unmapped_future_passes_its_result_whole():
    @task
    def make_list():
        return [1, 2, 3]

    @task
    def count(x, items):
        return x + len(items)

    @flow(task_runner=two_workers())
    def my_flow():
        return count.map([10, 20], unmapped(make_list.submit())).result()

    assert my_flow() == [13, 23]


def test_map_with_allow_failure_future():
    @task
    def describe(x, upstream):
        return (x, type(upstream).__name__, str(upstream))

    @flow(task_runner=two_workers())
    def my_flow():
        failed = fail.submit("upstream broke")
        return describe.map([1, 2], allow_failure(failed)).result()

    assert my_flow() == [
        (1, "ValueError", "upstream broke"),
        (2, "ValueError", "upstream broke"),
    ]


def test_map_with_allow_failure_on_a_not_ready_future():
    # reference §4.2: allow_failure on an upstream that is Pending("NotReady") passes its data
    @task
    def describe(x, upstream):
        return (x, upstream)

    @flow(task_runner=two_workers())
    def my_flow():
        not_ready = inc.submit(fail.submit())
        single = describe.submit(0, allow_failure(not_ready)).result()
        mapped = describe.map([1, 2], allow_failure(not_ready)).result()
        return single, mapped

    single, mapped = my_flow()
    assert single == (0, None)
    assert mapped == [(1, None), (2, None)]


def test_map_with_quote_passes_items_unresolved():
    @task
    def kind(item):
        return isinstance(item, Future)

    @flow(task_runner=two_workers())
    def my_flow():
        upstream = [inc.submit(1), inc.submit(2)]
        return kind.map(quote(upstream)).result()

    assert my_flow() == [True, True]


def test_map_over_a_future_whose_result_is_a_list():
    @task
    def make_list(n):
        return list(range(n))

    @flow(task_runner=two_workers())
    def my_flow():
        return inc.map(make_list.submit(4)).result()

    assert my_flow() == [1, 2, 3, 4]


def test_map_over_futures_chains_without_waiting():
    @flow(task_runner=two_workers())
    def my_flow():
        first = inc.map(range(5))
        second = inc.map(first)
        return second.result()

    assert my_flow() == [2, 3, 4, 5, 6]


def test_map_length_mismatch():
    @flow(task_runner=two_workers())
    def my_flow():
        with pytest.raises(MappingLengthMismatch):
            add.map([1, 2], [1, 2, 3])
        return "checked"

    assert my_flow() == "checked"


def test_map_missing_iterable():
    @flow(task_runner=two_workers())
    def my_flow():
        with pytest.raises(MappingMissingIterable):
            add.map(1, 2)
        with pytest.raises(MappingMissingIterable):
            add.map("ab", 2)  # strings are not mapped over
        return "checked"

    assert my_flow() == "checked"


def test_map_with_kwargs_function():
    @task
    def collect(a, **kwargs):
        return (a, kwargs)

    @flow(task_runner=two_workers())
    def my_flow():
        return collect.map([1, 2], b=[3, 4], c=unmapped(5)).result()

    assert my_flow() == [(1, {"b": 3, "c": 5}), (2, {"b": 4, "c": 5})]


def test_map_with_return_state():
    @flow(task_runner=two_workers())
    def my_flow():
        return inc.map([1, 2], return_state=True)

    # A flow that returns states is judged by them; here all completed.
    state = my_flow(return_state=True)
    assert state.is_completed()
    assert [s.result() for s in state.result()] == [2, 3]


# --------------------------------------------------------------------------------------------
# Upstream failures
# --------------------------------------------------------------------------------------------


def test_wait_for_failed_future_gives_not_ready_and_never_runs():
    calls = []

    @task
    def downstream(x):
        calls.append(x)
        return x

    @flow(task_runner=two_workers())
    def my_flow():
        failed = fail.submit()
        blocked = downstream.submit(1, wait_for=[failed])
        blocked.wait()
        states.append(blocked.state)
        return "flow body finished"

    states = []
    assert my_flow() == "flow body finished"
    [state] = states
    assert state.type is StateType.PENDING
    assert state.name == "NotReady"
    assert calls == []


def test_wait_for_allow_failure_runs():
    calls = []

    @task
    def downstream(x):
        calls.append(x)
        return x * 3

    @flow(task_runner=two_workers())
    def my_flow():
        failed = fail.submit()
        return downstream.submit(2, wait_for=[allow_failure(failed)]).result()

    assert my_flow() == 6
    assert calls == [2]


def test_allow_failure_argument_receives_the_exception():
    @task
    def handle(upstream):
        return f"handled {type(upstream).__name__}: {upstream}"

    @flow(task_runner=two_workers())
    def my_flow():
        return handle.submit(allow_failure(fail.submit("bad"))).result()

    assert my_flow() == "handled ValueError: bad"


def test_upstream_failure_propagates_not_ready_down_a_chain():
    calls = []

    @task
    def step(x):
        calls.append(x)
        return x

    @flow(task_runner=two_workers())
    def my_flow():
        a = fail.submit()
        b = step.submit(a)
        c = step.submit(b)
        d = step.submit([c, 1])
        for f in (a, b, c, d):
            f.wait()
        states.extend(f.state for f in (a, b, c, d))

    states = []
    assert my_flow(return_state=True).is_completed()
    assert [s.type for s in states] == [
        StateType.FAILED,
        StateType.PENDING,
        StateType.PENDING,
        StateType.PENDING,
    ]
    assert [s.name for s in states[1:]] == ["NotReady"] * 3
    assert calls == []


def test_allow_failure_on_not_ready_upstream_runs():
    @task
    def step(x):
        return x

    @task
    def tolerant(x):
        return "ran"

    @flow(task_runner=two_workers())
    def my_flow():
        not_ready = step.submit(fail.submit())
        return tolerant.submit(allow_failure(not_ready)).result()

    assert my_flow() == "ran"


# --------------------------------------------------------------------------------------------
# Context inside submitted tasks
# --------------------------------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_context_visible_inside_submitted_tasks():
    @task
    def look():
        return {
            "request_id": request_id.get(),
            "tags": set(fluvial.runtime.task_run.tags),
            "name": fluvial.runtime.task_run.name,
            "task_name": fluvial.runtime.task_run.task_name,
            "flow_name": fluvial.runtime.flow_run.flow_name,
        }

    @task(task_run_name="look-{x}")
    def named(x):
        return fluvial.runtime.task_run.name

    @flow(task_runner=two_workers())
    def ctx_flow():
        token = request_id.set("req-42")
        try:
            with fluvial.tags("alpha", "beta"):
                seen = look.submit().result()
        finally:
            request_id.reset(token)
        return seen, named.submit(7).result(), look.submit().result()

    inside, name, outside = ctx_flow()
    assert inside["request_id"] == "req-42"
    assert {"alpha", "beta"} <= inside["tags"]
    assert inside["name"].startswith("look")
    assert inside["task_name"] == "look"
    assert inside["flow_name"] == "ctx-flow"
    assert name == "look-7"
    assert outside["request_id"] == "unset"
    assert not {"alpha", "beta"} & outside["tags"]


def test_nested_submit_sees_the_flow_context():
    @task
    def inner():
        return fluvial.runtime.flow_run.flow_name

    @task
    def outer():
        return inner.submit().result()

    @flow(task_runner=two_workers())
    def nested_ctx():
        return outer.submit().result()

    assert nested_ctx() == "nested-ctx"


# --------------------------------------------------------------------------------------------
# Async tasks
# --------------------------------------------------------------------------------------------


def test_async_tasks_run_on_a_long_lived_loop_per_worker():
    loops = []
    lock = threading.Lock()

    @task
    async def which_loop(i):
        await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        with lock:
            loops.append((threading.get_ident(), loop))  # keeps the loop alive: ids stay unique
        return i

    @flow(task_runner=two_workers())
    def my_flow():
        return which_loop.map(range(20)).result()

    assert my_flow() == list(range(20))
    assert len(loops) == 20
    distinct = {id(loop) for _, loop in loops}
    assert len(distinct) <= 2
    per_thread = {}
    for ident, loop in loops:
        per_thread.setdefault(ident, set()).add(id(loop))
    assert all(len(ids) == 1 for ids in per_thread.values())


def test_async_task_results_and_failures():
    @task
    async def double(x):
        await asyncio.sleep(0)
        return x * 2

    @task
    async def async_fail():
        raise KeyError("async key")

    @flow(task_runner=two_workers())
    def my_flow():
        bad = async_fail.submit()
        bad.wait()
        return double.submit(double.submit(3)).result(), bad.state

    value, bad_state = my_flow()
    assert value == 12
    assert bad_state.is_failed()
    assert isinstance(bad_state.result(raise_on_failure=False), KeyError)


# --------------------------------------------------------------------------------------------
# Errors, crashes, direct use
# --------------------------------------------------------------------------------------------


def test_submit_outside_a_flow_raises():
    with pytest.raises(MissingContextError):
        inc.submit(1)
    with pytest.raises(MissingContextError):
        inc.map([1, 2])


def test_system_exit_in_a_task_crashes_it_and_the_flow_continues():
    @task
    def exits():
        raise SystemExit(3)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def my_flow():
        crashed = exits.submit()
        crashed.wait()
        states.append(crashed.state)
        return inc.submit(1).result()  # the single worker is still usable

    states = []
    state = my_flow(return_state=True)
    assert state.is_completed()
    assert state.result() == 2
    [crashed] = states
    assert crashed.type is StateType.CRASHED
    # fluvial reports a crash as CrashedRun (its cause is the SystemExit); never as a value.
    assert isinstance(crashed.result(raise_on_failure=False), CrashedRun | SystemExit)
    with pytest.raises((CrashedRun, SystemExit)):
        crashed.result()


def test_runner_used_directly():
    with ThreadPoolTaskRunner(2) as runner:
        future = runner.submit(inc, {"x": 1})
        dependent = runner.submit(inc, {"x": future})
        mapped = runner.map(inc, {"x": [1, 2, 3]})
        assert future.result(timeout=SAFETY) == 2
        assert dependent.result(timeout=SAFETY) == 3
        assert mapped.result(timeout=SAFETY) == [2, 3, 4]


def test_runner_must_be_entered_before_submit():
    runner = ThreadPoolTaskRunner(2)
    with pytest.raises(RuntimeError):
        runner.submit(inc, {"x": 1})


def test_runner_rejects_non_positive_max_workers():
    with pytest.raises(ValueError):
        ThreadPoolTaskRunner(max_workers=0)


def test_runner_duplicate_keeps_max_workers():
    runner = ThreadPoolTaskRunner(max_workers=5)
    copy = runner.duplicate()
    assert isinstance(copy, ThreadPoolTaskRunner)
    assert copy is not runner
    assert copy.max_workers == 5
