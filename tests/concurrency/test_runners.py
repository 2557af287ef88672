"""Tag limits and concurrency() on every runner: never more than k at once, and all finish.

Each task records when its limited section started and ended (wall clock, shared by the
processes of this machine and the local clusters); the observed peak overlap must not exceed
the limit.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fluvial import flow, task
from fluvial.concurrency import create_limit, create_tag_limit
from fluvial.concurrency.sync import concurrency, rate_limit
from fluvial.runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from .conftest import max_overlap

K = 2
N = 8


@task(tags=["db"])
def tagged(i: int) -> tuple[float, float]:
    start = time.time()
    time.sleep(0.15)
    return start, time.time()


@task
def global_limited(i: int) -> tuple[float, float]:
    with concurrency("gpu", occupy=1, timeout_seconds=120, strict=True):
        start = time.time()
        time.sleep(0.15)
        return start, time.time()


@task
def rate_limited(i: int) -> tuple[float, float]:
    rate_limit("api", timeout_seconds=120, strict=True)
    now = time.time()
    return now, now


def _thread(request: pytest.FixtureRequest) -> TaskRunner:
    return ThreadPoolTaskRunner(max_workers=6)


def _process(request: pytest.FixtureRequest) -> TaskRunner:
    return ProcessPoolTaskRunner(max_workers=4)


def _dask(request: pytest.FixtureRequest) -> TaskRunner:
    from fluvial.runners import DaskTaskRunner

    cluster = request.getfixturevalue("dask_cluster")
    return DaskTaskRunner(address=cluster.scheduler_address)


def _ray(request: pytest.FixtureRequest) -> TaskRunner:
    from fluvial.runners import RayTaskRunner

    request.getfixturevalue("ray_session")
    return RayTaskRunner()


@pytest.fixture(
    params=[
        pytest.param(_thread, id="thread"),
        pytest.param(_process, id="process"),
        pytest.param(_dask, id="dask", marks=pytest.mark.slow),
        pytest.param(_ray, id="ray", marks=pytest.mark.slow),
    ]
)
def runner(request: pytest.FixtureRequest) -> TaskRunner:
    maker: Any = request.param
    result: TaskRunner = maker(request)
    return result


def _spans(runner: TaskRunner, fn: Any) -> list[tuple[float, float]]:
    @flow(task_runner=runner)
    def fan_out() -> list[tuple[float, float]]:
        return [future.result(timeout=120) for future in fn.map(range(N))]

    spans: list[tuple[float, float]] = fan_out()
    return spans


def test_tag_limit_caps_overlap(runner: TaskRunner) -> None:
    create_tag_limit("db", K)
    spans = _spans(runner, tagged)
    assert len(spans) == N
    assert max_overlap(spans) <= K


def test_global_limit_caps_overlap(runner: TaskRunner) -> None:
    create_limit("gpu", K)
    spans = _spans(runner, global_limited)
    assert len(spans) == N
    assert max_overlap(spans) <= K


def test_thread_runner_actually_overlaps_without_a_limit() -> None:
    # The check above can fail: without the limit the same tasks do overlap.
    spans = _spans(ThreadPoolTaskRunner(max_workers=6), tagged)
    assert max_overlap(spans) > K


def test_rate_limit_holds_across_workers(runner: TaskRunner) -> None:
    create_limit("api", 1, slot_decay_per_second=10)
    starts = sorted(start for start, _ in _spans(runner, rate_limited))
    assert len(starts) == N
    # One at once, then 10 per second: N starts span at least (N - 1) / 10 s (less a margin).
    assert starts[-1] - starts[0] >= (N - 1) / 10 - 0.05
