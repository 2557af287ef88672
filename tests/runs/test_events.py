"""Run listeners: what they receive, from which runners, and that they cost nothing when gone."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fluvial import _runs, flow, task
from fluvial.runners import ProcessPoolTaskRunner
from fluvial.runs import RunEvent, add_listener


@task
def double(x: int) -> int:
    return 2 * x


@flow
def doubles(n: int) -> list[int]:
    return [future.result() for future in [double.submit(i) for i in range(n)]]


@flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
def doubles_in_processes(n: int) -> list[int]:
    return [future.result() for future in [double.submit(i) for i in range(n)]]


@pytest.fixture
def events() -> Iterator[list[RunEvent]]:
    seen: list[RunEvent] = []
    lock = threading.Lock()

    def listen(event: RunEvent) -> None:
        with lock:
            seen.append(event)

    remove = add_listener(listen)
    try:
        yield seen
    finally:
        remove()


def test_flow_and_task_state_changes_reach_listeners(events: list[RunEvent]) -> None:
    state = doubles(3, return_state=True)
    flow_events = [e for e in events if e.kind == "flow"]
    assert [e.state.name for e in flow_events] == ["Pending", "Running", "Completed"]
    flow_run_id = state.state_details.flow_run_id
    assert {e.run_id for e in flow_events} == {flow_run_id}
    task_events = [e for e in events if e.kind == "task"]
    assert len({e.run_id for e in task_events}) == 3
    assert all(e.flow_run_id == flow_run_id for e in task_events)
    for run_id in {e.run_id for e in task_events}:
        names = [e.state.name for e in task_events if e.run_id == run_id]
        assert names == ["Pending", "Running", "Completed"]
    assert all(e.name.startswith("double-") for e in task_events)
    timestamps = [e.timestamp for e in flow_events]
    assert timestamps == sorted(timestamps)
    assert timestamps[0].tzinfo is not None


def test_states_from_process_workers_reach_listeners(events: list[RunEvent]) -> None:
    assert doubles_in_processes(2) == [0, 2]
    task_events = [e for e in events if e.kind == "task"]
    finals = [e for e in task_events if e.state.is_final()]
    assert len(finals) == 2
    assert all(e.state.is_completed() for e in finals)
    assert {e.run_id for e in finals} == {e.run_id for e in task_events}


def test_a_dask_worker_in_this_process_does_not_report_runs_twice(
    events: list[RunEvent],
) -> None:
    import distributed

    from fluvial.runners import DaskTaskRunner

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster:
        on_dask = doubles.with_options(
            task_runner=DaskTaskRunner(address=cluster.scheduler_address)
        )
        assert on_dask(3) == [0, 2, 4]
    finals = [e for e in events if e.kind == "task" and e.state.is_final()]
    assert len(finals) == 3
    assert len({e.run_id for e in finals}) == 3


def test_a_failing_listener_is_logged_and_the_flow_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: RunEvent) -> None:
        raise RuntimeError("listener bug")

    remove = add_listener(broken)
    try:
        assert doubles(1) == [0]
    finally:
        remove()
    assert "raised; ignored" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_the_engine_hook_is_off_when_nobody_listens(tmp_path: Any) -> None:
    assert _runs._observer is None
    first = add_listener(lambda event: None)
    second = add_listener(lambda event: None)
    assert _runs._observer is not None
    first()
    first()  # removing twice is harmless
    assert _runs._observer is not None
    second()
    assert _runs._observer is None

    @flow(result_storage=tmp_path)
    def journaled() -> int:
        assert _runs._observer is not None  # the journal listens while the run lasts
        return double(1)

    assert journaled() == 2
    assert _runs._observer is None
