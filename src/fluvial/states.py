"""States: what a flow or task run is doing, and what it produced.

A ``State`` has a canonical ``type`` (one of :class:`StateType`), a display ``name`` that may be
more specific (``Cached`` is a COMPLETED state, ``TimedOut`` a FAILED one), a ``message`` and
``data``: the run's value when completed, the exception when failed or crashed.

States are plain slotted objects rather than pydantic models because the engine makes three of
them per task run and per-task overhead is a budget (see DESIGN.md, Performance).
"""

from __future__ import annotations

__all__ = (
    "TERMINAL_STATES",
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "NotReady",
    "Paused",
    "Pending",
    "Retrying",
    "RolledBack",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateGroup",
    "StateType",
    "Suspended",
    "TimedOut",
    "exception_to_crashed_state",
    "exception_to_failed_state",
    "get_state_exception",
    "is_state",
    "is_state_iterable",
    "raise_state_exception",
    "return_value_to_state",
)

import enum
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from types import GeneratorType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._ids import new_id
from .exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    MissingResult,
    PausedRun,
    UnfinishedRun,
)

if TYPE_CHECKING:
    import uuid

R = TypeVar("R")


class StateType(enum.StrEnum):
    """The canonical kinds of state; a state's name may be more specific than its type."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


TERMINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.CANCELLED, StateType.FAILED, StateType.CRASHED}
)
_DEFAULT_NAMES = {kind: kind.value.capitalize() for kind in StateType}
_FAILURE_TYPES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


class StateDetails:
    """Run identifiers and scheduling details attached to a state."""

    __slots__ = (
        "_flow_run_id",
        "_task_run_id",
        "cache_expiration",
        "cache_key",
        "child_flow_run_id",
        "pause_key",
        "pause_reschedule",
        "pause_timeout",
        "refresh_cache",
        "retriable",
        "scheduled_time",
        "untrackable_result",
    )

    def __init__(
        self,
        *,
        flow_run_id: Any = None,
        task_run_id: Any = None,
        child_flow_run_id: Any = None,
        scheduled_time: datetime | None = None,
        cache_key: str | None = None,
        cache_expiration: datetime | None = None,
        untrackable_result: bool = False,
        retriable: bool | None = None,
        refresh_cache: bool | None = None,
        pause_timeout: Any = None,
        pause_reschedule: bool | None = None,
        pause_key: str | None = None,
    ) -> None:
        # Run ids may be given as the run's id cell, so that no id is made until asked for.
        self._flow_run_id = flow_run_id
        self._task_run_id = task_run_id
        self.child_flow_run_id = child_flow_run_id
        self.scheduled_time = scheduled_time
        self.cache_key = cache_key
        self.cache_expiration = cache_expiration
        self.untrackable_result = untrackable_result
        self.retriable = retriable
        self.refresh_cache = refresh_cache
        self.pause_timeout = pause_timeout
        self.pause_reschedule = pause_reschedule
        self.pause_key = pause_key

    @property
    def flow_run_id(self) -> uuid.UUID | None:
        """The id of the flow run this state belongs to."""
        value: Any = self._flow_run_id
        found: uuid.UUID | None = value.get() if hasattr(value, "get") else value
        return found

    @flow_run_id.setter
    def flow_run_id(self, value: uuid.UUID | None) -> None:
        self._flow_run_id = value

    @property
    def task_run_id(self) -> uuid.UUID | None:
        """The id of the task run this state belongs to."""
        value: Any = self._task_run_id
        found: uuid.UUID | None = value.get() if hasattr(value, "get") else value
        return found

    @task_run_id.setter
    def task_run_id(self, value: uuid.UUID | None) -> None:
        self._task_run_id = value

    def from_run(self) -> bool:
        """Return whether the state was produced by a flow or task run."""
        return self._task_run_id is not None or self._flow_run_id is not None

    def __repr__(self) -> str:
        names = ("flow_run_id", "task_run_id", "scheduled_time", "cache_key", "cache_expiration")
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in names if getattr(self, name) is not None
        )
        return f"StateDetails({shown})"


class State(Generic[R]):
    """The state of a flow or task run at one moment."""

    __slots__ = ("_details", "_id", "_run_ids", "_ts", "data", "message", "name", "type")

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        data: Any = None,
        state_details: StateDetails | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        self.type = type if type.__class__ is StateType else StateType(type)
        self.name = name if name is not None else _DEFAULT_NAMES[self.type]
        self.message = message
        self.data = data
        self._details = state_details
        self._ts = time.time() if timestamp is None else timestamp.timestamp()
        self._id: uuid.UUID | None = None
        # (task run id or id cell, flow run id or id cell), set by the engine; see state_details.
        self._run_ids: tuple[Any, Any] | None = None

    @property
    def id(self) -> uuid.UUID:
        """A unique id for this state, made on first use."""
        if self._id is None:
            self._id = new_id()
        return self._id

    @property
    def timestamp(self) -> datetime:
        """When the state was created, in UTC."""
        return datetime.fromtimestamp(self._ts, UTC)

    @property
    def state_details(self) -> StateDetails:
        """Run ids and scheduling details; created on first use."""
        if self._details is None:
            ids = self._run_ids
            if ids is None:
                self._details = StateDetails()
            else:
                self._details = StateDetails(task_run_id=ids[0], flow_run_id=ids[1])
        return self._details

    @state_details.setter
    def state_details(self, value: StateDetails) -> None:
        self._details = value

    def is_scheduled(self) -> bool:
        """Return whether the state is SCHEDULED (AwaitingRetry and Late included)."""
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        """Return whether the state is PENDING (NotReady included)."""
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        """Return whether the state is RUNNING (Retrying included)."""
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        """Return whether the state is COMPLETED (Cached included)."""
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        """Return whether the state is FAILED (TimedOut included)."""
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        """Return whether the state is CRASHED."""
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        """Return whether the state is CANCELLED."""
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        """Return whether the state is CANCELLING."""
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        """Return whether the state is PAUSED (Suspended included)."""
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        """Return whether the state is terminal: completed, failed, crashed or cancelled."""
        return self.type in TERMINAL_STATES

    def result(self, raise_on_failure: bool = True, retry_result_failure: bool = True) -> Any:
        """Return the run's value, or raise the exception that ended it.

        Args:
            raise_on_failure: when False, a failed, crashed or cancelled state returns its
                exception instead of raising it.
            retry_result_failure: accepted for Prefect compatibility.

        Raises:
            UnfinishedRun: the state is not final yet.
            PausedRun: the run is paused.
            MissingResult: a completed state whose value was neither kept nor persisted.
        """
        if self.type is StateType.COMPLETED:  # first: the case on every task call's path
            data = self.data
            loader = getattr(data, "__fluvial_result__", None)
            return data if loader is None else loader()
        if self.type is StateType.PAUSED:
            raise PausedRun(f"the run is paused: {self.message or self.name}")
        if self.type in _FAILURE_TYPES:
            exc = get_state_exception(self)
            if raise_on_failure:
                raise exc
            return exc
        raise UnfinishedRun(
            f"the run is in state {self.name!r} ({self.type.value}); "
            "its result is not available until it finishes"
        )

    async def aresult(
        self, raise_on_failure: bool = True, retry_result_failure: bool = True
    ) -> Any:
        """Async twin of :meth:`result`."""
        return self.result(raise_on_failure, retry_result_failure)

    def copy(self, **changes: Any) -> State[R]:
        """Return a copy with some fields replaced and a fresh timestamp."""
        new: State[R] = State(
            changes.pop("type", self.type),
            name=changes.pop("name", self.name),
            message=changes.pop("message", self.message),
            data=changes.pop("data", self.data),
            state_details=changes.pop("state_details", self.state_details),
        )
        if changes:
            raise TypeError(f"unknown State fields: {', '.join(changes)}")
        return new

    def fresh_copy(self, **changes: Any) -> State[R]:
        """Return a copy with a fresh timestamp (Prefect's name)."""
        return self.copy(**changes)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> State[R]:
        """Return a copy, like pydantic's ``model_copy`` that Prefect's states offer."""
        return self.copy(**(update or {}))

    def __repr__(self) -> str:
        return f"{self.name}(message={self.message!r}, type={self.type.value})"

    def __str__(self) -> str:
        shown = [repr(self.message)] if self.message else []
        if self.name.upper() != self.type.value:
            shown.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(shown)})"


class DroppedResult:
    """Stands in for a value that was neither kept in memory nor persisted."""

    __slots__ = ()

    def __fluvial_result__(self) -> Any:
        raise MissingResult(
            "this run's result was not kept in memory (cache_result_in_memory=False) and was "
            "not persisted; set persist_result=True to be able to read it later"
        )

    def __repr__(self) -> str:
        return "<result not kept>"


DROPPED = DroppedResult()


def _make(
    type_: StateType, default_name: str | None, cls: type[State[Any]], kwargs: dict[str, Any]
) -> State[Any]:
    if default_name is not None:
        kwargs.setdefault("name", default_name)
    return cls(type_, **kwargs)


def Scheduled(
    cls: type[State[Any]] = State,
    scheduled_time: datetime | None = None,
    **kwargs: Any,
) -> State[Any]:
    """Return a SCHEDULED state for *scheduled_time* (default: now)."""
    details = kwargs.setdefault("state_details", StateDetails())
    details.scheduled_time = scheduled_time or datetime.now(UTC)
    return _make(StateType.SCHEDULED, None, cls, kwargs)


def Completed(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a COMPLETED state."""
    return _make(StateType.COMPLETED, None, cls, kwargs)


def Running(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a RUNNING state."""
    return _make(StateType.RUNNING, None, cls, kwargs)


def Failed(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a FAILED state."""
    return _make(StateType.FAILED, None, cls, kwargs)


def Crashed(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a CRASHED state."""
    return _make(StateType.CRASHED, None, cls, kwargs)


def Cancelling(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a CANCELLING state."""
    return _make(StateType.CANCELLING, None, cls, kwargs)


def Cancelled(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a CANCELLED state."""
    return _make(StateType.CANCELLED, None, cls, kwargs)


def Pending(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a PENDING state."""
    return _make(StateType.PENDING, None, cls, kwargs)


def Paused(
    cls: type[State[Any]] = State,
    timeout_seconds: int | None = None,
    pause_expiration_time: datetime | None = None,
    reschedule: bool = False,
    pause_key: str | None = None,
    **kwargs: Any,
) -> State[Any]:
    """Return a PAUSED state."""
    details = kwargs.setdefault("state_details", StateDetails())
    details.pause_timeout = pause_expiration_time or timeout_seconds
    details.pause_reschedule = reschedule
    details.pause_key = pause_key
    return _make(StateType.PAUSED, None, cls, kwargs)


def Suspended(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a PAUSED state named ``Suspended``."""
    kwargs.setdefault("name", "Suspended")
    return Paused(cls, reschedule=True, **kwargs)


def AwaitingRetry(
    cls: type[State[Any]] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State[Any]:
    """Return a SCHEDULED state named ``AwaitingRetry``."""
    kwargs.setdefault("name", "AwaitingRetry")
    return Scheduled(cls, scheduled_time, **kwargs)


def Late(
    cls: type[State[Any]] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State[Any]:
    """Return a SCHEDULED state named ``Late``."""
    kwargs.setdefault("name", "Late")
    return Scheduled(cls, scheduled_time, **kwargs)


def Retrying(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a RUNNING state named ``Retrying``."""
    return _make(StateType.RUNNING, "Retrying", cls, kwargs)


def Cached(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a COMPLETED state named ``Cached``: the value came from the cache."""
    return _make(StateType.COMPLETED, "Cached", cls, kwargs)


def NotReady(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a PENDING state named ``NotReady``: an upstream run did not complete."""
    return _make(StateType.PENDING, "NotReady", cls, kwargs)


def TimedOut(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a FAILED state named ``TimedOut``."""
    return _make(StateType.FAILED, "TimedOut", cls, kwargs)


def RolledBack(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """Return a COMPLETED state named ``RolledBack``."""
    return _make(StateType.COMPLETED, "RolledBack", cls, kwargs)


class StateGroup:
    """Counts of a collection of states by type, for the aggregation rule."""

    def __init__(self, states: Iterable[State[Any]]) -> None:
        self.states = list(states)
        self.type_counts = Counter(state.type for state in self.states)
        self.total_count = len(self.states)
        self.cancelled_count = self.type_counts[StateType.CANCELLED]
        self.final_count = sum(self.type_counts[t] for t in TERMINAL_STATES)
        self.not_final_count = self.total_count - self.final_count
        self.paused_count = self.type_counts[StateType.PAUSED]
        self.fail_count = self.type_counts[StateType.FAILED] + self.type_counts[StateType.CRASHED]

    def all_completed(self) -> bool:
        """Return whether every state is COMPLETED."""
        return self.type_counts[StateType.COMPLETED] == self.total_count

    def any_cancelled(self) -> bool:
        """Return whether any state is CANCELLED."""
        return self.cancelled_count > 0

    def any_failed(self) -> bool:
        """Return whether any state is FAILED or CRASHED."""
        return self.fail_count > 0

    def any_paused(self) -> bool:
        """Return whether any state is PAUSED."""
        return self.paused_count > 0

    def all_final(self) -> bool:
        """Return whether every state is final."""
        return self.final_count == self.total_count

    def counts_message(self) -> str:
        """Describe the counts, e.g. ``total=3, not_final=1, 'COMPLETED'=2``."""
        parts = [f"total={self.total_count}"]
        if self.not_final_count:
            parts.append(f"not_final={self.not_final_count}")
        parts += [f"{kind.value!r}={n}" for kind, n in self.type_counts.items() if n]
        return ", ".join(parts)


def is_state(value: Any) -> bool:
    """Return whether *value* is a :class:`State`."""
    return isinstance(value, State)


def is_state_iterable(value: Any) -> bool:
    """Return whether *value* is a non-empty list, tuple or set made only of states."""
    if isinstance(value, list | tuple | set) and value and not hasattr(value, "unwrap"):
        return all(isinstance(item, State) for item in value)
    return False


def get_state_exception(state: State[Any]) -> BaseException:
    """Return the exception that explains a failed, crashed or cancelled *state*."""
    data = state.data
    if isinstance(data, BaseException):
        return data
    if isinstance(data, State):
        return get_state_exception(data)
    if is_state_iterable(data):
        for inner in data:
            if inner.type in _FAILURE_TYPES:
                return get_state_exception(inner)
    wrapper: type[Exception]
    if state.type is StateType.CRASHED:
        wrapper, default = CrashedRun, "Run crashed."
    elif state.type is StateType.CANCELLED:
        wrapper, default = CancelledRun, "Run cancelled."
    else:
        wrapper, default = FailedRun, "Run failed."
    if data is None or data is DROPPED:
        return wrapper(state.message or default)
    if isinstance(data, str):
        return wrapper(data)
    return TypeError(
        f"the {state.name} state holds {type(data).__name__} data, which cannot be resolved "
        "into an exception; a failed state's data should be the exception that ended the run"
    )


def raise_state_exception(state: State[Any]) -> None:
    """Raise the exception of *state* if it failed, crashed or was cancelled."""
    if state.type in _FAILURE_TYPES:
        raise get_state_exception(state)


def exception_to_failed_state(
    exc: BaseException, message: str | None = None, **kwargs: Any
) -> State[Any]:
    """Return a FAILED state holding *exc*."""
    text = message or f"{type(exc).__name__}: {exc}"
    return Failed(data=exc, message=text, **kwargs)


def exception_to_crashed_state(exc: BaseException, **kwargs: Any) -> State[Any]:
    """Return a CRASHED state explaining why the run process was interrupted."""
    if isinstance(exc, KeyboardInterrupt):
        reason = "Execution was aborted by an interrupt signal."
    elif isinstance(exc, SystemExit):
        reason = "Execution was aborted by Python's SystemExit."
    else:
        reason = f"Execution was interrupted by an unexpected exception: {type(exc).__name__}"
    crash = CrashedRun(reason)
    crash.__cause__ = exc
    return Crashed(data=crash, message=reason, **kwargs)


def return_value_to_state(value: Any) -> State[Any]:
    """Turn what a flow or task function returned into its final state.

    A state the user built by hand is used as it is. States produced by runs (and lists of
    them) are aggregated: all completed gives COMPLETED, else any cancelled gives CANCELLED,
    else any paused gives PAUSED, else FAILED; the data is the returned state(s).
    """
    if isinstance(value, State):
        details = value._details
        from_run = value._run_ids is not None or (details is not None and details.from_run())
        if not from_run:
            return value
        states = StateGroup([value])
    elif is_state_iterable(value):
        states = StateGroup(value)
    else:
        if isinstance(value, GeneratorType):
            value = list(value)
        return State(StateType.COMPLETED, data=value)
    return State(_aggregate_type(states), message=_aggregate_message(states), data=value)


def _aggregate_type(states: StateGroup) -> StateType:
    if states.all_completed():
        return StateType.COMPLETED
    if states.any_cancelled():
        return StateType.CANCELLED
    if states.any_paused():
        return StateType.PAUSED
    return StateType.FAILED


def _aggregate_message(states: StateGroup) -> str:
    if states.all_completed():
        return "All states completed."
    if states.any_cancelled():
        return f"{states.cancelled_count}/{states.total_count} states cancelled."
    if states.any_paused():
        return f"{states.paused_count}/{states.total_count} states paused."
    if states.any_failed():
        return f"{states.fail_count}/{states.total_count} states failed."
    if not states.all_final():
        return f"{states.not_final_count}/{states.total_count} states are not final."
    return "Given states: " + states.counts_message()
