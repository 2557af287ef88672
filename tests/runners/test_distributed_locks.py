"""DaskLockManager and RayLockManager on real clusters: the session's Dask LocalCluster, the Dask
scheduler and worker started with the CLI (reached by address), and the session's local Ray.

Each test runs once per cluster. Locks are taken both in this process and inside tasks on the
workers, where the manager arrives pickled as a task argument or inside a cache policy. Workers
share no memory with this process, so executions are counted with one marker file each in a
temporary directory. Tasks are pickled by value (the workers cannot import the tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from fluvial import flow, task
from fluvial.cache_policies import INPUTS
from fluvial.exceptions import ConfigurationError
from fluvial.futures import Future
from fluvial.runners import DaskTaskRunner, RayTaskRunner, TaskRunner
from fluvial.states import State, StateType
from fluvial.storage import DaskLockManager, LockManager, RayLockManager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SAFETY = 60.0  # seconds: only reached when something is broken


@dataclasses.dataclass
class Cluster:
    name: str
    manager: LockManager
    runner: Callable[[], TaskRunner]


@pytest.fixture(params=["dask", "dask-cli", "ray"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A lock manager for one cluster (a fresh lock table on Ray) and a runner on it."""
    if request.param == "ray":
        import ray

        request.getfixturevalue("ray_session")
        name = f"fluvial-test-locks-{uuid.uuid4().hex[:8]}"
        yield Cluster("ray", RayLockManager("fluvial-tests", name), RayTaskRunner)
        try:
            ray.kill(ray.get_actor(name, namespace="fluvial-tests"))
        except ValueError:  # it retired already
            pass
        return
    target = request.getfixturevalue("dask_cluster" if request.param == "dask" else "cli_cluster")
    address = target if isinstance(target, str) else target.scheduler_address
    manager = DaskLockManager(address)
    yield Cluster(request.param, manager, lambda: DaskTaskRunner(address=address))
    manager.close()


# --- tasks (module level, pickled by value) ----------------------------------------------------


@task(persist_result=False)
def take(
    manager: LockManager,
    key: str,
    holder: str,
    acquire_timeout: float | None = None,
    hold_timeout: float | None = None,
) -> bool:
    return manager.acquire_lock(key, holder, acquire_timeout, hold_timeout)


@task(persist_result=False)
def probe(manager: LockManager, key: str, holder: str) -> tuple[bool, bool]:
    return manager.is_locked(key), manager.is_lock_holder(key, holder)


@task(persist_result=False)
def give_back(manager: LockManager, key: str, holder: str) -> None:
    manager.release_lock(key, holder)


@task(persist_result=False)
def take_and_die(manager: LockManager, key: str, holder: str) -> None:
    assert manager.acquire_lock(key, holder)
    os._exit(1)  # a holder that never releases: its worker process is gone


@task
def expensive(key: str, markers: str) -> str:
    Path(markers, uuid.uuid4().hex).touch()  # one file per execution, on any worker
    time.sleep(0.5)
    return uuid.uuid4().hex


def _submit(task_: Any, *args: Any, **kwargs: Any) -> Future[Any]:
    future = task_.submit(*args, **kwargs)
    assert isinstance(future, Future)
    return future


def _settled(future: Future[Any]) -> State[Any]:
    future.wait(SAFETY)
    assert future.done(), f"{future!r} did not finish within {SAFETY:g}s"
    return future.state


def _key() -> str:
    return f"test-{uuid.uuid4().hex}"


# --- the lock API, from this process ----------------------------------------------------------


def test_acquire_release_and_holders(cluster: Cluster) -> None:
    locks, key = cluster.manager, _key()
    assert not locks.is_locked(key)
    assert locks.acquire_lock(key, "a")
    assert locks.is_locked(key)
    assert locks.is_lock_holder(key, "a")
    assert not locks.is_lock_holder(key, "b")
    assert locks.acquire_lock(key, "a", acquire_timeout=0)  # a holder may take it again

    started = time.monotonic()
    assert not locks.acquire_lock(key, "b", acquire_timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 10
    assert not locks.wait_for_lock(key, timeout=0.2)
    with pytest.raises(ConfigurationError, match="does not hold"):
        locks.release_lock(key, "b")
    assert locks.is_lock_holder(key, "a")  # a refused release changes nothing

    locks.release_lock(key, "a")
    assert not locks.is_locked(key)
    assert locks.wait_for_lock(key, timeout=0)
    with pytest.raises(ValueError, match="does not hold"):  # as Prefect's
        locks.release_lock(key, "a")
    assert locks.acquire_lock(key, "b", acquire_timeout=0)
    locks.release_lock(key, "b")


def test_async_twins(cluster: Cluster) -> None:
    locks, key = cluster.manager, _key()

    async def main() -> tuple[bool, bool, bool, bool]:
        first = await locks.aacquire_lock(key, "a")
        blocked = await locks.aacquire_lock(key, "b", acquire_timeout=0.2)
        waited = await locks.await_for_lock(key, timeout=0.2)
        locks.release_lock(key, "a")
        return first, blocked, waited, await locks.await_for_lock(key, timeout=5)

    assert asyncio.run(main()) == (True, False, False, True)


def test_a_released_lock_goes_to_a_waiting_acquirer(cluster: Cluster) -> None:
    locks, key = cluster.manager, _key()
    assert locks.acquire_lock(key, "first")

    @flow(task_runner=cluster.runner())
    def waiting() -> tuple[State[Any], float]:
        waiter = _submit(take, locks, key, "second", acquire_timeout=SAFETY)
        time.sleep(0.5)  # the waiter is waiting on the cluster by now
        assert not waiter.done()
        released = time.monotonic()
        locks.release_lock(key, "first")
        state = _settled(waiter)
        return state, time.monotonic() - released

    state, latency = waiting()
    assert state.result() is True
    assert latency < 10
    assert locks.is_lock_holder(key, "second")
    locks.release_lock(key, "second")


def test_pickles_to_its_settings_only(cluster: Cluster) -> None:
    locks = cluster.manager
    locks.is_locked(_key())  # connected here: the connection must not travel
    copy = pickle.loads(pickle.dumps(locks))
    assert copy == locks
    assert hash(copy) == hash(locks)
    assert len(pickle.dumps(locks)) < 300
    assert type(copy).__name__ in repr(copy)


# --- across processes ---------------------------------------------------------------------------


def test_a_manager_pickled_to_a_worker_shares_the_locks(cluster: Cluster) -> None:
    locks, key, other = cluster.manager, _key(), _key()
    assert locks.acquire_lock(other, "here")

    @flow(task_runner=cluster.runner())
    def sharing() -> tuple[Any, ...]:
        taken = _submit(take, locks, key, "on-a-worker").result()
        seen_here = (locks.is_locked(key), locks.is_lock_holder(key, "on-a-worker"))
        refused = _submit(take, locks, key, "another", acquire_timeout=0.2).result()
        seen_there = _submit(probe, locks, other, "here").result()
        _submit(give_back, locks, key, "on-a-worker").result()
        after = locks.is_locked(key)
        return taken, seen_here, refused, seen_there, after

    taken, seen_here, refused, seen_there, after = sharing()
    assert taken is True
    assert seen_here == (True, True)
    assert refused is False
    assert seen_there == (True, True)
    assert after is False
    locks.release_lock(other, "here")


def test_serializable_tasks_on_the_cluster_execute_once(cluster: Cluster, tmp_path: Path) -> None:
    """N runs of one key under SERIALIZABLE: one executes, the others read its result."""
    markers = tmp_path / "executions"
    markers.mkdir()
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=cluster.manager)
    locked = expensive.with_options(cache_policy=policy, result_storage=str(tmp_path / "results"))
    key = _key()

    @flow(task_runner=cluster.runner())
    def contended() -> list[tuple[str, Any]]:
        futures = [_submit(locked, key, str(markers)) for _ in range(6)]
        return [(_settled(future).name, future.result()) for future in futures]

    outcomes = contended()
    assert len(list(markers.iterdir())) == 1, outcomes
    assert len({value for _, value in outcomes}) == 1, outcomes
    assert sorted(name for name, _ in outcomes) == ["Cached"] * 5 + ["Completed"], outcomes
    assert not cluster.manager.is_locked(key)


# --- holders that never release -----------------------------------------------------------------


def test_an_expired_hold_does_not_block(cluster: Cluster) -> None:
    locks, key = cluster.manager, _key()
    assert locks.acquire_lock(key, "gone", hold_timeout=0.5)
    assert not locks.acquire_lock(key, "next", acquire_timeout=0)
    started = time.monotonic()
    assert locks.acquire_lock(key, "next", acquire_timeout=SAFETY)
    assert 0.2 < time.monotonic() - started < 10
    locks.release_lock(key, "next")

    other = _key()

    @flow(task_runner=cluster.runner())
    def abandoned() -> tuple[bool, bool, float]:
        # A worker takes the lock for 0.5 s and never releases it.
        first = _submit(take, locks, other, "ghost", hold_timeout=0.5).result()
        started = time.monotonic()
        later = _submit(take, locks, other, "later", acquire_timeout=SAFETY).result()
        return first, later, time.monotonic() - started

    first, later, waited = abandoned()
    assert first is True
    assert later is True
    assert waited < 15
    assert locks.is_lock_holder(other, "later")
    with pytest.raises(ConfigurationError):
        locks.release_lock(other, "ghost")  # its hold lapsed
    locks.release_lock(other, "later")


def test_a_holder_whose_worker_died_does_not_block(cluster: Cluster) -> None:
    """No hold timeout at all: the hold lapses because the holder's process is gone."""
    locks, key = cluster.manager, _key()

    @flow(task_runner=cluster.runner())
    def dying() -> StateType:
        return _settled(_submit(take_and_die, locks, key, "doomed")).type

    assert dying() is StateType.CRASHED
    started = time.monotonic()
    assert locks.acquire_lock(key, "survivor", acquire_timeout=SAFETY)
    assert time.monotonic() - started < 20
    assert not locks.is_lock_holder(key, "doomed")
    locks.release_lock(key, "survivor")


# --- backend specifics -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_dask_unreachable_address_fails_fast_naming_it() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=address):
        DaskLockManager(address).is_locked("k")
    assert time.monotonic() - started < 30


def test_dask_without_address_uses_the_flow_runs_client(dask_cluster: Any) -> None:
    locks, key = DaskLockManager(), _key()
    with pytest.raises(ConfigurationError, match="address"):
        locks.is_locked(key)

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def here_and_there() -> tuple[bool, tuple[bool, bool]]:
        taken = locks.acquire_lock(key, "flow")
        seen = _submit(probe, locks, key, "flow").result()
        locks.release_lock(key, "flow")
        return taken, seen

    assert here_and_there() == (True, (True, True))


@pytest.mark.usefixtures("ray_session")
def test_ray_lock_actor_retires_when_idle_and_comes_back() -> None:
    import ray

    name = f"fluvial-test-idle-{uuid.uuid4().hex[:8]}"
    locks, key = RayLockManager("fluvial-tests", name, idle_timeout=0.5), _key()
    assert locks.acquire_lock(key, "a")
    time.sleep(1.5)
    ray.get_actor(name, namespace="fluvial-tests")  # a held lock keeps it alive
    locks.release_lock(key, "a")
    deadline = time.monotonic() + SAFETY
    while True:
        try:
            ray.get_actor(name, namespace="fluvial-tests")
        except ValueError:
            break  # retired
        assert time.monotonic() < deadline, "the idle lock actor did not retire"
        time.sleep(0.2)
    assert not locks.is_locked(key)  # a new actor, made on demand
    assert locks.acquire_lock(key, "b", acquire_timeout=0)
    locks.release_lock(key, "b")
    ray.kill(ray.get_actor(name, namespace="fluvial-tests"))


def test_ray_lock_manager_needs_ray_initialized() -> None:
    code = (
        "from fluvial.storage import RayLockManager\n"
        "try:\n"
        "    RayLockManager().is_locked('k')\n"
        "except ValueError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("ConfigurationError"), out
    assert "ray.init" in out.stdout
