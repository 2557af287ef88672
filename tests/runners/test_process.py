"""ProcessPoolTaskRunner behaviour beyond the conformance suite: real kills, pickling failures,
hard timeouts, settings crossing to workers, storage shared between flow runs, and flow exit.

Tasks are defined at module level so spawned workers can unpickle them. Crash tests are real:
workers are killed with SIGKILL from this process, and "gone" means the pid no longer exists.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import fluvial.runtime
from fluvial import flow, task, unmapped
from fluvial._config import run_config
from fluvial.cache_policies import INPUTS
from fluvial.context import FlowRunContext
from fluvial.exceptions import ConfigurationError, SerializationError, WorkerCrashed
from fluvial.flows import Flow
from fluvial.futures import Future
from fluvial.runners import ProcessPoolTaskRunner
from fluvial.runners._process_pool import _QUEUE_AHEAD
from fluvial.settings import reload_settings, temporary_settings
from fluvial.states import State, StateType

SAFETY = 60.0  # seconds: only ever reached when something is broken

pytestmark = pytest.mark.timeout(120)


@task
def worker_pid(seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return os.getpid()


@task
def report_pid_then_sleep(pid_file: str, seconds: float) -> str:
    _write_atomically(Path(pid_file), str(os.getpid()))
    time.sleep(seconds)  # one long sleep: nothing inside the worker can interrupt it
    return "woke up"


@task(timeout_seconds=0.5)
def ignores_its_timeout(pid_file: str) -> str:
    _write_atomically(Path(pid_file), str(os.getpid()))
    time.sleep(SAFETY)
    return "woke up"


@task
def takes_anything(value: Any, n: int) -> int:
    return n


@task
def returns_a_lock() -> Any:
    return threading.Lock()


class HoldsALock(Exception):
    """An exception whose payload cannot be pickled."""


@task
def raises_unpicklable() -> None:
    raise HoldsALock("holding", threading.Lock())


class NeedsTwoArguments(Exception):
    """Pickles fine, but cannot be rebuilt from its args: unpickling raises TypeError."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@task
def raises_unloadable() -> None:
    raise NeedsTwoArguments("cannot come back", 7)


@task
def worker_settings() -> dict[str, Any]:
    config = run_config()
    return {
        "serializer": config.results_default_serializer,
        "storage": config.result_storage_url,
        "persist": config.results_persist_by_default,
        "pid": os.getpid(),
    }


@task(persist_result=True, result_storage_key="from-worker-{parameters[x]}")
def persisted(x: int) -> int:
    return x * 2


@task(cache_policy=INPUTS)
def stamped(key: str) -> tuple[int, float]:
    return os.getpid(), time.time()


@task
def mark(directory: str, name: str, seconds: float) -> str:
    time.sleep(seconds)
    (Path(directory) / name).touch()
    return name


@task
def pid_after(seconds: float, pid_file: str = "") -> int:
    if pid_file:
        _write_atomically(Path(pid_file), str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def _refuse_to_load() -> None:
    raise RuntimeError("this hook cannot be rebuilt in a worker")


class LoadsNowhere:
    """A hook that pickles in the flow process and fails to unpickle anywhere."""

    def __call__(self, *args: Any) -> None:
        return None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


@task(on_completion=[LoadsNowhere()])
def unloadable_in_workers() -> int:
    return 1


@task(timeout_seconds=0.1, retries=1, retry_delay_seconds=5.5)
def fails_once_then_waits_out_a_long_delay() -> int:
    attempt: int = fluvial.runtime.task_run.run_count
    if attempt == 1:
        raise RuntimeError("first attempt fails")
    return attempt


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


def _wait_for_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + SAFETY
    while not pid_file.exists():
        assert time.monotonic() < deadline, f"no worker wrote {pid_file}"
        time.sleep(0.01)
    return int(pid_file.read_text())


def _gone(pid: int) -> bool:
    """Wait until process *pid* no longer exists; False if it outlives the safety limit."""
    deadline = time.monotonic() + SAFETY
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def _settled(future: Future[Any] | State[Any]) -> State[Any]:
    assert isinstance(future, Future)
    future.wait(SAFETY)
    assert future.done(), f"{future!r} did not finish within {SAFETY:g}s"
    return future.state


def _final_state(definition: Flow[[], Any]) -> State[Any]:
    """Run a flow with ``return_state=True`` (which Flow's typed call signature leaves out)."""
    call: Any = definition
    state = call(return_state=True)
    assert isinstance(state, State)
    return state


def _exception(state: State[Any]) -> BaseException:
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, BaseException), state
    return exc


# --------------------------------------------------------------------------------------------
# Workers that die or hang
# --------------------------------------------------------------------------------------------


def test_sigkill_from_outside_crashes_the_task_and_the_pool_recovers(tmp_path: Path) -> None:
    pid_file = tmp_path / "victim.pid"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def killed() -> tuple[State[Any], int, int, list[int]]:
        victim = report_pid_then_sleep.submit(str(pid_file), SAFETY)
        bystander = worker_pid.submit(0.5)
        pid = _wait_for_pid(pid_file)
        os.kill(pid, signal.SIGKILL)
        crashed = _settled(victim)
        after = [future.result() for future in worker_pid.map([0.05] * 4)]
        return crashed, pid, bystander.result(), after

    crashed, pid, bystander_pid, after = killed()
    assert crashed.type is StateType.CRASHED
    assert "SIGKILL" in (crashed.message or "")
    exc = _exception(crashed)
    assert isinstance(exc, WorkerCrashed)
    assert "SIGKILL" in str(exc)
    assert bystander_pid != pid  # the run on the other worker carried on
    assert pid not in after  # the pool replaced the dead worker
    assert os.getpid() not in after


def test_sync_task_ignoring_its_timeout_is_timed_out_and_its_worker_recycled(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "stuck.pid"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def stuck() -> tuple[State[Any], float, int]:
        started = time.monotonic()
        state = _settled(ignores_its_timeout.submit(str(pid_file)))
        elapsed = time.monotonic() - started
        return state, elapsed, worker_pid.submit().result()

    state, elapsed, next_pid = stuck()
    assert state.name == "TimedOut"
    with pytest.raises(TimeoutError):
        state.result()
    assert elapsed < SAFETY / 4  # the timeout is 0.5 s: reported on time, not after the sleep
    stuck_pid = int(pid_file.read_text())
    assert next_pid != stuck_pid
    assert _gone(stuck_pid)


def test_hard_timeout_leaves_room_for_retry_delays() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def retrying() -> dict[str, State[Any]]:
        return {"state": _settled(fails_once_then_waits_out_a_long_delay.submit())}

    state = retrying()["state"]
    assert state.is_completed(), state
    assert state.result() == 2


def test_flow_timeout_ends_running_workers_promptly(tmp_path: Path) -> None:
    pid_file = tmp_path / "running.pid"
    futures: list[Future[Any]] = []

    # The timeout leaves room for a worker to spawn on a loaded machine: the point is what
    # happens to a task still running at the deadline.
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1), timeout_seconds=4)
    def overrunning() -> None:
        running = report_pid_then_sleep.submit(str(pid_file), SAFETY)
        assert isinstance(running, Future)
        futures.append(running)
        _wait_for_pid(pid_file)
        time.sleep(SAFETY)

    started = time.monotonic()
    state = _final_state(overrunning)
    elapsed = time.monotonic() - started
    assert state.name == "TimedOut"
    [running] = futures
    assert running.done()
    assert running.state.type is StateType.CRASHED
    assert _gone(int(pid_file.read_text()))
    assert elapsed < 15  # generous: the 4 s timeout, not the task's own SAFETY-long sleep


def test_runs_queued_behind_a_run_whose_worker_dies_run_on_its_replacement(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "victim.pid"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def queued_behind() -> tuple[State[Any], int, list[State[Any]], int]:
        runner: Any = FlowRunContext.get().task_runner  # type: ignore[union-attr]
        pool = runner._pool  # white box: the pool queues runs only behind known-short ones
        for _ in range(1000):  # a loaded machine may need a few runs to look short
            warm_pid = pid_after.submit(0.0).result()
            if min(pool._recent.values(), default=1.0) < _QUEUE_AHEAD / 2:
                break
        else:
            pytest.fail("pid_after(0.0) never ran in under _QUEUE_AHEAD / 2 seconds")
        victim = pid_after.submit(SAFETY, str(pid_file))
        queued = [pid_after.submit(0.0) for _ in range(3)]
        pid = _wait_for_pid(pid_file)
        deadline = time.monotonic() + SAFETY
        while sum(len(worker.jobs) for worker in pool._workers) < 2:
            assert time.monotonic() < deadline, "no run was queued behind the victim"
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        return _settled(victim), pid, [_settled(future) for future in queued], warm_pid

    crashed, pid, queued, warm_pid = queued_behind()
    assert pid == warm_pid
    assert crashed.type is StateType.CRASHED
    assert "SIGKILL" in (crashed.message or "")
    # The queued runs never started on the dead worker: they ran once, on its replacement.
    assert [state.type for state in queued] == [StateType.COMPLETED] * 3
    replacement = {state.result() for state in queued}
    assert len(replacement) == 1
    assert pid not in replacement


# --------------------------------------------------------------------------------------------
# Values that cannot cross
# --------------------------------------------------------------------------------------------


def test_task_that_cannot_be_unpickled_in_the_worker_fails_its_runs_only() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def unloadable() -> tuple[State[Any], State[Any], int]:
        first = _settled(unloadable_in_workers.submit())
        second = _settled(unloadable_in_workers.submit())
        return first, second, takes_anything.submit(None, 6).result()

    first, second, after = unloadable()
    for state in (first, second):
        assert state.type is StateType.FAILED
        exc = _exception(state)
        assert isinstance(exc, SerializationError)
        assert "cannot be rebuilt in a worker" in str(exc)
    assert after == 6


def test_unpicklable_argument_fails_naming_task_and_parameter() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def unpicklable() -> tuple[State[Any], State[Any], int]:
        direct = takes_anything.submit(threading.Lock(), 1)
        nested = takes_anything.submit({"inner": [threading.Lock()]}, 2)
        return _settled(direct), _settled(nested), takes_anything.submit("fine", 3).result()

    direct, nested, after = unpicklable()
    for state in (direct, nested):
        assert state.type is StateType.FAILED
        exc = _exception(state)
        assert isinstance(exc, SerializationError)
        assert "'takes_anything'" in str(exc)
        assert "'value'" in str(exc)
        with pytest.raises(SerializationError):
            state.result()
    assert after == 3


def test_unpicklable_return_value_fails_with_serialization_error() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def returns() -> tuple[State[Any], int]:
        return _settled(returns_a_lock.submit()), takes_anything.submit(None, 4).result()

    state, after = returns()
    assert state.type is StateType.FAILED
    exc = _exception(state)
    assert isinstance(exc, SerializationError)
    assert "return value" in str(exc)
    assert "lock" in str(exc)
    assert after == 4


def test_unpicklable_return_value_error_names_the_task() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def returns() -> tuple[State[Any], str]:
        future = returns_a_lock.submit()
        assert isinstance(future, Future)
        return _settled(future), future.task_run.name

    state, run_name = returns()
    message = str(_exception(state))
    assert "returns_a_lock" in message or run_name in message


def test_unpicklable_exception_fails_with_the_remote_traceback() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def raises() -> dict[str, State[Any]]:
        # In a dict: a flow that returns a failed state directly is judged failed by it.
        return {"state": _settled(raises_unpicklable.submit())}

    state = raises()["state"]
    assert state.type is StateType.FAILED
    exc = _exception(state)
    assert isinstance(exc, SerializationError)
    assert "HoldsALock" in str(exc)
    assert "raises_unpicklable" in str(exc)  # the remote traceback text came back


def test_exception_that_cannot_be_unpickled_fails_with_the_remote_traceback() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def raises() -> dict[str, State[Any]]:
        return {"state": _settled(raises_unloadable.submit())}

    state = raises()["state"]
    assert state.type is StateType.FAILED, state
    exc = _exception(state)
    assert isinstance(exc, SerializationError)
    assert "NeedsTwoArguments" in str(exc)
    assert "cannot come back" in str(exc)


# --------------------------------------------------------------------------------------------
# What crosses to workers
# --------------------------------------------------------------------------------------------


def test_tasks_run_in_worker_processes_in_parallel() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def parallel() -> list[int]:
        return [future.result() for future in worker_pid.map([0.5, 0.5])]

    pids = parallel()
    assert os.getpid() not in pids
    assert len(set(pids)) == 2


def test_settings_of_the_flow_process_reach_the_worker(tmp_path: Path) -> None:
    storage = tmp_path / "default-storage"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def configured() -> tuple[dict[str, Any], int]:
        return worker_settings.submit().result(), persisted.submit(21).result()

    with temporary_settings(
        results_default_serializer="json",
        results_default_storage=str(storage),
        results_persist_by_default=True,
    ):
        seen, value = configured()
    assert seen["pid"] != os.getpid()
    assert seen["serializer"] == "json"
    assert seen["storage"] == str(storage)
    assert seen["persist"] is True
    assert value == 42
    assert (storage / "from-worker-21").exists()  # written by the worker, where settings said

    default_seen, _ = configured()
    assert default_seen["serializer"] == "pickle"


def test_cache_hits_across_separate_flows_on_local_storage(tmp_path: Path) -> None:
    stored = stamped.with_options(result_storage=str(tmp_path / "results"))

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def cached(key: str) -> tuple[str, Any]:
        state = _settled(stored.submit(key))
        return state.name, state.result()

    first_name, first_value = cached("alpha")
    second_name, second_value = cached("alpha")
    other_name, _ = cached("beta")
    assert first_name == "Completed"
    assert first_value[0] != os.getpid()
    assert (second_name, tuple(second_value)) == ("Cached", tuple(first_value))
    assert other_name == "Completed"


def test_normal_flow_exit_waits_for_every_run_and_cancels_nothing(tmp_path: Path) -> None:
    futures: list[Future[Any]] = []

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def fire_and_forget() -> None:
        slow = mark.submit(str(tmp_path), "slow", 0.5)
        after_slow = mark.submit(str(tmp_path), "after-slow", 0.0, wait_for=[slow])
        chained = mark.submit(str(tmp_path), "chained", 0.0, wait_for=[after_slow])
        queued = mark.map(unmapped(str(tmp_path)), ["q1", "q2", "q3"], 0.1)
        for future in [slow, after_slow, chained, *queued]:
            assert isinstance(future, Future)
            futures.append(future)

    assert _final_state(fire_and_forget).is_completed()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["slow", "after-slow", "chained", "q1", "q2", "q3"]
    )
    assert [future.state.name for future in futures] == ["Completed"] * 6


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_forkserver_workers_run_tasks() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1, mp_context="forkserver"))
    def forked() -> tuple[int, int]:
        return worker_pid.submit().result(), takes_anything.submit(None, 5).result()

    pid, value = forked()
    assert pid != os.getpid()
    assert value == 5


def test_runner_configuration_survives_duplicate_and_pickling() -> None:
    runner = ProcessPoolTaskRunner(max_workers=3, mp_context="forkserver")
    for copy in (runner.duplicate(), pickle.loads(pickle.dumps(runner))):
        assert isinstance(copy, ProcessPoolTaskRunner)
        assert (copy.max_workers, copy.mp_context) == (3, "forkserver")
    with pytest.raises(ValueError, match="max_workers"):
        ProcessPoolTaskRunner(max_workers=0)
    with pytest.raises(ValueError, match="'spawn', 'forkserver'"):
        ProcessPoolTaskRunner(mp_context="fork")


@flow(task_runner=ProcessPoolTaskRunner())
def pool_size() -> tuple[int, set[int]]:
    runner: Any = FlowRunContext.get().task_runner  # type: ignore[union-attr]
    return runner.size, {future.result() for future in pid_after.map([0.0] * 3)}


def test_pool_size_defaults_to_the_cpu_count() -> None:
    size, pids = pool_size()
    assert size == (os.cpu_count() or 1)
    assert os.getpid() not in pids


def test_pool_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUVIAL_PROCESS_POOL_MAX_WORKERS", "1")
    reload_settings()
    size, pids = pool_size()
    assert size == 1
    assert len(pids) == 1  # three runs, one worker


def test_pool_size_from_the_active_profile(isolated_fluvial_home: Path) -> None:
    isolated_fluvial_home.mkdir(parents=True, exist_ok=True)
    (isolated_fluvial_home / "profiles.toml").write_text(
        'active = "small"\n[profiles.small]\nFLUVIAL_PROCESS_POOL_MAX_WORKERS = 3\n'
    )
    reload_settings()
    assert pool_size()[0] == 3
    with temporary_settings(process_pool_max_workers=2):
        assert pool_size()[0] == 2
    explicit = pool_size.with_options(task_runner=ProcessPoolTaskRunner(max_workers=1))
    assert explicit()[0] == 1  # an explicit max_workers wins over the setting


def test_invalid_pool_size_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUVIAL_PROCESS_POOL_MAX_WORKERS", "0")
    with pytest.raises(ConfigurationError, match="FLUVIAL_PROCESS_POOL_MAX_WORKERS='0'"):
        reload_settings()
