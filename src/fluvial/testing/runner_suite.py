"""Behaviour every task runner shares, as a pytest suite (like fsspec's ``tests/abstract``).

Subclass :class:`RunnerConformance`, override its ``runner`` fixture to return a fresh,
unstarted runner, and say what the runner can do in ``capabilities`` (a
:class:`RunnerCapabilities`). Tests a runner legitimately cannot pass skip with a reason. Every
test runs real flows built with ``@flow(task_runner=runner)``.

Every task below is defined at module level, so a worker in another process or on another
machine can import what it needs by reference: workers need ``fluvial`` (with pytest) installed,
nothing from the test tree. Counting how often a task ran must work on any runner, so tasks never
report through shared memory: a task that should run once returns a random token and the test
compares tokens, or reads the run's state (``Cached``, ``NotReady``) and ``run_count``.

Two fixtures supply what workers must share with the flow process: ``result_storage`` (storage
both sides can reach) and ``lock_manager`` (locks that hold across the runner's workers). Their
defaults follow the capabilities (``memory://`` and :class:`~fluvial.storage.MemoryLockManager`
when tasks run in this process, a temporary directory and
:class:`~fluvial.storage.FileSystemLockManager` when workers share this machine's files); a
runner whose workers share neither overrides them, e.g. with S3 storage and a cluster lock
manager. Tests that could hang carry generous ``pytest-timeout`` limits.
"""

from __future__ import annotations

__all__ = ("ConformanceError", "RunnerCapabilities", "RunnerConformance")

import asyncio
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pytest

import fluvial.runtime

from .. import allow_failure, flow, get_run_logger, tags, task, unmapped
from ..cache_policies import INPUTS
from ..exceptions import CrashedRun, WorkerCrashed
from ..flows import Flow
from ..futures import Future, FutureList
from ..runners import TaskRunner, ThreadPoolTaskRunner
from ..states import State, StateType
from ..storage import FileSystemLockManager, LockManager, MemoryLockManager
from ..tasks import Task

# Only reached when a runner is broken; no test waits this long when it works.
_SAFETY = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class RunnerCapabilities:
    """What a runner can do, so the suite skips (with a reason) what it legitimately cannot.

    Attributes:
        shares_memory: tasks run in the flow process, so ``memory://`` storage and
            :class:`~fluvial.storage.MemoryLockManager` are shared with them.
        shares_filesystem: workers see this machine's local files, so a temporary directory
            is shared result storage and :class:`~fluvial.storage.FileSystemLockManager`
            works across them.
        survives_worker_death: a worker can die (``os._exit``) without taking the flow
            process with it.
    """

    shares_memory: bool = False
    shares_filesystem: bool = True
    survives_worker_death: bool = True


class ConformanceError(Exception):
    """The exception the suite's failing tasks raise (module level, so workers can pickle it)."""


@dataclasses.dataclass(frozen=True)
class Point:
    """A user-defined return value (module level, so it unpickles in the flow process)."""

    x: int
    y: float


# --------------------------------------------------------------------------------------------
# Tasks. Module level, so spawned processes and remote workers get them by reference.
# --------------------------------------------------------------------------------------------


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def echo(value: Any) -> Any:
    return value


@task
async def echo_async(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@task
async def double_async(x: int) -> int:
    await asyncio.sleep(0.001)
    return 2 * x


@task
def fail(message: str) -> None:
    raise ConformanceError(message)


@task
async def fail_async(message: str) -> None:
    await asyncio.sleep(0)
    raise KeyError(message)


@task
def describe(value: Any) -> str:
    return f"{type(value).__name__}: {value}"


@task
def make_list(n: int) -> list[int]:
    return list(range(n))


@task
def pair(x: int, items: list[int]) -> tuple[int, list[int]]:
    return x, items


@task
def collect(items: list[Any], mapping: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    return items, mapping


@task(retries=3, retry_delay_seconds=[0.05, 0.1, 0.05])
def flaky(failures: int) -> int:
    attempt: int = fluvial.runtime.task_run.run_count
    if attempt <= failures:
        raise ConformanceError(f"attempt {attempt} fails")
    return attempt


@task(timeout_seconds=0.5)
def overrun(seconds: float) -> str:
    # Short sleeps: a thread runner can interrupt this between them, so no thread is abandoned.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "finished"


@task(timeout_seconds=0.5)
async def overrun_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@task(cache_policy=INPUTS)
def token(key: str, seconds: float = 0.0) -> str:
    time.sleep(seconds)
    return uuid.uuid4().hex


@task(tags=["conformance-task"], task_run_name="inspect-{x}")
def inspect_context(x: int, label: str) -> dict[str, Any]:
    return {
        "flow_name": fluvial.runtime.flow_run.flow_name,
        "flow_run_name": fluvial.runtime.flow_run.name,
        "flow_run_id": fluvial.runtime.flow_run.id,
        "task_name": fluvial.runtime.task_run.task_name,
        "task_run_name": fluvial.runtime.task_run.name,
        "task_run_id": fluvial.runtime.task_run.id,
        "parameters": fluvial.runtime.task_run.parameters,
        "tags": list(fluvial.runtime.task_run.tags),
    }


@task
def task_run_name() -> str:
    name: str = fluvial.runtime.task_run.name
    return name


@task
def chatty(count: int) -> int:
    logger = get_run_logger()
    for number in range(count):
        logger.info("conformance log line %d", number)
    return count


@task(timeout_seconds=30)
def chatty_with_timeout(count: int) -> int:
    logger = get_run_logger()
    for number in range(count):
        logger.info("conformance log line %d", number)
    return count


@task
def chatty_with_unpicklable_extra(count: int) -> int:
    # A lock cannot be pickled: the record must still reach the flow process, as text.
    get_run_logger().info("conformance log with extra", extra={"handle": threading.Lock()})
    return count


@task
def exit_worker() -> None:
    os._exit(1)


@task
def submit_children(n: int) -> int:
    futures = [_submit(add, number, 1) for number in range(n)]
    return sum(future.result() for future in futures)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _submit(task: Task[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    """``task.submit(...)``, typed as the future it returns (``return_state`` is never set)."""
    future = task.submit(*args, **kwargs)
    assert isinstance(future, Future)
    return future


def _map(task: Task[..., Any], *args: Any, **kwargs: Any) -> FutureList[Any]:
    """``task.map(...)``, typed as the future list it returns."""
    futures = task.map(*args, **kwargs)
    assert isinstance(futures, FutureList)
    return futures


def _settled(future: Future[Any]) -> State[Any]:
    """Wait for *future* (at most the safety limit) and return its final state."""
    future.wait(_SAFETY)
    assert future.done(), f"{future!r} did not finish within {_SAFETY:g}s"
    return future.state


def _name_and_value(future: Future[Any]) -> tuple[str, Any]:
    return _settled(future).name, future.result()


def _final_state(definition: Flow[[], Any]) -> State[Any]:
    """Run a flow with ``return_state=True`` (which Flow's typed call signature leaves out)."""
    call: Any = definition
    state = call(return_state=True)
    assert isinstance(state, State)
    return state


# --------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------


class RunnerConformance:
    """The behaviour every task runner shares with fluvial's built-in runners."""

    #: What the runner under test can do; override in the subclass, or override the
    #: ``runner_capabilities`` fixture when one subclass parametrizes several runners.
    capabilities: ClassVar[RunnerCapabilities] = RunnerCapabilities()

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.timeout(120)]

    @pytest.fixture
    def runner(self) -> TaskRunner:
        """Override: return a fresh, unstarted runner."""
        raise NotImplementedError("override the `runner` fixture with a fresh, unstarted runner")

    @pytest.fixture
    def runner_capabilities(self) -> RunnerCapabilities:
        """What the runner under test can do: ``capabilities`` unless overridden."""
        return self.capabilities

    @pytest.fixture
    def anyio_backend(self) -> str:
        """Run the async tests on asyncio."""
        return "asyncio"

    @pytest.fixture
    def result_storage(
        self, runner_capabilities: RunnerCapabilities, tmp_path: Path
    ) -> Iterator[Any]:
        """Storage that the flow process and the runner's workers both reach.

        Anything ``result_storage=`` takes: an fsspec URL, a path or a ``ResultStore``.
        Override for a runner whose workers share neither this process nor its files.
        """
        if runner_capabilities.shares_memory:
            root = f"memory://fluvial-runner-conformance/{uuid.uuid4().hex}"
            yield root
            memory = fsspec.filesystem("memory")
            if memory.exists(root):
                memory.rm(root, recursive=True)
        elif runner_capabilities.shares_filesystem:
            yield str(tmp_path / "shared-results")
        else:
            pytest.skip(
                "the workers share neither this process nor its files: override the "
                "`result_storage` fixture with storage both reach (e.g. S3)"
            )

    @pytest.fixture
    def lock_manager(self, runner_capabilities: RunnerCapabilities, tmp_path: Path) -> LockManager:
        """A lock manager whose locks hold across the runner's workers, for SERIALIZABLE.

        Override for a runner whose workers share neither this process nor its files.
        """
        if runner_capabilities.shares_memory:
            return MemoryLockManager()
        if runner_capabilities.shares_filesystem:
            return FileSystemLockManager(tmp_path / "locks")
        pytest.skip(
            "the workers share neither this process nor its files: override the "
            "`lock_manager` fixture with one that works across the runner's workers"
        )

    # ---- the runner API -----------------------------------------------------------------

    def test_runner_used_directly(self, runner: TaskRunner) -> None:
        """An entered runner runs submits, dependencies and maps outside any flow."""
        with runner:
            first = runner.submit(add, {"x": 1, "y": 2})
            second = runner.submit(add, {"x": first, "y": 10})
            mapped = runner.map(add, {"x": [1, 2, 3], "y": unmapped(5)})
            assert first.result(timeout=_SAFETY) == 3
            assert second.result(timeout=_SAFETY) == 13
            assert mapped.result(timeout=_SAFETY) == [6, 7, 8]

    def test_submit_before_entering_is_refused(self, runner: TaskRunner) -> None:
        """Submitting to a runner that was not entered raises RuntimeError."""
        with pytest.raises(RuntimeError, match="start"):
            runner.submit(add, {"x": 1, "y": 2})

    def test_duplicate_is_an_unstarted_equivalent(self, runner: TaskRunner) -> None:
        """``duplicate()`` gives an unstarted runner of the same type that works on its own."""
        copy = runner.duplicate()
        assert type(copy) is type(runner)
        assert copy is not runner
        with copy:
            assert copy.submit(add, {"x": 2, "y": 2}).result(timeout=_SAFETY) == 4

    # ---- values and exceptions ----------------------------------------------------------

    def test_return_values_arrive_intact(self, runner: TaskRunner) -> None:
        """Sync and async tasks return values of any picklable type, equal and same-typed."""
        values: list[Any] = [
            None,
            0,
            "naïve ✓",
            b"\x00\xff",
            (1, (2, 3)),
            {"a": [1, 2], 3: {"set"}},
            Point(1, 2.5),
            list(range(50_000)),
        ]

        @flow(task_runner=runner)
        def returns() -> tuple[list[Any], list[Any]]:
            sync = [_submit(echo, value) for value in values]
            asynchronous = [_submit(echo_async, value) for value in values]
            return [f.result() for f in sync], [f.result() for f in asynchronous]

        from_sync, from_async = returns()
        for received in (from_sync, from_async):
            assert received == values
            assert [type(v) for v in received] == [type(v) for v in values]

    def test_user_exceptions_arrive_unchanged(self, runner: TaskRunner) -> None:
        """``future.result()`` raises the task's own exception: same type, same message."""

        @flow(task_runner=runner)
        def failing() -> tuple[State[Any], State[Any], str, str]:
            sync = _submit(fail, "the sync message")
            asynchronous = _submit(fail_async, "the async message")
            return (
                _settled(sync),
                _settled(asynchronous),
                sync.task_run.name,
                asynchronous.task_run.name,
            )

        sync_state, async_state, sync_name, async_name = failing()
        assert sync_state.type is StateType.FAILED
        assert async_state.type is StateType.FAILED
        with pytest.raises(ConformanceError) as sync_info:
            sync_state.result()
        assert type(sync_info.value) is ConformanceError
        assert sync_info.value.args == ("the sync message",)
        assert any(sync_name in note for note in getattr(sync_info.value, "__notes__", []))
        with pytest.raises(KeyError) as async_info:
            async_state.result()
        assert type(async_info.value) is KeyError
        assert async_info.value.args == ("the async message",)
        assert any(async_name in note for note in getattr(async_info.value, "__notes__", []))

    def test_future_result_raises_the_user_exception(self, runner: TaskRunner) -> None:
        """Inside the flow, ``future.result()`` raises what the task raised."""

        @flow(task_runner=runner)
        def catches() -> str:
            try:
                _submit(fail, "caught in the flow").result()
            except ConformanceError as exc:
                return str(exc)
            return "nothing raised"

        assert catches() == "caught in the flow"

    # ---- retries and timeouts -----------------------------------------------------------

    def test_retries_with_delays_count_attempts(self, runner: TaskRunner) -> None:
        """Retries wait their delays; ``task_run.run_count`` counts attempts on both sides."""

        @flow(task_runner=runner)
        def retrying() -> tuple[int, int, float, State[Any], int]:
            started = time.monotonic()
            recovers = _submit(flaky, 2)
            gives_up = _submit(flaky, 5)
            value = recovers.result()
            elapsed = time.monotonic() - started
            return (
                value,
                recovers.task_run.run_count,
                elapsed,
                _settled(gives_up),
                gives_up.task_run.run_count,
            )

        value, run_count, elapsed, exhausted, exhausted_count = retrying()
        assert value == 3  # the worker saw run_count 3 on the attempt that succeeded
        assert run_count == 3
        assert elapsed >= 0.15  # delays of 0.05 s then 0.1 s, never shortened
        assert exhausted.type is StateType.FAILED
        assert exhausted_count == 4  # retries=3: four attempts in all
        with pytest.raises(ConformanceError, match="attempt 4 fails"):
            exhausted.result()

    @pytest.mark.timeout(60)
    def test_timeouts_of_sync_and_async_tasks(self, runner: TaskRunner) -> None:
        """A task past ``timeout_seconds`` ends ``TimedOut`` promptly, sync or async."""

        @flow(task_runner=runner)
        def timing_out() -> tuple[list[State[Any]], float, list[str]]:
            started = time.monotonic()
            slow = [_submit(overrun, _SAFETY), _submit(overrun_async, _SAFETY)]
            states = [_settled(future) for future in slow]
            elapsed = time.monotonic() - started
            quick = [_submit(overrun, 0.01), _submit(overrun_async, 0.01)]
            return states, elapsed, [future.result() for future in quick]

        states, elapsed, quick = timing_out()
        assert [state.name for state in states] == ["TimedOut", "TimedOut"]
        assert all(state.type is StateType.FAILED for state in states)
        for state in states:
            with pytest.raises(TimeoutError):
                state.result()
        assert elapsed < _SAFETY / 2  # generous: the timeout is 0.5 s
        assert quick == ["finished", "finished"]

    # ---- caching ------------------------------------------------------------------------

    def test_cache_hits_are_shared_with_other_runners(
        self, runner: TaskRunner, result_storage: Any
    ) -> None:
        """A result cached through one runner is a hit through another on the same storage."""
        stored = token.with_options(result_storage=result_storage)

        def run(task_runner: TaskRunner, key: str) -> tuple[str, Any]:
            @flow(task_runner=task_runner)
            def caching() -> tuple[str, Any]:
                return _name_and_value(_submit(stored, key))

            return caching()

        other = ThreadPoolTaskRunner(max_workers=1)
        here_first, there_first = uuid.uuid4().hex, uuid.uuid4().hex
        written = run(runner, here_first)
        assert written[0] == "Completed"
        assert run(other, here_first) == ("Cached", written[1])
        written_elsewhere = run(other, there_first)
        assert written_elsewhere[0] == "Completed"
        assert run(runner, there_first) == ("Cached", written_elsewhere[1])
        assert run(runner, here_first) == ("Cached", written[1])

    @pytest.mark.timeout(90)
    def test_serializable_isolation_executes_once(
        self, runner: TaskRunner, result_storage: Any, lock_manager: LockManager
    ) -> None:
        """Concurrent runs of one key under SERIALIZABLE: one executes, the rest read it."""
        policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=lock_manager)
        locked = token.with_options(cache_policy=policy, result_storage=result_storage)
        key = uuid.uuid4().hex

        @flow(task_runner=runner)
        def contended() -> list[tuple[str, Any]]:
            futures = [_submit(locked, key, 0.3) for _ in range(4)]
            return [_name_and_value(future) for future in futures]

        outcomes = contended()
        assert len({value for _, value in outcomes}) == 1, outcomes
        executed = [name for name, _ in outcomes if name != "Cached"]
        assert executed == ["Completed"], outcomes

    # ---- dependencies -------------------------------------------------------------------

    def test_upstream_failure_gives_not_ready(self, runner: TaskRunner) -> None:
        """A failed upstream makes dependents ``NotReady`` without running them."""

        @flow(task_runner=runner)
        def blocked() -> list[tuple[State[Any], int]]:
            bad = _submit(fail, "upstream broke")
            as_argument = _submit(add, bad, 1)
            down_the_chain = _submit(add, as_argument, 1)
            nested = _submit(collect, [1, [bad]], {})
            waited = _submit(add, 1, 2, wait_for=[bad])
            dependents = (as_argument, down_the_chain, nested, waited)
            return [(_settled(future), future.task_run.run_count) for future in dependents]

        for state, run_count in blocked():
            assert state.type is StateType.PENDING, state
            assert state.name == "NotReady", state
            assert run_count == 0, state

    def test_allow_failure_runs_despite_a_failed_upstream(self, runner: TaskRunner) -> None:
        """``allow_failure`` passes the upstream's exception in, or just orders the run."""

        @flow(task_runner=runner)
        def tolerant() -> tuple[str, int, str]:
            bad = _submit(fail, "upstream broke")
            not_ready = _submit(add, bad, 1)
            return (
                _submit(describe, allow_failure(bad)).result(),
                _submit(add, 1, 2, wait_for=[allow_failure(bad)]).result(),
                _submit(describe, allow_failure(not_ready)).result(),
            )

        handed_in, ordered, after_not_ready = tolerant()
        assert handed_in == "ConformanceError: upstream broke"
        assert ordered == 3
        assert after_not_ready == "NoneType: None"

    def test_map_and_unmapped(self, runner: TaskRunner) -> None:
        """``map`` runs one task per item, in order; ``unmapped`` passes a value whole."""

        @flow(task_runner=runner)
        def mapping() -> tuple[list[Any], ...]:
            first = _map(add, [1, 2, 3], unmapped(10))
            chained = _map(add, first, [100, 200, 300])
            over_a_future = _map(add, _submit(make_list, 3), unmapped(1))
            whole = _map(pair, [1, 2], unmapped([7, 8, 9]))
            whole_future = _map(pair, [1, 2], unmapped(_submit(make_list, 2)))
            return (
                first.result(),
                chained.result(),
                over_a_future.result(),
                whole.result(),
                whole_future.result(),
            )

        assert mapping() == (
            [11, 12, 13],
            [111, 212, 313],
            [1, 2, 3],
            [(1, [7, 8, 9]), (2, [7, 8, 9])],
            [(1, [0, 1]), (2, [0, 1])],
        )

    def test_futures_nested_in_list_and_dict_arguments(self, runner: TaskRunner) -> None:
        """Futures inside list and dict arguments arrive as their values."""

        @flow(task_runner=runner)
        def nesting() -> tuple[list[Any], dict[str, Any]]:
            two = _submit(add, 1, 1)
            three = _submit(add, two, 1)
            five = _submit(add, 2, 3)
            collected = _submit(collect, [two, 10, [three]], {"five": five, "deep": {"two": [two]}})
            value: tuple[list[Any], dict[str, Any]] = collected.result()
            return value

        assert nesting() == ([2, 10, [3]], {"five": 5, "deep": {"two": [2]}})

    @pytest.mark.timeout(120)
    def test_long_dependency_chain(self, runner: TaskRunner) -> None:
        """A chain of 50 dependent submits runs to the end (no worker waits on another)."""

        @flow(task_runner=runner)
        def chain() -> tuple[int, int]:
            link = _submit(add, 0, 1)
            links = [link]
            for _ in range(49):
                link = _submit(add, link, 1)
                links.append(link)
            total = _submit(collect, links, {})
            return link.result(), sum(total.result()[0])

        assert chain() == (50, sum(range(1, 51)))

    def test_async_tasks(self, runner: TaskRunner) -> None:
        """Async tasks run, depend on sync tasks and feed them, and map."""

        @flow(task_runner=runner)
        def mixed() -> tuple[int, int, list[int]]:
            async_after_sync = _submit(double_async, _submit(add, 1, 2))
            sync_after_async = _submit(add, _submit(double_async, 2), 1)
            return (
                async_after_sync.result(),
                sync_after_async.result(),
                _map(double_async, [1, 2, 3]).result(),
            )

        assert mixed() == (6, 5, [2, 4, 6])

    @pytest.mark.anyio
    async def test_async_flow_awaits_futures(self, runner: TaskRunner) -> None:
        """An async flow awaits futures of sync and async tasks without blocking its loop."""

        @flow(task_runner=runner)
        async def awaiting() -> list[int]:
            futures = [_submit(double_async, n) for n in range(3)]
            futures.append(_submit(add, 20, 1))
            return [await future for future in futures]

        # Any: mypy mistypes awaiting an async Flow's call as a coroutine.
        values: Any = await awaiting()
        assert values == [0, 2, 4, 21]

    def test_tasks_can_submit_tasks(self, runner: TaskRunner) -> None:
        """A task may submit tasks of its own and wait for them."""

        @flow(task_runner=runner)
        def nested() -> int:
            total: int = _submit(submit_children, 4).result()
            return total

        assert nested() == 1 + 2 + 3 + 4

    def test_flow_waits_for_tasks_it_did_not_wait_for(self, runner: TaskRunner) -> None:
        """A flow that returns without waiting still lets every submitted run finish."""
        futures: list[Future[Any]] = []

        @flow(task_runner=runner)
        def fire_and_forget() -> None:
            first = _submit(overrun, 0.2)
            futures.extend([first, _submit(add, 1, 1, wait_for=[first]), _submit(echo, "x")])

        assert _final_state(fire_and_forget).is_completed()
        assert [future.state.name for future in futures] == ["Completed"] * 3

    # ---- context and logs ---------------------------------------------------------------

    def test_tags_and_runtime_context_on_the_worker(self, runner: TaskRunner) -> None:
        """Tags, run names, ids and parameters seen on the worker match the flow's view."""

        @flow(task_runner=runner, name="conformance-context")
        def inspecting() -> tuple[dict[str, Any], dict[str, Any], str, str]:
            with tags("conformance-context-tag"):
                inspected = _submit(inspect_context, 7, label="seven")
                plain = _submit(task_run_name)
                seen = inspected.result()
            expected = {
                "flow_name": "conformance-context",
                "flow_run_name": fluvial.runtime.flow_run.name,
                "flow_run_id": fluvial.runtime.flow_run.id,
                "task_name": "inspect_context",
                "task_run_name": inspected.task_run.name,
                "task_run_id": str(inspected.task_run.id),
                "parameters": {"x": 7, "label": "seven"},
            }
            return seen, expected, plain.result(), plain.task_run.name

        seen, expected, plain_seen, plain_expected = inspecting()
        assert {k: seen[k] for k in expected} == expected
        assert seen["task_run_name"] == "inspect-7"
        assert {"conformance-task", "conformance-context-tag"} <= set(seen["tags"])
        assert plain_seen == plain_expected

    def test_task_logs_reach_the_flow_process(
        self, runner: TaskRunner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """``get_run_logger()`` records of a task reach this process, in order, named."""
        self._check_logs_arrive(runner, caplog, chatty)

    def test_logs_of_a_task_with_a_timeout_reach_the_flow_process(
        self, runner: TaskRunner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Logs arrive too from a task with ``timeout_seconds`` (which may run on a helper)."""
        self._check_logs_arrive(runner, caplog, chatty_with_timeout)

    def test_a_log_record_that_cannot_be_pickled_arrives_as_text(
        self, runner: TaskRunner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An ``extra=`` value that cannot travel neither fails the run nor loses the record."""
        caplog.set_level(logging.INFO, logger="fluvial")

        @flow(task_runner=runner)
        def logging_flow() -> int:
            result: int = _submit(chatty_with_unpicklable_extra, 4).result()
            return result

        assert logging_flow() == 4
        [record] = [r for r in caplog.records if r.getMessage() == "conformance log with extra"]
        assert "lock" in str(getattr(record, "handle", "")).lower()

    @staticmethod
    def _check_logs_arrive(
        runner: TaskRunner, caplog: pytest.LogCaptureFixture, chatter: Task[..., Any]
    ) -> None:
        caplog.set_level(logging.INFO, logger="fluvial")

        @flow(task_runner=runner)
        def logging_flow() -> str:
            future = _submit(chatter, 3)
            future.result()
            return future.task_run.name

        run_name = logging_flow()
        records = [r for r in caplog.records if r.getMessage().startswith("conformance log")]
        assert [r.getMessage() for r in records] == [
            "conformance log line 0",
            "conformance log line 1",
            "conformance log line 2",
        ]
        assert all(r.name == "fluvial.task_runs" for r in records)
        assert all(getattr(r, "task_run_name", None) == run_name for r in records)

    # ---- crashes ------------------------------------------------------------------------

    @pytest.mark.timeout(60)
    def test_killed_worker_crashes_its_task_and_the_runner_goes_on(
        self, runner: TaskRunner, runner_capabilities: RunnerCapabilities
    ) -> None:
        """A worker that dies turns its task ``Crashed`` (never a hang); later tasks run."""
        if not runner_capabilities.survives_worker_death:
            pytest.skip(f"{type(runner).__name__} cannot lose a worker without losing the process")

        @flow(task_runner=runner)
        def crashing() -> tuple[State[Any], State[Any], int, list[int]]:
            dead = _submit(exit_worker)
            downstream = _submit(add, dead, 1)
            crashed = _settled(dead)
            after = _submit(add, 1, 2).result()
            mapped = _map(add, [1, 2, 3], unmapped(1)).result()
            return crashed, _settled(downstream), after, mapped

        state = _final_state(crashing)
        assert state.is_completed(), state
        crashed, downstream, after, mapped = state.result()
        assert crashed.type is StateType.CRASHED
        with pytest.raises((WorkerCrashed, CrashedRun)):
            crashed.result()
        assert downstream.name == "NotReady"
        assert after == 3
        assert mapped == [2, 3, 4]
