"""DaskTaskRunner on real clusters: a LocalCluster of two worker processes shared by the tests, a
scheduler and worker started as separate processes with the ``dask`` CLI and reached by
address, and one default ``DaskTaskRunner()`` that starts and closes its own LocalCluster.

Workers unpickle the tasks of this module by value (``cloudpickle.register_pickle_by_value``),
so the CLI worker does not need the tests directory on its ``sys.path``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import dask
import distributed
import pytest

from fluvial import allow_failure, flow, tags, task, unmapped
from fluvial.exceptions import (
    ConfigurationError,
    MissingContextError,
    MissingExtraError,
    SerializationError,
    WorkerCrashed,
)
from fluvial.futures import Future, wait
from fluvial.runners import DaskTaskRunner
from fluvial.runners.dask import dask_options, get_async_dask_client, get_dask_client
from fluvial.states import StateType

pytestmark = pytest.mark.slow

cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --- tasks (module level: workers get them by pickling) ------------------------------------------


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def where() -> tuple[int, str]:
    return os.getpid(), distributed.get_worker().address


@task
def boom(message: str = "boom") -> None:
    raise ValueError(message)


@task
def total(values: Any) -> int:
    if isinstance(values, dict):
        return sum(values.values())
    return sum(total.fn(v) if isinstance(v, list | dict) else v for v in values)


@task
def produce_big(size: int) -> bytes:
    return b"x" * size


@task
def consume_big(data: bytes) -> tuple[int, list[str]]:
    worker = distributed.get_worker()
    key = worker.get_current_task()
    return len(data), sorted(str(dep.key) for dep in worker.state.tasks[key].dependencies)


@task
def received(value: Any) -> str:
    return f"{type(value).__name__}: {value}"


@task
def die() -> None:
    os._exit(1)


@task(retries=2)
def flaky() -> tuple[int, int]:
    from fluvial import runtime

    if runtime.task_run.run_count < 3:
        raise RuntimeError(f"attempt {runtime.task_run.run_count} fails")
    return runtime.task_run.run_count, os.getpid()


@task(timeout_seconds=0.3)
def too_slow() -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.01)


@task
def chatty(name: str) -> None:
    from fluvial import get_run_logger

    logger = get_run_logger()
    for step in ("one", "two", "three"):
        logger.info("%s says %s", name, step)


@task
def context_seen() -> dict[str, Any]:
    from fluvial import runtime

    return {
        "tags": sorted(runtime.task_run.tags),
        "task_run": runtime.task_run.name,
        "flow_run": runtime.flow_run.name,
        "flow": runtime.flow_run.flow_name,
        "pid": os.getpid(),
    }


@task
async def async_double(x: int) -> int:
    return 2 * x


@task
def square_on_cluster(x: int) -> int:
    with get_dask_client() as client:
        return int(client.submit(_square, x).result())


@task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
async def squares_on_my_worker(n: int) -> int:
    # Pinned to this task's own worker (one thread): only a task that left the thread pool
    # lets them run there.
    me = distributed.get_worker().address
    async with get_async_dask_client(timeout=10) as client:
        futures = client.map(_square, range(n), workers=[me], allow_other_workers=False, pure=False)
        return sum(await client.gather(futures))


def _square(x: int) -> int:
    return x * x


@flow(task_runner=DaskTaskRunner())
def fan_out_on_the_same_cluster(n: int) -> list[int]:
    return [f.result() for f in add.map(range(n), unmapped(100))]


@task
def run_subflow(n: int) -> list[int]:
    return fan_out_on_the_same_cluster(n)


# --- infrastructure --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def observer(dask_cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    """A client of the shared cluster for looking at the scheduler and workers."""
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def runner(dask_cluster: distributed.LocalCluster) -> DaskTaskRunner:
    return DaskTaskRunner(address=dask_cluster.scheduler_address)


# --- behaviour -------------------------------------------------------------------------------


def test_return_values_and_exceptions_arrive_unchanged(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def simple() -> tuple[int, tuple[int, str], Any]:
        raised = boom.submit("kaboom")
        raised.wait()
        return add.submit(1, 2).result(), where.submit().result(), raised.state

    value, (pid, address), raised = simple()
    assert value == 3
    assert pid != os.getpid()  # ran in a worker process
    assert address.startswith("tcp://127.0.0.1:")
    assert raised.type is StateType.FAILED
    with pytest.raises(ValueError, match="kaboom") as info:
        raised.result()
    assert type(info.value) is ValueError


def test_big_upstream_result_moves_worker_to_worker(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def chain() -> tuple[str, tuple[int, list[str]]]:
        big = produce_big.submit(1_000_000)
        used = consume_big.submit(big)
        # The flow never asks for big's value: the downstream gets it from Dask.
        return f"produce_big-{big.task_run_id.hex}", used.result()

    upstream_key, (size, dependencies) = chain()
    assert size == 1_000_000
    assert dependencies == [upstream_key]  # a real Dask dependency, not data in the payload


def test_nested_futures_in_lists_tuples_and_dicts(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def nested() -> tuple[int, int, str]:
        a, b, c = add.submit(1, 0), add.submit(2, 0), add.submit(3, 0)
        in_list = total.submit([a, [b, c], 4])
        in_dict = total.submit({"a": a, "b": b})
        return in_list.result(), in_dict.result(), received.submit((a, {"c": c})).result()

    assert nested() == (10, 3, "tuple: (1, {'c': 3})")


def test_failed_upstream_gives_not_ready_unless_allow_failure(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def failing() -> tuple[Any, ...]:
        bad = boom.submit("upstream broke")
        blocked = add.submit(bad, 1)
        waited = add.submit(1, 1, wait_for=[bad])
        allowed = received.submit(allow_failure(bad))
        allowed_wait = add.submit(2, 2, wait_for=[allow_failure(bad)])
        wait([blocked, waited, allowed, allowed_wait])
        return blocked.state, waited.state, allowed.result(), allowed_wait.result()

    blocked, waited, allowed, allowed_wait = failing(return_state=True).result(
        raise_on_failure=False
    )
    for state in (blocked, waited):
        assert (state.type, state.name) == (StateType.PENDING, "NotReady")
    assert allowed == "ValueError: upstream broke"
    assert allowed_wait == 4


def test_a_worker_that_dies_crashes_its_task_and_the_flow_goes_on(
    runner: DaskTaskRunner, observer: distributed.Client
) -> None:
    @flow(task_runner=runner)
    def dying() -> tuple[Any, Any, Any, int]:
        dead = die.submit()
        after = add.submit(dead, 1)
        allowed = received.submit(allow_failure(dead))
        wait([dead, after, allowed])
        return dead.state, after.state, allowed.result(), add.submit(20, 22).result()

    started = time.monotonic()
    dead, after, allowed, fine = dying()
    assert time.monotonic() - started < 60  # a crash, not a hang
    assert dead.type is StateType.CRASHED
    with pytest.raises(WorkerCrashed, match=r"died before the run finished.*tcp://127\.0\.0\.1"):
        dead.result()
    assert (after.type, after.name) == (StateType.PENDING, "NotReady")
    assert allowed.startswith("WorkerCrashed: ")
    assert fine == 42
    observer.wait_for_workers(2, timeout=30)  # the nanny restarts the worker for later tests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_unreachable_address_fails_fast_naming_it() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=address), DaskTaskRunner(address=address):
        pass
    assert time.monotonic() - started < 20


def test_retries_and_timeouts_run_on_the_worker(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def retrying() -> tuple[Any, int, Any]:
        retried = flaky.submit()
        slow = too_slow.submit()
        wait([retried, slow])
        return retried.result(), retried.task_run.run_count, slow.state

    (attempts, pid), run_count, slow = retrying()
    assert attempts == run_count == 3
    assert pid != os.getpid()
    assert (slow.type, slow.name) == (StateType.FAILED, "TimedOut")


def test_worker_logs_are_replayed_in_the_flow_process(
    runner: DaskTaskRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fluvial")

    @flow(task_runner=runner)
    def talking() -> list[str]:
        futures = [chatty.submit("left"), chatty.submit("right")]
        wait(futures)
        return [f.task_run.name for f in futures]

    names = talking()
    for who, run_name in zip(("left", "right"), names, strict=True):
        records = [r for r in caplog.records if r.getMessage().startswith(f"{who} says")]
        assert [r.getMessage() for r in records] == [f"{who} says {s}" for s in ("one", "two", "three")]  # fmt: skip
        assert {getattr(r, "task_run_name", None) for r in records} == {run_name}


def test_runtime_context_and_tags_reach_the_worker(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner, flow_run_name="on-dask")
    def contextual() -> tuple[dict[str, Any], str]:
        with tags("blue"):
            future = context_seen.submit()
        return future.result(), future.task_run.name

    seen, run_name = contextual()
    assert seen["tags"] == ["blue"]
    assert seen["task_run"] == run_name
    assert (seen["flow_run"], seen["flow"]) == ("on-dask", "contextual")
    assert seen["pid"] != os.getpid()


def test_map_unmapped_and_async_tasks(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def mapping() -> tuple[list[int], list[int]]:
        sums = add.map([1, 2, 3], unmapped(10))
        return sums.result(), async_double.map(sums).result()

    assert mapping() == ([11, 12, 13], [22, 24, 26])


@task
async def overlapping(name: str) -> tuple[str, int]:
    await asyncio.sleep(0.3)  # the runs on the worker's other threads overlap this one
    return name, threading.get_ident()


def test_async_runs_overlap_on_a_threaded_worker_each_thread_with_its_loop() -> None:
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=3, processes=True, dashboard_address=":0"
    ) as cluster:

        @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
        def overlapped() -> list[tuple[str, int]]:
            futures = [overlapping.submit(name) for name in "abcdef"]
            wait(futures)
            return [f.result() for f in futures]

        results = overlapped()
    assert [name for name, _ in results] == list("abcdef")
    assert len({thread for _, thread in results}) > 1  # they did run in several threads


def test_finished_dask_futures_are_released(
    runner: DaskTaskRunner, observer: distributed.Client
) -> None:
    def keys_on_cluster(ids: set[str]) -> list[str]:
        keys = observer.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
        return [key for key in keys if str(key).rsplit("-", 1)[-1] in ids]

    @flow(task_runner=runner)
    def many() -> list[str]:
        futures = [add.submit(i, i) for i in range(20)]
        futures.append(consume_big.submit(produce_big.submit(1000)))
        wait(futures)
        ids = {f.task_run_id.hex for f in futures}
        deadline = time.monotonic() + 10
        while (left := keys_on_cluster(ids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left  # checked while the runner's client is still connected

    assert many() == []


def test_a_run_that_finishes_out_of_order_is_seen_while_older_ones_run(
    runner: DaskTaskRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluvial.runners import _dask_loop

    # The loop reads the status of the oldest run only; the quick one is found by a sweep.
    monkeypatch.setattr(_dask_loop, "_WINDOW", 1)

    @flow(task_runner=runner)
    def mixed() -> tuple[int, bool, float]:
        slow = nap.submit(4.0)
        quick = add.submit(1, 2)
        value = quick.result(timeout=30)
        return value, slow.done(), slow.result()

    assert mixed() == (3, False, 4.0)  # seen before the oldest run finished, not after it


def test_runs_sent_in_one_burst_keep_their_own_arguments_and_keys(
    runner: DaskTaskRunner, observer: distributed.Client
) -> None:
    @flow(task_runner=runner)
    def burst() -> tuple[list[int], list[str]]:
        futures = add.map(range(200), unmapped(1))  # queued faster than the loop submits them
        return [f.result() for f in futures], [f.task_run_id.hex for f in futures]

    with distributed.get_task_stream(client=observer) as stream:
        values, ids = burst()
    assert values == [i + 1 for i in range(200)]
    # Each run is its own Dask task, named after the task and the run, in the dashboard too.
    ran = {str(entry["key"]) for entry in stream.data}
    assert {f"add-{run_id}" for run_id in ids} <= ran


def test_a_burst_of_runs_on_upstream_futures_each_takes_its_own_upstream(
    runner: DaskTaskRunner,
) -> None:
    @flow(task_runner=runner)
    def two_stages() -> tuple[list[int], list[int]]:
        firsts = add.map(range(150), unmapped(1))
        seconds = add.map(firsts, unmapped(10))  # each on one upstream run, most unfinished
        both = [add.submit(a, b) for a, b in zip(firsts, seconds, strict=True)]  # on two
        return [f.result() for f in seconds], [f.result() for f in both]

    seconds, both = two_stages()
    assert seconds == [i + 11 for i in range(150)]
    assert both == [2 * i + 12 for i in range(150)]


def test_dask_options_and_dask_annotate_place_tasks(
    runner: DaskTaskRunner, observer: distributed.Client
) -> None:
    first, second = sorted(observer.scheduler_info()["workers"])

    @flow(task_runner=runner)
    def placed() -> list[str]:
        with dask_options(workers=[first]):
            on_first = [where.submit() for _ in range(3)]
        with dask.annotate(workers=[second]):
            on_second = [where.submit() for _ in range(3)]
        return [f.result()[1] for f in on_first + on_second]

    assert placed() == [first] * 3 + [second] * 3


def test_dask_options_merge_resources_when_nested() -> None:
    with dask_options(resources={"GPU": 1}, priority=1), dask_options(resources={"MEM": 2}):
        assert dask.get_annotations() == {"resources": {"GPU": 1, "MEM": 2}, "priority": 1}
    assert dask.get_annotations() == {}


def test_get_dask_client_in_a_task_and_in_the_flow(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def clients() -> tuple[int, int]:
        in_task = square_on_cluster.submit(7).result()
        with get_dask_client(timeout=10) as client:
            in_flow = client.submit(_square, 5).result()
        return in_task, in_flow

    assert clients() == (49, 25)
    with pytest.raises(MissingContextError), get_dask_client():
        pass


def test_get_async_dask_client_in_a_task_and_in_the_flow(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    async def clients() -> tuple[int, int]:
        in_task = await squares_on_my_worker.submit(4)
        async with get_async_dask_client() as client:
            assert client.asynchronous
            in_flow = await client.submit(_square, 5)
        return in_task, in_flow

    assert asyncio.run(clients()) == (0 + 1 + 4 + 9, 25)

    async def outside() -> None:
        async with get_async_dask_client():
            pass

    with pytest.raises(MissingContextError, match="get_async_dask_client"):
        asyncio.run(outside())


def test_a_subflow_on_a_worker_uses_that_cluster(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def outer() -> list[int]:
        return run_subflow.submit(3).result()

    assert outer() == [100, 101, 102]


def test_unpicklable_argument_fails_naming_the_parameter(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def unpicklable() -> tuple[StateType, Any]:
        state = received.submit(threading.Lock()).state
        return state.type, state.result(raise_on_failure=False)

    kind, error = unpicklable()
    assert kind is StateType.FAILED
    assert isinstance(error, SerializationError)
    assert "parameter 'value'" in str(error)


def test_an_error_in_the_runner_block_crashes_unfinished_runs(runner: DaskTaskRunner) -> None:
    future: Future[Any] | None = None
    with pytest.raises(RuntimeError, match="stop"), runner:
        future = runner.submit(nap, {"seconds": 0.5})
        raise RuntimeError("stop")
    assert future is not None
    assert future.state.type is StateType.CRASHED
    assert runner.pending_futures() == []


def test_scheduler_and_worker_started_by_the_cli_reached_by_address(cli_cluster: str) -> None:
    @flow(task_runner=DaskTaskRunner(address=cli_cluster))
    def remote() -> tuple[tuple[int, list[str]], tuple[int, str]]:
        used = consume_big.submit(produce_big.submit(1_000_000))
        with dask_options(resources={"SPECIAL": 1}):
            special = where.submit()
        return used.result(), special.result()

    (size, dependencies), (pid, address) = remote()
    assert size == 1_000_000
    assert len(dependencies) == 1
    assert pid != os.getpid()
    assert address.startswith("tcp://127.0.0.1:")


# Another Dask on this machine may hold the default dashboard port; Dask then warns and moves.
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_default_runner_starts_and_closes_its_own_local_cluster() -> None:
    runner = DaskTaskRunner()
    with runner:
        address = runner.client.scheduler_info()["address"]
        pid, _ = runner.submit(where, {}).result()
        assert runner.submit(add, {"x": 1, "y": 2}).result() == 3
    assert pid != os.getpid()  # LocalCluster(processes=True)
    with pytest.raises(RuntimeError, match="not been started"):
        runner.client  # noqa: B018
    with pytest.raises(ConfigurationError, match=address):
        with DaskTaskRunner(address=address, client_kwargs={"timeout": 1}):
            pass


def test_a_cluster_object_is_used_and_left_running() -> None:
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        runner = DaskTaskRunner(cluster=cluster)

        @flow(task_runner=runner)
        def on_given_cluster() -> tuple[int, str]:
            return add.submit(2, 3).result(), where.submit().result()[1]

        total, address = on_given_cluster()
        assert total == 5
        assert address == next(iter(cluster.scheduler_info["workers"]))
        with distributed.Client(cluster, set_as_default=False) as client:  # still running
            assert client.submit(_square, 6).result() == 36
        assert "cluster=" in repr(runner)
        copy = cloudpickle.loads(cloudpickle.dumps(runner))  # elsewhere: the same scheduler
        assert (copy.cluster, copy.address) == (None, cluster.scheduler_address)
        assert runner.duplicate().cluster is cluster
    with pytest.raises(ConfigurationError, match="cluster="):
        DaskTaskRunner(address="tcp://127.0.0.1:1", cluster=cluster)
    with pytest.raises(ConfigurationError, match="cluster="):
        DaskTaskRunner(cluster=cluster, cluster_kwargs={"n_workers": 1})
    with pytest.raises(ConfigurationError, match="not str"):
        DaskTaskRunner(cluster="tcp://127.0.0.1:1")  # type: ignore[arg-type]


def test_performance_report_is_written_when_the_runner_exits(
    runner: DaskTaskRunner, tmp_path: Any
) -> None:
    report = tmp_path / "dask-report.html"
    reporting = DaskTaskRunner(address=runner.address, performance_report_path=report)

    @flow(task_runner=reporting)
    def reported() -> int:
        return sum(f.result() for f in add.map(range(3), unmapped(1)))

    assert reported() == 6
    html = report.read_text()
    assert "Dask Performance Report" in html
    assert "add-" in html  # the task stream names the runs' keys
    assert reporting.duplicate().performance_report_path == report
    missing = DaskTaskRunner(address=runner.address, performance_report_path=tmp_path / "no" / "r")
    with pytest.raises(ConfigurationError, match="does not exist"), missing:
        pass


# --- configuration -------------------------------------------------------------------------


def test_settings_rules_and_duplicate() -> None:
    with pytest.raises(ConfigurationError, match="address"):
        DaskTaskRunner(address="tcp://127.0.0.1:1", cluster_kwargs={"n_workers": 1})
    with pytest.raises(ConfigurationError, match="asynchronous"):
        DaskTaskRunner(client_kwargs={"asynchronous": True})
    with pytest.raises(ConfigurationError, match="asynchronous"):
        DaskTaskRunner(cluster_kwargs={"asynchronous": True})
    original = DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 1},
        adapt_kwargs={"maximum": 2},
        client_kwargs={"timeout": 3},
    )
    for copy in (original.duplicate(), cloudpickle.loads(cloudpickle.dumps(original))):
        assert copy is not original
        assert (copy.cluster_class, copy.cluster_kwargs, copy.adapt_kwargs, copy.client_kwargs) == (
            "distributed.LocalCluster", {"n_workers": 1}, {"maximum": 2}, {"timeout": 3},
        )  # fmt: skip
    with pytest.raises(RuntimeError, match="started"):
        original.submit(add, {"x": 1, "y": 1})


def test_a_missing_distributed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'fluvial\[dask\]'"):
        DaskTaskRunner()
