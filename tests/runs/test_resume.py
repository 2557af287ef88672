"""Resuming recorded runs in-process: memory:// storage, failures and crashes, clear errors."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import anyio
import fsspec
import orjson
import pytest

from fluvial import flow, task
from fluvial.exceptions import FlowImportError, RunJournalError, RunNotFound
from fluvial.runners import ThreadPoolTaskRunner
from fluvial.runs import read_run, resume
from fluvial.settings import temporary_settings
from fluvial.states import State

MEMORY = "memory://resume-tests"
EXECUTED: Counter[int] = Counter()
BREAK: dict[int, type[BaseException]] = {}


@task
def step(i: int) -> int:
    EXECUTED[i] += 1
    if i in BREAK:
        raise BREAK[i](f"step {i} broke")
    return i * 10


@flow(result_storage=MEMORY)
def pipeline(n: int) -> list[int]:
    futures = [step.submit(i) for i in range(n)]
    return [future.result() for future in futures]


@flow(persist_result=True)
def on_default_storage(n: int) -> list[int]:
    return [step(i) for i in range(n)]


@flow(result_storage=MEMORY)
async def async_pipeline(n: int) -> list[int]:
    return [step(i) for i in range(n)]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    EXECUTED.clear()
    BREAK.clear()


def _run_id(state: State[Any]) -> uuid.UUID:
    run_id = state.state_details.flow_run_id
    assert isinstance(run_id, uuid.UUID)
    return run_id


def test_a_failed_run_resumes_with_only_the_unfinished_tasks() -> None:
    BREAK[2] = RuntimeError
    failed = pipeline(4, return_state=True)
    assert failed.is_failed()
    assert EXECUTED == {0: 1, 1: 1, 2: 1, 3: 1}
    BREAK.clear()  # the "fix"

    runner = ThreadPoolTaskRunner(max_workers=1)
    assert resume(_run_id(failed), MEMORY, task_runner=runner) == [0, 10, 20, 30]
    assert EXECUTED == {0: 1, 1: 1, 2: 2, 3: 1}

    record = read_run(_run_id(failed), MEMORY)
    assert [(a.attempt, a.state_name) for a in record.attempts] == [(1, "Failed"), (2, "Completed")]
    assert [name for name, _ in record.history].count("Running") == 2
    assert record.task_runs is not None
    second = Counter(t.state_name for t in record.task_runs if t.flow_attempt == 2)
    assert second == {"Cached": 3, "Completed": 1}
    first = {t.name: t for t in record.task_runs if t.flow_attempt == 1}
    assert sorted(t.state_name for t in first.values()) == ["Completed"] * 3 + ["Failed"]


def test_a_resume_is_recorded_even_with_the_journal_turned_off() -> None:
    BREAK[1] = RuntimeError
    failed = pipeline(2, return_state=True)
    BREAK.clear()
    with temporary_settings(results_journal=False):
        assert resume(_run_id(failed), MEMORY) == [0, 10]
    # The record exists, so it shows the attempt that finished it.
    attempts = read_run(_run_id(failed), MEMORY).attempts
    assert [(a.attempt, a.state_name) for a in attempts] == [(1, "Failed"), (2, "Completed")]


def test_a_run_crashed_by_keyboard_interrupt_is_flushed_and_resumable() -> None:
    BREAK[1] = KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        on_default_storage(3)
    assert EXECUTED == {0: 1, 1: 1}
    from fluvial.runs import list_runs

    (crashed,) = list_runs()  # the default storage, as the flow had none of its own
    assert crashed.state_name == "Crashed"
    assert crashed.task_counts == {"Completed": 1, "Crashed": 1}
    BREAK.clear()
    state = resume(crashed.id, return_state=True)
    assert state.is_completed()
    assert state.result() == [0, 10, 20]
    assert EXECUTED == {0: 1, 1: 2, 2: 1}


def test_a_completed_run_returns_its_stored_result_without_running() -> None:
    state = pipeline(3, return_state=True)
    EXECUTED.clear()
    assert resume(_run_id(state), MEMORY) == [0, 10, 20]
    again = resume(str(_run_id(state)), MEMORY, return_state=True)
    assert again.is_completed()
    assert again.result() == [0, 10, 20]
    assert EXECUTED == {}
    assert len(read_run(_run_id(state), MEMORY).attempts) == 1


def test_an_async_flow_resumes_outside_and_inside_an_event_loop() -> None:
    BREAK[1] = ValueError
    state = anyio.run(lambda: async_pipeline(2, return_state=True))
    assert state.is_failed()
    BREAK.clear()
    run_id = _run_id(state)

    async def inside() -> Any:
        return await resume(run_id, MEMORY)

    assert anyio.run(inside) == [0, 10]
    assert EXECUTED == {0: 1, 1: 2}
    assert resume(run_id, MEMORY) == [0, 10]  # now completed: its stored result


def _rewrite(run_id: uuid.UUID, **changes: Any) -> None:
    fs, root = fsspec.core.url_to_fs(MEMORY)
    path = f"{root}/runs/{run_id}/run.json"
    fs.pipe_file(path, orjson.dumps({**orjson.loads(fs.cat_file(path)), **changes}))


@pytest.mark.parametrize(
    ("import_path", "source_file", "message"),
    [
        ("no_such_module_xyz:pipeline", None, "'no_such_module_xyz' is importable"),
        ("/nowhere/flows.py:pipeline", None, "/nowhere/flows.py does not exist"),
        (f"{__name__}:renamed_pipeline", None, "is not in"),
    ],
)
def test_flow_code_that_cannot_be_imported_is_a_clear_error(
    import_path: str, source_file: str | None, message: str
) -> None:
    BREAK[0] = RuntimeError
    run_id = _run_id(pipeline(1, return_state=True))
    _rewrite(run_id, import_path=import_path, source_file=source_file, flow_name="renamed")
    with pytest.raises(FlowImportError, match=message) as info:
        resume(run_id, MEMORY)
    assert import_path in str(info.value)


def test_unknown_runs_and_unrecorded_parameters_are_clear_errors() -> None:
    with pytest.raises(RunNotFound, match="resume-tests"):
        resume(uuid.uuid4(), MEMORY)
    BREAK[0] = RuntimeError
    run_id = _run_id(pipeline(1, return_state=True))
    _rewrite(run_id, parameters=None, parameters_error="not serializable with 'pickle': boom")
    with pytest.raises(RunJournalError, match="cannot be resumed: not serializable"):
        resume(run_id, MEMORY)


def test_a_script_that_fails_to_import_is_a_clear_error(tmp_path: Any) -> None:
    script = tmp_path / "broken_flows.py"
    script.write_text("raise RuntimeError('missing configuration')\n")
    BREAK[0] = RuntimeError
    run_id = _run_id(pipeline(1, return_state=True))
    _rewrite(run_id, import_path=f"{script}:pipeline", source_file=str(script))
    with pytest.raises(FlowImportError, match="RuntimeError: missing configuration") as info:
        resume(run_id, MEMORY)
    assert str(script) in str(info.value)
