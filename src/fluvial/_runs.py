"""The records of one flow run and one task run, as the engine keeps them in memory.

They are slotted and lazy: a run's id and default name are made on first use, because most
task runs are never asked for either and each costs a microsecond (DESIGN.md, Performance).
"""

from __future__ import annotations

__all__ = ("FlowRun", "IdCell", "TaskRun", "new_cell")

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._ids import new_id

if TYPE_CHECKING:
    import uuid
from .states import State, StateType

#: Called as ``_observer(run, state)`` on every state change while something listens (the run
#: journal, :func:`fluvial.runs.add_listener`); None otherwise, so the engine pays one check.
_observer: Callable[[Any, State[Any]], None] | None = None


class IdCell:
    """Holds a run's id, made on first use; states point at the cell, not at the run.

    Made with :func:`new_cell`: a cell has no ``__init__``, so making one runs no Python
    frame (one is made per task run).
    """

    __slots__ = ("value",)

    value: uuid.UUID | None

    def get(self) -> uuid.UUID:
        """Return the id, making it on first use."""
        if self.value is None:
            self.value = new_id()
        return self.value


def new_cell() -> IdCell:
    """Return an empty id cell."""
    cell = IdCell()
    cell.value = None
    return cell


class _Run:
    __slots__ = (
        "_cell",
        "_created",
        "_end",
        "_ids",
        "_name",
        "_start",
        "parameters",
        "return_value",
        "run_count",
        "state",
        "state_history",
        "tags",
    )

    def __init__(self, parameters: dict[str, Any], tags: frozenset[str]) -> None:
        self._cell = new_cell()
        self._ids: tuple[Any, Any] = (None, None)  # set by the subclass
        self._name: str | None = None
        self.parameters = parameters
        self.tags = tags
        self.run_count = 0
        self.state: State[Any] | None = None
        self.state_history: list[State[Any]] = []
        # Seconds since the epoch; the datetime properties below are what users read.
        self._created = time.time()
        self._start: float | None = None
        self._end: float | None = None
        # Holds the value for the direct caller when the state does not keep it.
        self.return_value: Any = None

    @property
    def id(self) -> uuid.UUID:
        """The run's unique id (time-ordered)."""
        return self._cell.get()

    @id.setter
    def id(self, value: uuid.UUID) -> None:
        self._cell.value = value

    @property
    def name(self) -> str:
        """The run's display name."""
        if self._name is None:
            self._name = self._default_name()
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def _default_name(self) -> str:
        raise NotImplementedError

    def set_state(self, state: State[Any]) -> None:
        """Record *state* as the current one and append it to the history."""
        if state._run_ids is None:
            state._run_ids = self._ids
        self.state = state
        self.state_history.append(state)
        if self._start is None and state.type is StateType.RUNNING:
            self._start = state._ts  # the state's own clock reading: one time.time() fewer
        if _observer is not None:
            _observer(self, state)

    @property
    def state_type(self) -> Any:
        """The current state's type, or None before the first state."""
        return None if self.state is None else self.state.type

    @property
    def state_name(self) -> str | None:
        """The current state's name, or None before the first state."""
        return None if self.state is None else self.state.name

    def finish(self, state: State[Any]) -> None:
        """Record the final *state* and the end time."""
        self._end = time.time()
        self.set_state(state)

    @property
    def total_run_time(self) -> timedelta:
        """Time from the first RUNNING state to the final one (zero when never started)."""
        if self._start is None:
            return timedelta(0)
        return timedelta(seconds=(self._end or time.time()) - self._start)

    @property
    def expected_start_time(self) -> datetime:
        """When the run was created (runs start as soon as they are created), in UTC."""
        return datetime.fromtimestamp(self._created, UTC)

    @property
    def start_time(self) -> datetime | None:
        """When the run first started running, in UTC."""
        return None if self._start is None else datetime.fromtimestamp(self._start, UTC)

    @property
    def end_time(self) -> datetime | None:
        """When the run reached its final state, in UTC."""
        return None if self._end is None else datetime.fromtimestamp(self._end, UTC)

    @property
    def estimated_run_time(self) -> timedelta:
        """Prefect's name for the run time so far."""
        return self.total_run_time

    @property
    def deployment_id(self) -> None:
        """Always None: fluvial runs have no deployment."""
        return None


class TaskRun(_Run):
    """One run of a task: its parameters, tags, attempts and states."""

    __slots__ = ("flow_run_id", "task", "task_key", "task_name")

    def __init__(
        self,
        task: Any,
        parameters: dict[str, Any],
        tags: frozenset[str],
        flow_run_id: uuid.UUID | None,
    ) -> None:
        # _Run.__init__ written out: a task run is made per task call, and the super() call
        # was a quarter of the cost. Keep the two in step.
        cell = self._cell = IdCell()
        cell.value = None  # new_cell(), inlined
        self._name: str | None = None
        self.parameters = parameters
        self.tags = tags
        self.run_count = 0
        self.state: State[Any] | None = None
        self.state_history: list[State[Any]] = []
        self._created = time.time()
        self._start: float | None = None
        self._end: float | None = None
        self.return_value: Any = None
        self.task = task
        self.task_name: str = task.name
        self.task_key: str = task.task_key
        self.flow_run_id = flow_run_id
        # (task run id, flow run id) stamped on each state this run records; see State.
        self._ids = (self._cell, flow_run_id)

    def _default_name(self) -> str:
        return f"{self.task_name}-{self.id.hex[-3:]}"

    def __repr__(self) -> str:
        return f"TaskRun(name={self.name!r}, state={self.state!r})"


class FlowRun(_Run):
    """One run of a flow: its parameters, tags, attempts and states."""

    __slots__ = (
        "flow",
        "flow_name",
        "flow_version",
        "parent_flow_run_id",
        "parent_task_run_id",
        "root_flow_run_id",
    )

    def __init__(
        self,
        flow: Any,
        parameters: dict[str, Any],
        tags: frozenset[str],
        parent: FlowRun | None = None,
    ) -> None:
        super().__init__(parameters, tags)
        self.flow = flow
        self.flow_name: str = flow.name
        self.flow_version: str | None = None
        self.parent_flow_run_id = parent.id if parent is not None else None
        self.root_flow_run_id: uuid.UUID | None = (
            parent.root_flow_run_id if parent is not None else None
        )
        self.parent_task_run_id: uuid.UUID | None = None
        self._ids = (None, self._cell)

    def _default_name(self) -> str:
        from ._names import random_run_name

        return random_run_name()

    def __repr__(self) -> str:
        return f"FlowRun(name={self.name!r}, flow={self.flow_name!r}, state={self.state!r})"
