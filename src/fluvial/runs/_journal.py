"""The run journal writer: records a persisting flow run in its result storage.

The flow engine calls :func:`open_journal` for a flow run that persists results. From then
on every state change of the run and of its task runs reaches :func:`_observe` (through the
observer hook of :mod:`fluvial._runs`). What happens with each:

- the flow run's start (id, import path, parameters, Running) is written at once, in the
  flow's thread, so that a run killed with ``kill -9`` before its first task is resumable;
- a task run's change only puts the run on a queue (a deque append: cheap, thread-safe); a
  background thread writes the queued task runs every :data:`FLUSH_INTERVAL` seconds as one
  new segment file, plus ``run.json`` when it changed;
- the flow run's final state (Completed, Failed, Crashed on KeyboardInterrupt or SIGTERM…)
  flushes everything in the flow's thread before the run returns.

A write that fails is logged (a warning the first time, then at debug level) and never
reaches the user's flow. Files and their fields are described in :mod:`._format`.
"""

from __future__ import annotations

__all__ = ("FLUSH_INTERVAL", "Journal", "open_journal", "resuming")

import atexit
import base64
import logging
import os
import reprlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from .._runs import FlowRun, TaskRun
from ..engine.caching import PersistedResult
from ..states import StateType
from . import _events
from ._format import FORMAT_VERSION, iso, run_key, segment_key
from ._source import import_path_of

if TYPE_CHECKING:
    import uuid

    from ..states import State
    from ..storage import StorageLocation

_logger = logging.getLogger("fluvial.runs")

#: Seconds between two flushes of task run changes (the most a ``kill -9`` can lose).
FLUSH_INTERVAL = 0.25
_FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 120

_registry = threading.Lock()
_active: dict[uuid.UUID | None, Journal] = {}
_remove_observer: Callable[[], None] | None = None
_flusher: threading.Thread | None = None
#: run id → the run.json of the run being resumed, read by :func:`resume` (see there).
resuming: dict[uuid.UUID, dict[str, Any]] = {}


class Journal:
    """The journal of one flow run in this process."""

    def __init__(self, location: StorageLocation, run: FlowRun, summary: dict[str, Any]) -> None:
        self.location = location
        self.run = run
        self.summary = summary
        self.attempt: int = summary["attempts"][-1]["attempt"]
        self.queue: deque[TaskRun] = deque()
        self.task_states: dict[uuid.UUID, str] = {}
        self.seq = 0
        self.summary_dirty = True
        self.closed = False
        self.failures = 0
        self.lock = threading.Lock()

    def flow_changed(self, state: State[Any]) -> None:
        """Record a state of the flow run; write at once when it starts or ends."""
        with self.lock:
            if self.closed:
                return
            _apply_flow_state(self.summary, self.run, state)
            self.summary_dirty = True
            if state.type is StateType.RUNNING and self.run.run_count == 1:
                self._write_summary()
        if state.type in _FINAL:
            self.close()

    def flush(self) -> None:
        """Write the task runs changed since the last flush, and run.json if it changed."""
        with self.lock:
            if not self.closed:
                self._flush()

    def close(self) -> None:
        """Flush everything and stop recording."""
        with self.lock:
            if self.closed:
                return
            self._flush()
            self.closed = True
        _unregister(self)

    def _flush(self) -> None:
        changed: dict[uuid.UUID, TaskRun] = {}
        while self.queue:
            run = self.queue.popleft()
            changed[run.id] = run  # the latest state is read below, once per run
        if changed:
            entries = [_task_entry(run) for run in changed.values()]
            for run_id, entry in zip(changed, entries, strict=True):
                self.task_states[run_id] = entry["state_name"]
            self.seq += 1
            segment = {
                "version": FORMAT_VERSION,
                "flow_run_id": self.summary["id"],
                "attempt": self.attempt,
                "seq": self.seq,
                "task_runs": entries,
            }
            self._write(segment_key(self.summary["id"], self.attempt, self.seq), segment)
            self.summary["task_counts"] = _counts(self.task_states)
            self.summary_dirty = True
        if self.summary_dirty:
            self._write_summary()

    def _write_summary(self) -> None:
        self.summary["updated"] = iso(time.time())
        self.summary["children"] = list(dict.fromkeys(self.summary["children"]))
        if self._write(run_key(self.summary["id"]), self.summary):
            self.summary_dirty = False

    def _write(self, key: str, data: dict[str, Any]) -> bool:
        try:
            self.location.write(key, orjson.dumps(data))
        except Exception as exc:
            self.failures += 1
            level = logging.WARNING if self.failures == 1 else logging.DEBUG
            _logger.log(
                level,
                "could not write the run journal of flow run %r at %s (%s); the run goes on, "
                "but it may not be resumable",
                self.run.name,
                self.location.url_for(key),
                exc,
            )
            return False
        return True


def open_journal(flow: Any, run: FlowRun, enabled: bool = True) -> None:
    """Start journaling *run* of *flow* in its result storage; never raises.

    With *enabled* false (the ``results_journal`` setting) only a resumed run is journaled:
    its record exists, and should show the attempt that finished it.
    """
    previous = resuming.pop(run.id, None)
    if not enabled and previous is None:
        return
    try:
        from ..engine.caching import plan_flow_results

        store = plan_flow_results(flow).store
        summary = _initial_summary(flow, run, store, previous)
        journal = Journal(store.result_storage, run, summary)
    except Exception:
        _logger.warning(
            "could not start the run journal of flow run %r; the run goes on unrecorded",
            run.name,
            exc_info=True,
        )
        return
    _register(journal)


def _initial_summary(
    flow: Any, run: FlowRun, store: Any, previous: dict[str, Any] | None
) -> dict[str, Any]:
    import_path, source_file = _origin(flow, previous)
    encoded, error = _encode_parameters(run.parameters, store.serializer)
    attempts = list(previous["attempts"]) if previous else []
    attempts.append(_new_attempt(len(attempts) + 1))
    summary: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "id": str(run.id),
        "name": run.name,
        "flow_name": flow.name,
        "import_path": import_path,
        "source_file": source_file,
        "parameters": encoded,
        "parameters_error": error,
        "parameters_preview": {k: _repr.repr(v) for k, v in run.parameters.items()},
        "tags": sorted(run.tags),
        "state": None,
        "state_name": None,
        "message": None,
        "history": list(previous["history"]) if previous else [],
        "attempts": attempts,
        "started": previous.get("started") if previous else None,
        "ended": None,
        "parent_id": _str(run.parent_flow_run_id),
        "parent_task_run_id": _str(run.parent_task_run_id),
        "root_id": _str(run.root_flow_run_id),
        **_lineage(previous),
        "children": list(previous["children"]) if previous else [],
        "result": None,
        "task_counts": {},
        "storage": store.result_storage_url,
        "updated": None,
    }
    for state in run.state_history:
        _apply_flow_state(summary, run, state)
    return summary


def _origin(flow: Any, previous: dict[str, Any] | None) -> tuple[str, str | None]:
    # A resumed run keeps the import path of its first attempt: the resume may have loaded the
    # flow another way (from the recorded source file, under a module name of its own), and the
    # next resume must find it the way the first attempt recorded it.
    if previous and previous.get("import_path"):
        return str(previous["import_path"]), previous.get("source_file")
    return import_path_of(flow.fn)


def _new_attempt(number: int) -> dict[str, Any]:
    return {
        "attempt": number,
        "started": iso(time.time()),
        "ended": None,
        "state_name": None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def _lineage(previous: dict[str, Any] | None) -> dict[str, Any]:
    # A subflow resumed on its own keeps the parent it was first run under.
    if not previous or previous.get("parent_id") is None:
        return {}
    return {key: previous.get(key) for key in ("parent_id", "parent_task_run_id", "root_id")}


def _encode_parameters(parameters: dict[str, Any], serializer: Any) -> tuple[Any, str | None]:
    try:
        data = serializer.dumps(parameters)
    except Exception as exc:
        _logger.warning(
            "the parameters of this flow run cannot be serialized with %r (%s); it is "
            "journaled without them and cannot be resumed",
            serializer.name,
            exc,
        )
        return None, f"not serializable with {serializer.name!r}: {exc}"
    return {"serializer": serializer.name, "data": base64.b64encode(data).decode()}, None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _apply_flow_state(summary: dict[str, Any], run: FlowRun, state: State[Any]) -> None:
    summary["state"] = state.type.name
    summary["state_name"] = state.name
    summary["message"] = state.message
    summary["history"].append([state.name, iso(state._ts)])
    attempt = summary["attempts"][-1]
    attempt["state_name"] = state.name
    if summary["started"] is None and state.type is StateType.RUNNING:
        summary["started"] = iso(state._ts)
    if state.type in _FINAL:
        summary["ended"] = attempt["ended"] = iso(state._ts)
        summary["result"] = _result_ref(state)
    summary["name"] = run.name


def _result_ref(state: State[Any]) -> dict[str, str] | None:
    data = state.data
    if type(data) is PersistedResult:
        return {"key": data.key, "url": data.store.url_for(data.key)}
    return None


def _task_entry(run: TaskRun) -> dict[str, Any]:
    state = run.state
    assert state is not None  # queued by a state change
    key = ref = error = None
    data = state.data
    if type(data) is PersistedResult:
        key = data.key  # already a valid key: joined without validating it again
        ref = f"{data.store.result_storage_url}/{key}"
    elif isinstance(data, BaseException) and state.type is not StateType.COMPLETED:
        error = f"{type(data).__name__}: {data}"
    elif state.type in (StateType.FAILED, StateType.CRASHED):
        error = state.message
    return {
        "id": str(run.id),
        "name": run.name,
        "task_name": run.task_name,
        "task_key": run.task_key,
        "cache_key": key,
        "state": state.type.name,
        "state_name": state.name,
        "message": state.message,
        "started": iso(run._start),
        "ended": iso(run._end) if state.type in _FINAL else None,
        "attempts": run.run_count,
        "result_ref": ref,
        "error": error,
    }


def _counts(states: dict[Any, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in states.values():
        counts[name] = counts.get(name, 0) + 1
    return counts


def _observe(run: Any, state: State[Any]) -> None:
    if run.__class__ is TaskRun:
        journal = _active.get(run.flow_run_id)
        if journal is not None:
            # The id is made here, in the thread that owns the run, never in the flusher:
            # two threads making a lazy id at once could give the run two ids.
            run.id  # noqa: B018
            journal.queue.append(run)
    elif run.__class__ is FlowRun:
        journal = _active.get(run.id)
        if journal is not None:
            journal.flow_changed(state)


def _register(journal: Journal) -> None:
    global _remove_observer, _flusher
    with _registry:
        run = journal.run
        parent = _active.get(run.parent_flow_run_id) if run.parent_flow_run_id else None
        _active[run.id] = journal
        if _remove_observer is None:
            _remove_observer = _events.register_run_observer(_observe)
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_loop, name="fluvial-journal", daemon=True)
            _flusher.start()
    if parent is not None:
        with parent.lock:
            parent.summary["children"].append(str(run.id))
            parent.summary_dirty = True


def _unregister(journal: Journal) -> None:
    global _remove_observer
    with _registry:
        if _active.get(journal.run.id) is journal:
            del _active[journal.run.id]
        if not _active and _remove_observer is not None:
            _remove_observer()
            _remove_observer = None


def _flush_loop() -> None:
    global _flusher
    while True:
        time.sleep(FLUSH_INTERVAL)
        with _registry:
            journals = list(_active.values())
            if not journals:
                _flusher = None  # the next journal starts a new thread
                return
        for journal in journals:
            journal.flush()


@atexit.register
def _flush_all() -> None:
    # A flow still running at interpreter exit (on a daemon thread) keeps what it recorded.
    for journal in list(_active.values()):
        journal.flush()
