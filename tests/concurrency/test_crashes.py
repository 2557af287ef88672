"""A holder killed mid-slot frees its slot: at once on one machine, after its lease on clusters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fluvial import flow, task
from fluvial.concurrency import create_limit, create_tag_limit, read_limit
from fluvial.concurrency._select import file_backend, use_backend
from fluvial.concurrency.sync import concurrency
from fluvial.exceptions import AcquireConcurrencySlotTimeoutError
from fluvial.runners import ProcessPoolTaskRunner, TaskRunner
from fluvial.states import StateType

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from fluvial.concurrency import create_limit
    from fluvial.concurrency._select import file_backend, use_backend
    from fluvial.concurrency.sync import concurrency

    create_limit("x", 1)
    with use_backend(file_backend()), concurrency("x"):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_killed_process_frees_its_file_lease(isolated_fluvial_home: Path) -> None:
    create_limit("x", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER],
        stdout=subprocess.PIPE,
        env={**os.environ, "FLUVIAL_HOME": str(isolated_fluvial_home)},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        with use_backend(file_backend()):
            with (
                pytest.raises(AcquireConcurrencySlotTimeoutError),
                concurrency("x", timeout_seconds=0.3),
            ):
                pass
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
            started = time.monotonic()
            with concurrency("x", timeout_seconds=30):
                assert read_limit("x").active_slots == 1
            assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait(timeout=10)


@task(tags=["db"])
def die() -> None:
    os._exit(3)


@task(tags=["db"])
def survive() -> str:
    return "ran"


def test_a_crashed_process_worker_frees_its_tag_slot() -> None:
    create_tag_limit("db", 1)

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline() -> tuple[StateType, str]:
        crashed = die.submit()
        crashed.wait()
        return crashed.state.type, survive.submit().result(timeout=60)

    assert pipeline() == (StateType.CRASHED, "ran")


@task
def hold_and_die(lease: float, marker: str) -> None:
    with concurrency("x", lease_duration=lease, strict=True):
        Path(marker).touch()
        time.sleep(1.0)
        os._exit(3)


def _killed_holder_lapses(runner: TaskRunner, marker: Path, freed_at_once: bool) -> None:
    create_limit("x", 1)

    @flow(task_runner=runner)
    def pipeline() -> tuple[StateType, float, float]:
        crashed = hold_and_die.submit(5.0, str(marker))
        while not marker.exists() and not crashed.done():
            time.sleep(0.02)
        # The worker holds the slot: nobody else gets it.
        with (
            pytest.raises(AcquireConcurrencySlotTimeoutError),
            concurrency("x", timeout_seconds=0.2),
        ):
            pass
        crashed.wait()
        held = read_limit("x").active_slots  # 1 while the dead holder's lease runs
        started = time.monotonic()
        with concurrency("x", timeout_seconds=60, strict=True):
            waited = time.monotonic() - started
        return crashed.state.type, held, waited

    state, held, waited = pipeline()
    assert state is StateType.CRASHED
    assert held == (0 if freed_at_once else 1)
    assert waited < 60


@pytest.mark.slow
def test_a_killed_dask_worker_frees_its_slot(dask_cluster: object, tmp_path: Path) -> None:
    from fluvial.runners import DaskTaskRunner

    # The scheduler no longer lists the worker: its slot is free without waiting for the lease.
    runner = DaskTaskRunner(address=dask_cluster.scheduler_address)  # type: ignore[attr-defined]
    _killed_holder_lapses(runner, tmp_path / "held", True)


@pytest.mark.slow
def test_a_killed_ray_worker_lease_lapses(ray_session: None, tmp_path: Path) -> None:
    from fluvial.runners import RayTaskRunner

    _killed_holder_lapses(RayTaskRunner(), tmp_path / "held", False)


@task(tags=["gpu"])
def die_holding_a_tag_slot(marker: str) -> None:
    Path(marker).touch()
    time.sleep(1.0)
    os._exit(3)


@pytest.mark.slow
def test_a_killed_dask_worker_frees_its_tag_slot_before_the_lease(
    dask_cluster: object, tmp_path: Path
) -> None:
    from fluvial.runners import DaskTaskRunner

    create_tag_limit("gpu", 1)
    marker = tmp_path / "held"

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # type: ignore[attr-defined]
    def pipeline() -> StateType:
        crashed = die_holding_a_tag_slot.submit(str(marker))
        while not marker.exists() and not crashed.done():
            time.sleep(0.02)
        with (
            pytest.raises(AcquireConcurrencySlotTimeoutError),
            concurrency("tag:gpu", timeout_seconds=0.2),
        ):
            pass
        crashed.wait()
        # The tag lease lasts 60 s; the scheduler's word that the worker is gone is enough.
        with concurrency("tag:gpu", timeout_seconds=45, strict=True):
            pass
        return crashed.state.type

    assert pipeline() is StateType.CRASHED
