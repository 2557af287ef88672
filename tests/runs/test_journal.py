"""The run journal: its files, write failures, corrupt files, listing and deleting runs."""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from fluvial import flow, task
from fluvial.exceptions import CorruptRunJournal, RunNotFound
from fluvial.runs import JOURNAL_PREFIX, delete_run, list_runs, read_run
from fluvial.settings import reload_settings, temporary_settings
from fluvial.storage import ResultStore, get_serializer


@task
def inc(x: int) -> int:
    return x + 1


@task
def boom(x: int) -> int:
    raise ValueError(f"no {x}")


def make_flow(storage: Any, name: str = "numbers", serializer: str | None = None) -> Any:
    @flow(name=name, result_storage=storage, result_serializer=serializer)
    def numbers(n: int, label: str = "x") -> int:
        return sum(inc(i) for i in range(n))

    return numbers


def _memory_url() -> str:
    return f"memory://journal-{uuid.uuid4().hex}"


def _files(url: str) -> dict[str, Any]:
    fs, root = fsspec.core.url_to_fs(url)
    return {
        path[len(root) :].lstrip("/"): orjson.loads(fs.cat_file(path))
        for path in fs.find(f"{root}/{JOURNAL_PREFIX}")
    }


def test_files_are_versioned_json_with_what_resume_needs() -> None:
    url = _memory_url()
    state = make_flow(url)(3, label="hello", return_state=True)
    run_id = state.state_details.flow_run_id
    files = _files(url)
    run = files[f"runs/{run_id}/run.json"]
    assert run["version"] == 1
    assert run["id"] == str(run_id)
    assert run["flow_name"] == "numbers"
    assert run["import_path"] == f"{__name__}:make_flow.<locals>.numbers"
    assert run["state"] == "COMPLETED"
    assert [name for name, _ in run["history"]] == ["Pending", "Running", "Completed"]
    assert run["task_counts"] == {"Completed": 3}
    assert run["result"]["url"].startswith(url.replace("memory://", "memory:///"))
    encoded = run["parameters"]
    assert encoded["serializer"] == "pickle"
    values = get_serializer("pickle").loads(base64.b64decode(encoded["data"]))
    assert values == {"n": 3, "label": "hello"}
    assert run["parameters_preview"] == {"n": "3", "label": "'hello'"}
    segments = [data for key, data in files.items() if "/tasks/" in key]
    assert segments
    assert all(seg["version"] == 1 and seg["attempt"] == 1 for seg in segments)
    entries = [entry for seg in segments for entry in seg["task_runs"]]
    assert {entry["state_name"] for entry in entries} == {"Completed"}
    assert all(entry["cache_key"] and entry["result_ref"] for entry in entries)


def test_parameters_use_the_flows_serializer() -> None:
    url = _memory_url()
    make_flow(url, serializer="json")(2, label="j")
    (run,) = list_runs(url)
    data = _files(url)[f"runs/{run.id}/run.json"]["parameters"]
    assert data["serializer"] == "json"
    assert orjson.loads(base64.b64decode(data["data"])) == {"n": 2, "label": "j"}
    assert run.parameters == {"n": 2, "label": "j"}


def test_read_run_gives_typed_records() -> None:
    url = _memory_url()

    @flow(result_storage=url)
    def mixed() -> Any:
        inc(1)
        return boom.submit(2)

    state = mixed(return_state=True)
    record = read_run(state.state_details.flow_run_id, url)
    assert record.state == "FAILED"
    assert record.storage == url.replace("memory://", "memory:///")
    assert record.duration is not None
    assert record.task_runs is not None
    by_task = {t.task_name: t for t in record.task_runs}
    assert by_task["inc"].state_name == "Completed"
    assert by_task["inc"].attempts == 1
    assert by_task["inc"].duration is not None
    assert by_task["boom"].state == "FAILED"
    assert by_task["boom"].error == "ValueError: no 2"
    assert by_task["boom"].result_ref is None


def test_unserializable_parameters_are_noted_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    url = _memory_url()

    @flow(result_storage=url, validate_parameters=False)
    def takes_lock(lock: Any) -> int:
        return inc(1)

    assert takes_lock(threading.Lock()) == 2
    (record,) = list_runs(url)
    assert record.parameters_error is not None
    assert "lock" in record.parameters  # the preview stands in for the value
    assert "cannot be serialized" in caplog.text


def test_no_journal_without_persistence(tmp_path: Path) -> None:
    @flow
    def plain() -> int:
        return inc(1)

    assert plain() == 2
    assert list_runs(tmp_path / "nothing") == []
    assert list_runs() == []  # the default storage has no runs either


def test_the_results_journal_setting_turns_recording_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _memory_url()
    numbers = make_flow(url)
    with temporary_settings(results_journal=False):
        assert numbers(3) == 6
    assert list_runs(url) == []  # the results are there, the runs are not recorded
    assert fsspec.filesystem("memory").ls(url.removeprefix("memory://")) != []
    monkeypatch.setenv("FLUVIAL_RESULTS_JOURNAL", "false")
    reload_settings()  # the environment is read once, as documented
    try:
        assert numbers(2) == 3
        assert list_runs(url) == []
    finally:
        monkeypatch.delenv("FLUVIAL_RESULTS_JOURNAL")
        reload_settings()
    assert numbers(1) == 1
    assert len(list_runs(url)) == 1  # on by default


class _FailingRunsFS(MemoryFileSystem):
    """memory:// where every write under runs/ fails, as a full or read-only disk would."""

    protocol = "failruns"

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        if "/runs/" in path:
            raise PermissionError(f"no writes to {path}")
        super().pipe_file(path, value, *args, **kwargs)


def test_journal_write_failures_never_fail_the_flow(caplog: pytest.LogCaptureFixture) -> None:
    store = ResultStore(_FailingRunsFS(skip_instance_cache=True), serializer="pickle")
    caplog.set_level(logging.DEBUG, logger="fluvial.runs")
    numbers = make_flow(store)
    assert numbers(4) == 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per run, then at debug level
    assert "could not write the run journal" in warnings[0].getMessage()
    assert list_runs(store) == []


def test_corrupt_run_file_is_a_clear_error_and_skipped_in_lists(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = _memory_url()
    numbers = make_flow(url)
    numbers(1)
    numbers(2)
    good, bad = list_runs(url)
    fs, root = fsspec.core.url_to_fs(url)
    fs.pipe_file(f"{root}/runs/{bad.id}/run.json", b"{torn")
    with pytest.raises(CorruptRunJournal, match=f"{bad.id}/run.json is not valid JSON"):
        read_run(bad.id, url)
    assert [r.id for r in list_runs(url)] == [good.id]
    assert f"skipping flow run {bad.id}" in caplog.text


def test_newer_format_and_foreign_files_are_refused() -> None:
    url = _memory_url()
    make_flow(url)(1)
    (run,) = list_runs(url)
    fs, root = fsspec.core.url_to_fs(url)
    path = f"{root}/runs/{run.id}/run.json"
    data = orjson.loads(fs.cat_file(path))
    fs.pipe_file(path, orjson.dumps({**data, "version": 99}))
    with pytest.raises(CorruptRunJournal, match="newer fluvial"):
        read_run(run.id, url)
    fs.pipe_file(path, b"[1, 2]")
    with pytest.raises(CorruptRunJournal, match="not a fluvial run journal"):
        read_run(run.id, url)
    fs.pipe_file(path, orjson.dumps({"version": 1, "id": str(run.id)}))
    with pytest.raises(CorruptRunJournal, match="lacks or garbles"):
        read_run(run.id, url)


def test_corrupt_task_segment_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    url = _memory_url()
    make_flow(url)(2)
    (run,) = list_runs(url)
    fs, root = fsspec.core.url_to_fs(url)
    fs.pipe_file(f"{root}/runs/{run.id}/tasks/001-999999.json", b"\x00garbage")
    record = read_run(run.id, url)
    assert record.task_runs is not None
    assert len(record.task_runs) == 2
    assert "skipping unreadable run journal file" in caplog.text


def test_unknown_and_malformed_ids() -> None:
    url = _memory_url()
    missing = uuid.uuid4()
    with pytest.raises(RunNotFound, match=str(missing)) as info:
        read_run(missing, url)
    assert "memory" in str(info.value)
    with pytest.raises(RunNotFound, match="is not a flow run id"):
        read_run("not-an-id", url)


def test_list_filters_order_and_limit() -> None:
    url = _memory_url()
    numbers = make_flow(url)
    other = make_flow(url, name="other")

    @flow(name="failing", result_storage=url)
    def failing() -> None:
        boom(1)

    numbers(1)
    other(1)
    failing(return_state=True)
    numbers(2)
    runs = list_runs(url)
    assert [r.flow_name for r in runs] == ["numbers", "failing", "other", "numbers"]
    assert all(r.task_runs is None for r in runs)
    assert [r.parameters["n"] for r in list_runs(url, flow_name="numbers")] == [2, 1]
    assert [r.flow_name for r in list_runs(url, state="failed")] == ["failing"]
    assert len(list_runs(url, state="Completed")) == 3
    assert len(list_runs(url, limit=2)) == 2
    assert list_runs(url, since=datetime.now(UTC) + timedelta(minutes=1)) == []
    naive_past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    assert len(list_runs(url, since=naive_past)) == 4
    with_tasks = list_runs(url, flow_name="other", tasks=True)
    assert with_tasks[0].task_runs is not None
    assert len(with_tasks[0].task_runs) == 1


def test_delete_run() -> None:
    url = _memory_url()
    numbers = make_flow(url)
    numbers(1)
    numbers(2)
    keep, gone = list_runs(url)
    delete_run(str(gone.id), url)
    assert [r.id for r in list_runs(url)] == [keep.id]
    with pytest.raises(RunNotFound):
        read_run(gone.id, url)
    with pytest.raises(RunNotFound):
        delete_run(gone.id, url)
    assert not any(str(gone.id) in key for key in _files(url))


def test_subflows_are_linked_both_ways(tmp_path: Path) -> None:
    storage = tmp_path / "store"

    @flow(result_storage=storage)
    def child(x: int) -> int:
        return inc(x)

    @flow(result_storage=storage)
    def parent() -> int:
        return child(1) + child(2)

    state = parent(return_state=True)
    parent_id = state.state_details.flow_run_id
    record = read_run(parent_id, storage)
    assert len(record.children) == 2
    for child_id in record.children:
        assert read_run(child_id, storage).parent_id == parent_id
    assert list_runs(storage, flow_name="child")[0].parent_id == parent_id


def test_a_subflow_resumed_on_its_own_keeps_its_parent() -> None:
    from fluvial.runs import resume

    @flow(persist_result=True)  # both journal in the default storage
    def parent() -> Any:
        return child_flow(2, return_state=True)

    parent_id = parent(return_state=True).state_details.flow_run_id
    (child,) = list_runs(flow_name="child-flow")
    assert child.state == "FAILED"
    FAIL_CHILD.clear()
    assert resume(child.id) == 3
    resumed = read_run(child.id)
    assert resumed.parent_id == parent_id
    assert [a.state_name for a in resumed.attempts] == ["Failed", "Completed"]


FAIL_CHILD = {"on": True}


@flow(name="child-flow", persist_result=True)
def child_flow(x: int) -> int:
    if FAIL_CHILD:
        raise RuntimeError("child broke")
    return inc(x)
