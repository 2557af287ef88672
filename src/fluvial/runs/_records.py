"""What :func:`~fluvial.runs.read_run` and :func:`~fluvial.runs.list_runs` return.

The journal files are JSON (see :mod:`fluvial.runs._format`); these frozen dataclasses are the
typed view of them. Timestamps are timezone-aware UTC datetimes; ids are UUIDs.
"""

from __future__ import annotations

__all__ = ("RunAttempt", "RunRecord", "TaskRunRecord")

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class TaskRunRecord:
    """One task run as the journal recorded it."""

    #: The task run's id.
    id: uuid.UUID
    #: The task run's name (``"double-3a7"``).
    name: str
    #: The task's name.
    task_name: str
    #: The task's key (its qualified name, hash of its source file).
    task_key: str
    #: The key its result is stored under, when it was persisted or read from the cache.
    cache_key: str | None
    #: The final (or last recorded) state's type: ``"COMPLETED"``, ``"FAILED"``, ``"RUNNING"``…
    state: str
    #: The state's name: ``"Completed"``, ``"Cached"``, ``"NotReady"``, ``"TimedOut"``…
    state_name: str
    #: The state's message, if any.
    message: str | None
    #: When it started running (None if it never ran: cached, not ready, cancelled…).
    started: datetime | None
    #: When it reached its final state (None while running, or if the flow process died).
    ended: datetime | None
    #: How many attempts it made (retries included; 0 if the function never ran).
    attempts: int
    #: The URL of its persisted result, if any.
    result_ref: str | None
    #: For a failure: the exception type and message.
    error: str | None
    #: Which attempt of the flow run (1 = first run, 2 = first resume…) this task run was in.
    flow_attempt: int

    @property
    def duration(self) -> timedelta | None:
        """Time from start to end, or None when either is unknown."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def is_cached(self) -> bool:
        """Whether the result came from the cache instead of running the function."""
        return self.state_name == "Cached"


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """One start of a flow run: the first run, then each resume."""

    #: 1 for the first run, 2 for the first resume…
    attempt: int
    #: When this attempt started.
    started: datetime | None
    #: When it ended (None if the process died without a word).
    ended: datetime | None
    #: Its last recorded state name.
    state_name: str | None
    #: The host and process id that ran it.
    host: str
    pid: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One flow run as the journal recorded it, across all its attempts."""

    #: The flow run's id (time-ordered).
    id: uuid.UUID
    #: The run's name (``"golden-osprey"``).
    name: str
    #: The flow's name.
    flow_name: str
    #: Where the flow's code lives: ``"package.module:function"`` or ``"/path/file.py:function"``.
    import_path: str | None
    #: The parameters the run was called with (values as deserialized; see
    #: :attr:`parameters_error` when they could not be).
    parameters: dict[str, Any]
    #: ``repr`` of each parameter, readable without deserializing anything.
    parameters_preview: dict[str, str]
    #: Why :attr:`parameters` holds the previews instead of the values, if it does.
    parameters_error: str | None
    #: The last recorded state's type: ``"COMPLETED"``, ``"FAILED"``, ``"RUNNING"``…
    state: str
    #: The last recorded state's name.
    state_name: str
    #: The last recorded state's message, if any.
    message: str | None
    #: Every state across every attempt, as ``(state name, timestamp)``.
    history: tuple[tuple[str, datetime], ...]
    #: Each start of the run (the first run, then each resume).
    attempts: tuple[RunAttempt, ...]
    #: When the run first started running.
    started: datetime | None
    #: When the latest attempt ended.
    ended: datetime | None
    #: The parent flow run, for a subflow.
    parent_id: uuid.UUID | None
    #: The flow runs of subflows started inside this run (when they journal too).
    children: tuple[uuid.UUID, ...]
    #: The run's tags.
    tags: tuple[str, ...]
    #: The URL of the flow's persisted result, once it completed.
    result_ref: str | None
    #: The storage the journal was read from.
    storage: str
    #: Counts of task run state names in the latest attempt.
    task_counts: dict[str, int]
    #: The task runs of every attempt, in the order they were recorded (None from
    #: :func:`~fluvial.runs.list_runs` unless asked for with ``tasks=True``).
    task_runs: tuple[TaskRunRecord, ...] | None = None
    #: The journal format version the record was written with.
    version: int = 1
    #: Where the flow's source file was, when it was known.
    source_file: str | None = field(default=None, repr=False)
    #: The key of the persisted flow result inside :attr:`storage`.
    result_key: str | None = field(default=None, repr=False)

    @property
    def duration(self) -> timedelta | None:
        """Time from the first start to the latest end, or None when unknown."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def is_final(self) -> bool:
        """Whether the latest attempt reached a final state (a killed run stays Running)."""
        return self.state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
