"""The engine's short path gives a run exactly what the full engine would.

Each case runs one task twice: once as is (the short path takes it) and once with the short
path switched off, and compares what a user can observe: the value or exception, the state
history, the final state's name, message and ids, the failure note, the log records, and the
run context seen inside the task.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fluvial import flow, task
from fluvial.context import TaskRunContext
from fluvial.engine import task_engine
from fluvial.engine.short_path import takes_short_path
from fluvial.runners import ThreadPoolTaskRunner
from fluvial.runs import RunEvent, add_listener
from fluvial.states import Completed, Failed, State


class Boom(Exception):
    pass


def _ok(x: int) -> int:
    ctx = TaskRunContext.get()
    assert ctx is not None
    assert ctx.parameters == {"x": x}
    assert ctx.task_run.state is not None
    assert ctx.task_run.state.is_running()
    return x + 1


def _raises(x: int) -> int:
    raise Boom(f"bad {x}")


def _returns_failed(x: int) -> State[Any]:
    return Failed(message=f"said no to {x}")


def _returns_states(x: int) -> list[State[Any]]:
    return [Completed(data=x), Failed(message="one of two failed")]


def _returns_generator(x: int) -> Iterator[int]:
    return (i for i in range(x))


async def _async_ok(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


async def _async_raises(x: int) -> int:
    await asyncio.sleep(0)
    raise Boom(f"async bad {x}")


_RUN_NAME = re.compile(r"subject-[0-9a-f]{3}")


def _positional_only(x: int, /, *rest: int) -> int:
    return x + sum(rest)


async def _async_dict(x: int) -> dict[str, int]:
    return {"x": x}


CASES: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (_ok, {}),
    (_ok, {"cache_result_in_memory": False}),
    (_raises, {}),
    (_returns_failed, {}),
    (_returns_states, {}),
    (_returns_generator, {}),
    (_positional_only, {}),
    (_async_ok, {}),
    (_async_ok, {"cache_result_in_memory": False}),
    (_async_dict, {}),
    (_async_raises, {}),
]


def _case_id(case: tuple[Callable[..., Any], dict[str, Any]]) -> str:
    fn, options = case
    return fn.__name__ + "".join(f"-{k}={v}" for k, v in options.items())


def _call(the_task: Any, **how: Any) -> Any:
    outcome = the_task(3, **how)
    return asyncio.run(outcome) if asyncio.iscoroutine(outcome) else outcome


def _observe(
    case: tuple[Callable[..., Any], dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> dict[str, Any]:
    """Run the case's function as a task inside a flow; return all a user could look at."""
    caplog.clear()
    seen: dict[str, Any] = {}
    fn, options = case
    the_task = task(fn, name="subject", **options)
    history: list[str] = []

    def record(event: RunEvent) -> None:
        if event.kind == "task":
            history.append(event.state.name)

    @flow(name="observer")
    def run_it() -> None:
        try:  # a plain call: the value, or the exception as the caller sees it
            seen["returned"] = _call(the_task)
        except Exception as exc:
            seen["raised"] = (type(exc), str(exc))
        seen["state"] = state = _call(the_task, return_state=True)
        try:
            seen["value"] = state.result()
        except Exception as exc:
            notes = [_RUN_NAME.sub("subject-…", n) for n in getattr(exc, "__notes__", [])]
            seen["error"] = (type(exc), str(exc), notes)

    stop = add_listener(record)
    try:
        run_it()
    finally:
        stop()
    seen["history"] = history
    state: State[Any] = seen.pop("state")
    seen["final"] = (state.type, state.name, state.message)
    seen["has_ids"] = (
        state.state_details.task_run_id is not None and state.state_details.flow_run_id is not None
    )
    seen["logs"] = [
        (r.levelno, r.getMessage().split(" - ")[-1][:40])
        for r in caplog.records
        if r.name.startswith("fluvial.task_run")
    ]
    return seen


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_short_path_matches_the_full_engine(
    case: tuple[Callable[..., Any], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="fluvial")
    short = _observe(case, caplog)
    monkeypatch.setattr(task_engine, "takes_short_path", lambda *args: False)
    full = _observe(case, caplog)
    assert short == full


def test_a_cancelled_async_task_ends_cancelled_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def sleeper() -> None:
        await asyncio.sleep(30)

    def final_state() -> State[Any]:
        subject = task(sleeper)
        states: list[State[Any]] = []

        async def main() -> None:
            running = asyncio.ensure_future(subject(return_state=True))
            await asyncio.sleep(0.05)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running

        original = TaskRunContext.__init__

        def spy(self: TaskRunContext, *args: Any) -> None:
            original(self, *args)
            states.append(self.task_run)  # type: ignore[arg-type]

        with monkeypatch.context() as patch:
            patch.setattr(TaskRunContext, "__init__", spy)
            asyncio.run(main())
        run: Any = states[0]
        return run.state  # type: ignore[no-any-return]

    short = final_state()
    monkeypatch.setattr(task_engine, "takes_short_path", lambda *args: False)
    full = final_state()
    assert short.is_cancelled()
    assert full.is_cancelled()
    assert (short.name, short.message) == (full.name, full.message)


def test_runs_that_need_the_full_engine_are_not_vouched_for() -> None:
    from fluvial.engine.task_engine import new_task_run

    plain = task(_ok)
    run = new_task_run(plain, {"x": 1})
    assert takes_short_path(plain, run, {"x": 1}, None, None)
    for options in (
        {"retries": 1},
        {"timeout_seconds": 5},
        {"task_run_name": "named-{x}"},
        {"on_completion": [lambda *a: None]},
        {"on_failure": [lambda *a: None]},
        {"on_running": [lambda *a: None]},
        {"log_prints": True},
        {"persist_result": True},
    ):
        variant = plain.with_options(**options)
        assert not takes_short_path(variant, run, {"x": 1}, None, None), options
    assert not takes_short_path(plain, run, {"x": 1}, [object()], None)


def test_thread_runner_runs_take_the_short_path_with_the_same_outcome() -> None:
    adder = task(_ok)
    failing = task(_raises)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def fan_out() -> tuple[list[int], list[str]]:
        good = adder.map(range(5))
        bad = failing.map(range(2))
        bad.wait()
        return good.result(), [f.state.name for f in bad]

    assert fan_out() == ([1, 2, 3, 4, 5], ["Failed", "Failed"])
