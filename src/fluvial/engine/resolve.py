"""Turn a task's arguments into plain values: futures and states become their results.

Runners call :func:`unfinished_upstream` before dispatch so a task never occupies a worker
while its inputs are still running; the engine then calls :func:`resolve_parameters`, which
finds every future already done. An upstream that did not complete stops the task with
``UpstreamTaskError`` (and a ``NotReady`` state), unless the argument is ``allow_failure(...)``.
"""

from __future__ import annotations

__all__ = (
    "needs_resolution",
    "resolve_parameters",
    "state_value",
    "unfinished_upstream",
    "upstream_futures",
)

from collections.abc import Iterable
from typing import Any

from ..annotations import BaseAnnotation, allow_failure, quote
from ..exceptions import UpstreamTaskError
from ..futures import Future, FutureList
from ..states import State, StateType

# Values of these types never hold futures; checking them first keeps plain calls fast.
_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex})
_SEQUENCES = (list, tuple, set, frozenset, FutureList)


def _holds_runs(value: Any) -> bool:
    kind = type(value)
    if kind in _ATOMIC:
        return False
    if isinstance(value, Future | State | BaseAnnotation):
        return True
    if kind is dict:
        return any(_holds_runs(item) for item in value.values())
    if kind in _SEQUENCES:
        return any(_holds_runs(item) for item in value)
    return False


def needs_resolution(parameters: dict[str, Any], wait_for: Iterable[Any] | None) -> bool:
    """Return whether any argument holds a future, a state or an annotation."""
    if wait_for:
        return True
    for value in parameters.values():
        if type(value) not in _ATOMIC and _holds_runs(value):
            return True
    return False


def upstream_futures(
    parameters: dict[str, Any], wait_for: Iterable[Any] | None
) -> list[Future[Any]]:
    """Return every future the arguments and *wait_for* depend on (quoted values excluded)."""
    found: list[Future[Any]] = []
    for value in parameters.values():
        _collect(value, found)
    if wait_for:
        for value in wait_for:
            _collect(value, found)
    return found


def unfinished_upstream(
    parameters: dict[str, Any], wait_for: Iterable[Any] | None
) -> list[Future[Any]]:
    """Return the upstream futures that are not done yet."""
    return [future for future in upstream_futures(parameters, wait_for) if not future.done()]


def _collect(value: Any, found: list[Future[Any]]) -> None:
    kind = type(value)
    if kind in _ATOMIC:
        return
    if isinstance(value, Future):
        found.append(value)
    elif isinstance(value, quote):
        return
    elif isinstance(value, BaseAnnotation):
        _collect(value.unwrap(), found)
    elif kind is dict:
        for item in value.values():
            _collect(item, found)
    elif kind in _SEQUENCES:
        for item in value:
            _collect(item, found)


def resolve_parameters(
    parameters: dict[str, Any], wait_for: Iterable[Any] | None
) -> dict[str, Any]:
    """Return the arguments with futures and states replaced by their results.

    Every future must be done already. Raises UpstreamTaskError when an upstream run did not
    complete and its argument is not wrapped in ``allow_failure``.
    """
    if wait_for:
        for item in wait_for:
            _resolve(item, allowed=False)
    return {name: _resolve(value, allowed=False) for name, value in parameters.items()}


def _resolve(value: Any, allowed: bool) -> Any:
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, Future):
        return state_value(value.state, allowed, value.task_run.name)
    if isinstance(value, State):
        return state_value(value, allowed, None)
    if isinstance(value, quote):
        return value.unwrap()
    if isinstance(value, allow_failure):
        return _resolve(value.unwrap(), allowed=True)
    if isinstance(value, BaseAnnotation):
        return _resolve(value.unwrap(), allowed)
    if kind is dict:
        return {key: _resolve(item, allowed) for key, item in value.items()}
    if kind is FutureList:
        return [_resolve(item, allowed) for item in value]
    if kind in _SEQUENCES:
        return kind(_resolve(item, allowed) for item in value)
    return value


def state_value(state: State[Any], allowed: bool, run_name: str | None) -> Any:
    """Return what a task receives for an upstream in *state* (see resolve_parameters)."""
    if state.type is StateType.COMPLETED:
        return state.result(raise_on_failure=False)
    upstream_failed = state.type in (StateType.FAILED, StateType.CRASHED) or (
        state.type is StateType.PENDING and state.name == "NotReady"
    )
    if allowed and upstream_failed:
        return state.result(raise_on_failure=False) if state.is_final() else state.data
    who = f"Upstream task run {run_name!r}" if run_name else "An upstream state"
    raise UpstreamTaskError(f"{who} did not reach a 'COMPLETED' state (it is {state.name}).")
