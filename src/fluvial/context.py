"""Where the current flow run and task run live while code runs.

Each context is held in a ``contextvars.ContextVar``, so it follows the code into threads that
copy the context (the thread runner does), into async tasks, and, serialized, into process,
Dask and Ray workers.
"""

from __future__ import annotations

__all__ = (
    "EngineContext",
    "FlowRunContext",
    "TagsContext",
    "TaskRunContext",
    "get_run_context",
    "tags",
)

from collections.abc import Generator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .exceptions import MissingContextError

if TYPE_CHECKING:
    from ._runs import FlowRun, TaskRun
    from .flows import Flow
    from .runners.base import TaskRunner
    from .tasks import Task

_flow_run_context: ContextVar[FlowRunContext | None] = ContextVar("fluvial.flow_run", default=None)
_task_run_context: ContextVar[TaskRunContext | None] = ContextVar("fluvial.task_run", default=None)
_tags: ContextVar[frozenset[str]] = ContextVar("fluvial.tags", default=frozenset())


class FlowRunContext:
    """What code inside a flow run can see: the flow, its run, its runner and parameters."""

    __slots__ = (
        "_memo",
        "_task_persist",
        "flow",
        "flow_run",
        "log_prints",
        "parameters",
        "persist_result",
        "task_runner",
    )

    def __init__(
        self,
        flow: Flow[..., Any],
        flow_run: FlowRun,
        task_runner: TaskRunner,
        parameters: dict[str, Any],
        log_prints: bool,
        persist_result: bool = False,
    ) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.persist_result = persist_result
        self.task_runner = task_runner
        self.parameters = parameters
        self.log_prints = log_prints
        # Results of completed task runs, kept only for flows with retries so that a retry
        # re-runs just what did not complete.
        self._memo: dict[str, tuple[int, Any]] | None = {} if flow.retries else None
        # Whether its tasks persist by default: decided at the first task that asks, like the
        # flow's own persist_result is at its start (see engine.caching.persists).
        self._task_persist: bool | None = None

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """Return the current flow run context, or None outside a flow run."""
        return _flow_run_context.get()

    def __repr__(self) -> str:
        return f"FlowRunContext(flow_run={self.flow_run!r})"


#: Prefect 3's other name for the flow run context.
EngineContext = FlowRunContext


class TaskRunContext:
    """What code inside a task run can see: the task, its run and its parameters."""

    __slots__ = ("log_prints", "parameters", "task", "task_run")

    def __init__(
        self,
        task: Task[..., Any],
        task_run: TaskRun,
        parameters: dict[str, Any],
        log_prints: bool,
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.parameters = parameters
        self.log_prints = log_prints

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """Return the current task run context, or None outside a task run."""
        return _task_run_context.get()

    def __repr__(self) -> str:
        return f"TaskRunContext(task_run={self.task_run!r})"


class TagsContext:
    """Read access to the tags that ``tags()`` blocks have put in effect."""

    @classmethod
    def get(cls) -> TagsContext:
        """Return an object whose ``current_tags`` are the tags now in effect."""
        return cls()

    @property
    def current_tags(self) -> set[str]:
        """The tags now in effect."""
        return set(_tags.get())


def get_run_context() -> TaskRunContext | FlowRunContext:
    """Return the current task run context, else the current flow run context.

    Raises:
        MissingContextError: called outside any flow or task run.
    """
    task_ctx = _task_run_context.get()
    if task_ctx is not None:
        return task_ctx
    flow_ctx = _flow_run_context.get()
    if flow_ctx is not None:
        return flow_ctx
    raise MissingContextError(
        "no flow or task run is active: get_run_context() works only inside a @flow or @task"
    )


@contextmanager
def tags(*new_tags: str) -> Generator[set[str], None, None]:
    """Add *new_tags* to every flow and task run started inside the block.

    Yields the full set of tags now in effect (the new ones and any from enclosing blocks).
    """
    current = _tags.get()
    merged = current.union(new_tags)
    token = _tags.set(merged)
    try:
        yield set(merged)
    finally:
        _tags.reset(token)


def _current_tags() -> frozenset[str]:
    return _tags.get()


def _set_flow_context(ctx: FlowRunContext | None) -> Any:
    return _flow_run_context.set(ctx)


def _reset_flow_context(token: Any) -> None:
    _flow_run_context.reset(token)


def _set_task_context(ctx: TaskRunContext | None) -> Any:
    return _task_run_context.set(ctx)


def _reset_task_context(token: Any) -> None:
    _task_run_context.reset(token)
