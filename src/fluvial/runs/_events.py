"""State-change events of flow runs and task runs, for listeners in the flow process.

The engine calls :data:`fluvial._runs._observer` on every state change, but only while
something listens: a listener added here, or the run journal of a flow that persists results.
With neither, the observer is ``None`` and a state change costs one global check.

Listeners run in the thread that changed the state (a worker thread of the thread runner,
the flow's thread, or the thread that receives states back from process, Dask and Ray
workers), so they must be quick and thread-safe; one that raises is logged and kept.
"""

from __future__ import annotations

__all__ = ("RunEvent", "add_listener", "register_run_observer")

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .. import _runs
from ..context import _flow_run_context

if TYPE_CHECKING:
    import uuid

    from ..states import State

_logger = logging.getLogger("fluvial.runs")
_lock = threading.Lock()
_listeners: tuple[Callable[[RunEvent], None], ...] = ()
# Internal observers (the run journal) receive the raw (run, state) pair: cheaper than an event.
_run_observers: tuple[Callable[[Any, State[Any]], None], ...] = ()


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One state change of a flow run or a task run, as seen in the flow process."""

    #: ``"flow"`` or ``"task"``.
    kind: Literal["flow", "task"]
    #: The id of the run whose state changed.
    run_id: uuid.UUID
    #: The flow run it belongs to (its own id for a flow run; None for a task outside a flow).
    flow_run_id: uuid.UUID | None
    #: The run's name (``"double-3a7"``, ``"golden-osprey"``).
    name: str
    #: The new state.
    state: State[Any]
    #: When the state was entered, in UTC.
    timestamp: datetime


def add_listener(fn: Callable[[RunEvent], None]) -> Callable[[], None]:
    """Call ``fn(event)`` on every state change of flow runs and task runs in this process.

    Returns a function that removes the listener (calling it twice is harmless).
    """
    global _listeners
    with _lock:
        _listeners = (*_listeners, fn)
        _install()

    def remove() -> None:
        global _listeners
        with _lock:
            if fn in _listeners:
                index = _listeners.index(fn)
                _listeners = _listeners[:index] + _listeners[index + 1 :]
            _install()

    return remove


def register_run_observer(fn: Callable[[Any, State[Any]], None]) -> Callable[[], None]:
    """Call ``fn(run, state)`` on every state change (fluvial's own use); returns a remover."""
    global _run_observers
    with _lock:
        _run_observers = (*_run_observers, fn)
        _install()

    def remove() -> None:
        global _run_observers
        with _lock:
            _run_observers = tuple(o for o in _run_observers if o is not fn)
            _install()

    return remove


def _install() -> None:
    # Called with _lock held: the engine's hook is set only while someone listens.
    _runs._observer = _dispatch if (_listeners or _run_observers) else None


def _dispatch(run: Any, state: State[Any]) -> None:
    if run.__class__ is _runs.TaskRun and _on_worker():
        return
    for observer in _run_observers:
        try:
            observer(run, state)
        except Exception:
            _logger.exception("the run journal failed to record a state change; ignored")
    if _listeners:
        event = _event(run, state)
        for listener in _listeners:
            try:
                listener(event)
            except Exception:
                _logger.exception("run listener %r raised; ignored", listener)


def _on_worker() -> bool:
    """Whether this is a worker's copy of a task run (a Dask worker thread in this process).

    The flow process's own record of the run reports its final state; the worker's copy
    must not report the run a second time.
    """
    from ..runners._remote import _FlowStandIn

    ctx = _flow_run_context.get()
    if ctx is None:
        return False
    flow: Any = ctx.flow
    return flow.__class__ is _FlowStandIn


def _event(run: Any, state: State[Any]) -> RunEvent:
    when = datetime.fromtimestamp(state._ts, UTC)
    if isinstance(run, _runs.TaskRun):
        return RunEvent("task", run.id, run.flow_run_id, run.name, state, when)
    return RunEvent("flow", run.id, run.id, run.name, state, when)
