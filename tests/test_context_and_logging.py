"""Run context (fluvial.runtime, get_run_context) and run-aware logging."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

import fluvial.runtime
from fluvial import flow, get_run_logger, tags, task
from fluvial.context import FlowRunContext, TaskRunContext, get_run_context
from fluvial.exceptions import MissingContextError
from fluvial.runners import ThreadPoolTaskRunner


def test_runtime_outside_a_run_is_empty() -> None:
    assert fluvial.runtime.flow_run.id is None
    assert fluvial.runtime.flow_run.name is None
    assert fluvial.runtime.flow_run.parameters == {}
    assert fluvial.runtime.task_run.tags == []
    assert fluvial.runtime.task_run.run_count == 0
    with pytest.raises(AttributeError):
        _ = fluvial.runtime.flow_run.no_such_attribute


def test_runtime_attributes_inside_flow_and_task() -> None:
    seen: dict[str, Any] = {}

    @task(tags=["t"])
    def inner(x: int) -> None:
        seen["task"] = {
            "id": fluvial.runtime.task_run.id,
            "name": fluvial.runtime.task_run.name,
            "task_name": fluvial.runtime.task_run.task_name,
            "parameters": fluvial.runtime.task_run.parameters,
            "run_count": fluvial.runtime.task_run.run_count,
            "tags": fluvial.runtime.task_run.tags,
            "flow_name": fluvial.runtime.flow_run.flow_name,
        }

    @flow(flow_run_name="run-{n}")
    def outer(n: int) -> None:
        seen["flow"] = {
            "id": fluvial.runtime.flow_run.id,
            "name": fluvial.runtime.flow_run.name,
            "flow_name": fluvial.runtime.flow_run.flow_name,
            "parameters": fluvial.runtime.flow_run.parameters,
            "run_count": fluvial.runtime.flow_run.run_count,
            "tags": fluvial.runtime.flow_run.tags,
            "parent": fluvial.runtime.flow_run.parent_flow_run_id,
            "version": fluvial.runtime.flow_run.flow_version,
        }
        inner.submit(n).wait()

    with tags("nightly"):
        outer(5)
    flow_seen, task_seen = seen["flow"], seen["task"]
    assert uuid.UUID(flow_seen["id"]).version == 7
    assert flow_seen["name"] == "run-5"
    assert flow_seen["flow_name"] == "outer"
    assert flow_seen["parameters"] == {"n": 5}
    assert flow_seen["run_count"] == 1
    assert flow_seen["tags"] == ["nightly"]
    assert flow_seen["parent"] is None
    assert flow_seen["version"]
    assert uuid.UUID(task_seen["id"])
    assert task_seen["name"].startswith("inner-")
    assert task_seen["task_name"] == "inner"
    assert task_seen["parameters"] == {"x": 5}
    assert task_seen["run_count"] == 1
    assert task_seen["tags"] == ["nightly", "t"]
    assert task_seen["flow_name"] == "outer"


def test_runtime_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUVIAL__RUNTIME__FLOW_RUN__NAME", "from-env")
    assert fluvial.runtime.flow_run.name == "from-env"


def test_get_run_context() -> None:
    with pytest.raises(MissingContextError):
        get_run_context()

    @task
    def inner() -> Any:
        return get_run_context()

    @flow
    def outer() -> tuple[Any, Any]:
        return get_run_context(), inner()

    flow_ctx, task_ctx = outer()
    assert isinstance(flow_ctx, FlowRunContext)
    assert isinstance(task_ctx, TaskRunContext)
    assert isinstance(flow_ctx.task_runner, ThreadPoolTaskRunner)
    assert task_ctx.task_run.task_name == "inner"
    assert FlowRunContext.get() is None
    assert TaskRunContext.get() is None


def test_subflow_inside_a_task_sees_its_own_flow_context() -> None:
    @flow
    def child() -> Any:
        return get_run_context()

    @task
    def wrapper() -> Any:
        return child()

    @flow
    def parent() -> Any:
        return wrapper()

    ctx = parent()
    assert isinstance(ctx, FlowRunContext)
    assert ctx.flow.name == "child"


def test_get_run_logger_records_carry_run_names(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fluvial")

    @task
    def logs() -> None:
        get_run_logger().info("from the task")

    @flow(flow_run_name="logging-run")
    def my_flow() -> None:
        get_run_logger().warning("from the flow")
        logs()

    my_flow()
    flow_record = next(r for r in caplog.records if r.getMessage() == "from the flow")
    task_record = next(r for r in caplog.records if r.getMessage() == "from the task")
    assert flow_record.flow_run_name == "logging-run"  # type: ignore[attr-defined]
    assert flow_record.flow_name == "my-flow"  # type: ignore[attr-defined]
    assert flow_record.levelno == logging.WARNING
    assert task_record.task_run_name.startswith("logs-")  # type: ignore[attr-defined]
    assert task_record.flow_run_name == "logging-run"  # type: ignore[attr-defined]
    assert task_record.name == "fluvial.task_runs"
    assert any("Beginning flow run 'logging-run'" in r.getMessage() for r in caplog.records)
    assert any("Finished in state Completed()" in r.getMessage() for r in caplog.records)


def test_get_run_logger_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(MissingContextError, match="get_run_logger"):
        get_run_logger()


def test_log_prints_routes_print_to_the_run_logger(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="fluvial")

    @task
    def inherits() -> None:
        print("task print", 1)

    @task(log_prints=False)
    def opts_out() -> None:
        print("plain print")

    @flow(log_prints=True)
    def my_flow() -> None:
        print("flow print")
        inherits()
        opts_out()

    my_flow()
    print("after the flow")
    messages = [r.getMessage() for r in caplog.records]
    assert "flow print" in messages
    assert "task print 1" in messages
    assert "plain print" not in messages
    out = capsys.readouterr().out
    assert "plain print" in out
    assert "after the flow" in out
    assert "flow print" not in out


def test_console_handler_formats_run_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    from fluvial.logging.loggers import _RunFormatter

    record = logging.LogRecord("fluvial.task_runs", logging.INFO, __file__, 1, "hi", (), None)
    record.task_run_name = "work-1a2"
    text = _RunFormatter().format(record)
    assert text.endswith("| INFO    | Task run 'work-1a2' - hi")


def test_setup_logging_adds_one_handler_only_when_unconfigured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fluvial.logging.loggers as flog
    from fluvial.settings import temporary_settings

    fluvial_logger = logging.getLogger("fluvial")
    root = logging.getLogger()
    monkeypatch.setattr(flog, "_setup_done", False)
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(fluvial_logger, "handlers", [])
    with temporary_settings(logging_setup=True):
        flog.setup_logging()
        flog.setup_logging()
        assert len(fluvial_logger.handlers) == 1
        monkeypatch.setattr(flog, "_setup_done", False)
        monkeypatch.setattr(fluvial_logger, "handlers", [])
        monkeypatch.setattr(root, "handlers", [logging.NullHandler()])
        flog.setup_logging()
        assert fluvial_logger.handlers == []  # the application configured logging: hands off
    monkeypatch.setattr(flog, "_setup_done", False)
    monkeypatch.setattr(root, "handlers", [])
    with temporary_settings(logging_setup=False):
        flog.setup_logging()
    assert fluvial_logger.handlers == []  # FLUVIAL_LOGGING_SETUP=false: no handler at all


@pytest.mark.anyio
async def test_context_in_async_tasks_gathered_concurrently() -> None:
    @task
    async def who(i: int) -> tuple[int, Any]:
        await asyncio.sleep(0.001 * (5 - i))
        return i, fluvial.runtime.task_run.parameters["i"]

    @flow
    async def my_flow() -> list[tuple[int, Any]]:
        return list(await asyncio.gather(*(who(i) for i in range(5))))

    assert all(i == seen for i, seen in await my_flow())


def test_runtime_environment_overrides_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUVIAL__RUNTIME__FLOW_RUN__RUN_COUNT", "3")
    monkeypatch.setenv("FLUVIAL__RUNTIME__FLOW_RUN__PARAMETERS", '{"x": 1}')
    monkeypatch.setenv("FLUVIAL__RUNTIME__TASK_RUN__TAGS", "a, b")
    monkeypatch.setenv("FLUVIAL__RUNTIME__DEPLOYMENT__NAME", "nightly")
    assert fluvial.runtime.flow_run.run_count == 3
    assert fluvial.runtime.flow_run.parameters == {"x": 1}
    assert fluvial.runtime.task_run.tags == ["a", "b"]
    assert fluvial.runtime.deployment.name == "nightly"
    monkeypatch.setenv("FLUVIAL__RUNTIME__FLOW_RUN__RUN_COUNT", "three")
    with pytest.raises(ValueError, match="RUN_COUNT"):
        _ = fluvial.runtime.flow_run.run_count


def test_log_prints_on_a_task_called_outside_any_flow(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fluvial")

    @task(log_prints=True)
    def chatty() -> None:
        print("said by a lone task")

    chatty()
    assert "said by a lone task" in caplog.messages
