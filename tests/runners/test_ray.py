"""RayTaskRunner on a real local Ray: one Ray instance for the session, which every runner here
reuses (and must leave running), plus subprocesses for the paths that need a process without
Ray: a runner starting and stopping its own Ray, and an unreachable address.

Ray workers cannot import this test module (the tests directory is not on their ``sys.path``),
so its tasks and classes are pickled by value (``cloudpickle.register_pickle_by_value``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import pytest

from fluvial import allow_failure, flow, get_run_logger, task
from fluvial.exceptions import (
    MissingExtraError,
    SerializationError,
    TaskRunTimeoutError,
    WorkerCrashed,
)
from fluvial.runners import RayTaskRunner, ThreadPoolTaskRunner
from fluvial.runners.ray import remote_options
from fluvial.states import StateType

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SAFETY = 60.0  # seconds: only reached when something is broken
MB = 1024 * 1024
# Pickled by value with the task that reads it: makes that task too big to send with each call.
BIG_CONSTANT = bytes(range(256)) * 1024


class Boom(Exception):
    """A user exception defined in the test module (pickled by value)."""


# --- tasks ------------------------------------------------------------------------------------


@task
def add(x: int, y: int) -> int:
    return x + y


@task
async def add_async(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@task
def where() -> int:
    return os.getpid()


@task
def boom(message: str = "boom") -> None:
    raise Boom(message)


@task
def big_after(seconds: float) -> bytes:
    time.sleep(seconds)
    return b"x" * MB


@task
def measure(data: bytes) -> tuple[int, int]:
    return len(data), os.getpid()


@task
def combine(nested: dict[str, Any]) -> list[Any]:
    return [nested["a"], nested["b"][0], nested["b"][1][0]]


@task
def passthrough(value: Any) -> Any:
    return value


@task
def size_of_big_constant() -> int:
    return len(BIG_CONSTANT)


@task
def big_constant_plus(data: bytes) -> int:
    return len(BIG_CONSTANT) + len(data)


@task
def die() -> None:
    os._exit(1)


@task
def ray_context() -> dict[str, Any]:
    import ray

    context = ray.get_runtime_context()
    return {
        "resources": context.get_assigned_resources(),
        "name": context.get_task_name(),
        "namespace": context.namespace,
    }


@task(retries=2, retry_delay_seconds=0)
def flaky() -> int:
    import fluvial.runtime

    count: int = fluvial.runtime.task_run.run_count
    if count < 3:
        raise Boom(f"attempt {count}")
    return count


@task(timeout_seconds=0.5)
def sleeps_too_long() -> str:
    time.sleep(30)
    return "woke up"


@task(timeout_seconds=0.5)
async def sleeps_too_long_async() -> str:
    await asyncio.sleep(30)
    return "woke up"


@task
def chatty(n: int) -> int:
    logger = get_run_logger()
    for i in range(n):
        logger.info("line %d of %d", i, n)
    return n


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def runner(ray_session: None) -> Iterator[RayTaskRunner]:
    """An entered runner on the session's Ray; checks it leaves Ray running and no run behind."""
    import ray

    with RayTaskRunner() as entered:
        assert not entered._owns_ray
        yield entered
    assert ray.is_initialized()
    assert entered.pending_futures() == []
    assert entered._jobs == {}


# --- remote_options (no Ray needed) -----------------------------------------------------------


def test_remote_options_merge_when_nested_and_restore_on_exit() -> None:
    with remote_options(num_cpus=2, resources={"a": 1}) as outer:
        assert dict(outer) == {"num_cpus": 2, "resources": {"a": 1}}
        with remote_options(num_gpus=1, num_cpus=3, memory=MB) as inner:
            assert dict(inner) == {
                "num_cpus": 3,
                "resources": {"a": 1},
                "num_gpus": 1,
                "memory": MB,
            }
        with remote_options() as same:
            assert dict(same) == dict(outer)
    with remote_options() as empty:
        assert dict(empty) == {}


def test_a_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like
    with pytest.raises(MissingExtraError, match=r"pip install 'fluvial\[ray\]'"):
        RayTaskRunner()


def test_duplicate_and_pickle_keep_the_configuration() -> None:
    import pickle

    original = RayTaskRunner("127.0.0.1:6379", {"namespace": "x"})
    for copy in (original.duplicate(), pickle.loads(pickle.dumps(original))):
        assert (copy.address, copy.init_kwargs) == ("127.0.0.1:6379", {"namespace": "x"})
        assert not copy._started
    assert repr(original) == "RayTaskRunner(address='127.0.0.1:6379')"


# --- runs on the session's Ray ----------------------------------------------------------------


def test_flows_return_values_from_ray_workers_and_leave_ray_running(ray_session: None) -> None:
    import ray

    @flow(task_runner=RayTaskRunner())
    def pipeline() -> tuple[int, int, int]:
        total = add.submit(1, 2)
        async_total = add_async.submit(total, 10)
        return total.result(), async_total.result(), where.submit().result()

    total, async_total, pid = pipeline()
    assert (total, async_total) == (3, 13)
    assert pid != os.getpid()
    assert ray.is_initialized()


def test_user_exceptions_arrive_unchanged(runner: RayTaskRunner) -> None:
    future = runner.submit(boom, {"message": "kaput"})
    with pytest.raises(Boom, match="kaput") as caught:
        future.result(timeout=SAFETY)
    assert type(caught.value) is Boom  # the test module's class, not a copy made by unpickling
    assert future.state.type is StateType.FAILED
    assert any("boom" in note for note in getattr(caught.value, "__notes__", ()))


def test_a_dependency_chain_moves_values_worker_to_worker(runner: RayTaskRunner) -> None:
    before = set(_driver_references())  # other tests share this Ray: only count new refs
    upstream = runner.submit(big_after, {"seconds": 1.0})
    downstream = runner.submit(measure, {"data": upstream})
    # The upstream is still running, so the downstream went to Ray holding its ObjectRef.
    assert not upstream.done()
    assert [job.future for job in runner._jobs[downstream].sources] == [upstream]
    last = runner.submit(passthrough, {"value": downstream})
    length, pid = last.result(timeout=SAFETY)  # the flow never asks for the 1 MB value
    assert length == MB
    assert pid != os.getpid()
    assert upstream.state.type is StateType.COMPLETED
    # Finished runs hold no ObjectRefs: Ray may free their outcomes (the 1 MB included).
    assert _wait_until(lambda: not set(_driver_references()) - before)


def test_a_run_that_finishes_out_of_order_is_seen_while_older_ones_run(
    runner: RayTaskRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluvial.runners import _ray_watch

    # The finisher watches only the oldest outstanding run; the quick one is found by a sweep.
    monkeypatch.setattr(_ray_watch, "_WINDOW", 1)
    slow = runner.submit(big_after, {"seconds": 5.0})
    quick = runner.submit(add, {"x": 1, "y": 2})
    assert quick.result(timeout=SAFETY) == 3
    assert not slow.done()  # seen before the oldest run finished, not after it
    assert len(slow.result(timeout=SAFETY)) == MB


def _driver_references() -> dict[Any, Any]:
    import ray

    counts: dict[Any, Any] = (
        ray._private.worker.global_worker.core_worker.get_all_reference_counts()
    )
    return counts


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_large_task_is_put_in_the_object_store_once(runner: RayTaskRunner) -> None:
    futures = [runner.submit(size_of_big_constant, {}) for _ in range(3)]
    assert [future.result(timeout=SAFETY) for future in futures] == [256 * 1024] * 3
    sent = [entry[2] for entry in runner._blobs.values()]
    assert len(sent) == 1
    assert isinstance(sent[0], list)  # a boxed ObjectRef, not the bytes with every call
    # The box and the outcome of an upstream run still in Ray travel side by side.
    upstream = runner.submit(big_after, {"seconds": 0.5})
    later = runner.submit(big_constant_plus, {"data": upstream})
    assert later.result(timeout=SAFETY) == 256 * 1024 + MB


def test_futures_nested_in_arguments_and_wait_for_are_resolved(runner: RayTaskRunner) -> None:
    a = runner.submit(big_after, {"seconds": 0.3})
    b = runner.submit(add, {"x": 1, "y": 1})
    c = runner.submit(add, {"x": b, "y": 1})
    nested = runner.submit(combine, {"nested": {"a": c, "b": [b, (c,)]}}, wait_for=[a])
    assert nested.result(timeout=SAFETY) == [3, 2, 3]
    assert a.done()


def test_a_future_of_another_runner_is_awaited_before_dispatch(runner: RayTaskRunner) -> None:
    with ThreadPoolTaskRunner(max_workers=1) as threads:
        local = threads.submit(big_after, {"seconds": 0.3})
        remote = runner.submit(measure, {"data": local})
        length, pid = remote.result(timeout=SAFETY)
    assert length == MB
    assert pid != os.getpid()


def test_failed_upstreams_make_not_ready_unless_allow_failure(runner: RayTaskRunner) -> None:
    failed = runner.submit(boom, {"message": "upstream"})
    blocked = runner.submit(passthrough, {"value": failed})
    waited = runner.submit(add, {"x": 1, "y": 2}, wait_for=[failed])
    allowed = runner.submit(passthrough, {"value": allow_failure(failed)})
    for future in (blocked, waited):
        future.wait(SAFETY)
        assert (future.state.type, future.state.name) == (StateType.PENDING, "NotReady")
    received = allowed.result(timeout=SAFETY)
    assert isinstance(received, Boom)
    assert str(received) == "upstream"


def test_a_worker_that_exits_makes_its_run_crashed_not_a_hang(runner: RayTaskRunner) -> None:
    dead = runner.submit(die, {})
    dependent = runner.submit(passthrough, {"value": dead})
    tolerant = runner.submit(passthrough, {"value": allow_failure(dead)})
    dead.wait(SAFETY)
    assert dead.state.type is StateType.CRASHED
    with pytest.raises(WorkerCrashed, match=r"died before the run finished.*WorkerCrashedError"):
        dead.result()
    dependent.wait(SAFETY)
    assert dependent.state.name == "NotReady"
    assert isinstance(tolerant.result(timeout=SAFETY), WorkerCrashed)
    # Ray replaces the worker: later runs are fine.
    assert runner.submit(add, {"x": 2, "y": 2}).result(timeout=SAFETY) == 4


def test_remote_options_apply_to_the_tasks_submitted_inside(runner: RayTaskRunner) -> None:
    with remote_options(num_cpus=2):
        with remote_options(memory=100 * MB):
            both = runner.submit(ray_context, {})
        cpus_only = runner.submit(ray_context, {})
    default = runner.submit(ray_context, {})
    assert both.result(timeout=SAFETY)["resources"] == {"CPU": 2.0, "memory": 100.0 * MB}
    assert cpus_only.result(timeout=SAFETY)["resources"] == {"CPU": 2.0}
    context = default.result(timeout=SAFETY)
    assert context["resources"] == {"CPU": 1.0}
    assert context["name"] == "ray_context"  # the task's name (one remote function per task)
    assert context["namespace"] == "fluvial-tests"  # the session's Ray, not a new one


def test_invalid_remote_options_fail_at_submit(runner: RayTaskRunner) -> None:
    with remote_options(num_cpus=-1), pytest.raises(ValueError, match="num_cpus"):
        runner.submit(add, {"x": 1, "y": 2})
    assert runner.pending_futures() == []


def test_an_unpicklable_argument_fails_naming_the_parameter(runner: RayTaskRunner) -> None:
    future = runner.submit(passthrough, {"value": threading.Lock()})
    with pytest.raises(SerializationError, match=r"'passthrough'.*parameter 'value'"):
        future.result(timeout=SAFETY)


def test_retries_and_timeouts_happen_on_the_worker(runner: RayTaskRunner) -> None:
    retried = runner.submit(flaky, {})
    timed_out = [runner.submit(sleeps_too_long, {}), runner.submit(sleeps_too_long_async, {})]
    assert retried.result(timeout=SAFETY) == 3
    assert retried.task_run.run_count == 3
    started = time.monotonic()
    for future in timed_out:
        future.wait(SAFETY)
        assert future.state.name == "TimedOut"
        with pytest.raises(TaskRunTimeoutError):
            future.result()
    assert time.monotonic() - started < 20  # reported on time, not after the 30 s sleep


def test_worker_logs_are_replayed_in_order(
    runner: RayTaskRunner, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fluvial"):
        runner.submit(chatty, {"n": 5}).result(timeout=SAFETY)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("line ")]
    assert lines == [f"line {i} of 5" for i in range(5)]
    assert all(r.process != os.getpid() for r in caplog.records if r.msg.startswith("line "))


@task
def who_runs(label: str) -> tuple[str, str, str]:
    import builtins

    from fluvial import runtime

    # One variable per worker process (a ContextVar does not pickle with the task).
    leak = builtins.__dict__.setdefault(
        "_fluvial_test_leak", contextvars.ContextVar("leak", default="unset")
    )
    seen = leak.get()
    leak.set(label)  # must not reach the next run on this worker
    return str(runtime.flow_run.id), str(runtime.flow_run.name), seen


def test_workers_keep_each_flow_runs_context_apart(ray_session: None) -> None:
    @flow(task_runner=RayTaskRunner())
    def fan(label: str) -> tuple[str, list[tuple[str, str, str]]]:
        from fluvial import runtime

        futures = [who_runs.submit(f"{label}-{i}") for i in range(12)]
        return str(runtime.flow_run.id), [f.result() for f in futures]

    first_id, first = fan("first")
    second_id, second = fan("second")
    assert first_id != second_id
    assert {row[0] for row in first} == {first_id}
    assert {row[0] for row in second} == {second_id}
    assert {row[2] for row in first + second} == {"unset"}  # no run saw an earlier run's value


def test_a_failing_flow_ends_its_unfinished_runs(ray_session: None) -> None:
    runner = RayTaskRunner()
    with pytest.raises(Boom), runner:
        slow = runner.submit(big_after, {"seconds": 5})
        raise Boom("the flow failed")
    assert slow.state.type is StateType.CRASHED
    assert runner.pending_futures() == []


# --- processes without Ray --------------------------------------------------------------------


def _run_python(code: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=SAFETY,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_a_runner_starts_and_stops_its_own_ray_when_none_is_running() -> None:
    report = _run_python(
        """
        import json, os, ray
        from fluvial import task
        from fluvial.runners import RayTaskRunner, ThreadPoolTaskRunner

        @task
        def namespace():
            return ray.get_runtime_context().namespace, os.getpid()

        runner = RayTaskRunner()
        with runner:
            inside = ray.is_initialized()
            ns, pid = runner.submit(namespace, {}).result(timeout=60)
        print(json.dumps({"owned": runner._owns_ray, "inside": inside, "after":
            ray.is_initialized(), "namespace": ns, "other_pid": pid != os.getpid()}))
        """
    )
    assert report == {
        "owned": False,  # reset once it shut Ray down
        "inside": True,
        "after": False,
        "namespace": "fluvial",
        "other_pid": True,
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_address_fails_fast_naming_it(scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    report = _run_python(
        f"""
        import json, time, ray
        from fluvial.exceptions import ConfigurationError
        from fluvial.runners import RayTaskRunner, ThreadPoolTaskRunner

        runner = RayTaskRunner({address!r})
        started = time.monotonic()
        try:
            runner.__enter__()
        except ConfigurationError as exc:
            message = str(exc)
        print(json.dumps({{"message": message, "seconds": time.monotonic() - started,
            "initialized": ray.is_initialized(), "started": runner._started}}))
        """
    )
    assert address in report["message"]
    assert report["seconds"] < 10
    assert not report["initialized"]
    assert not report["started"]
