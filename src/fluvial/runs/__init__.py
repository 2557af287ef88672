"""Durable runs: every run of a flow that persists results is recorded next to its results.

The journal (run id, flow import path, parameters, states, task runs) lives in the flow's
result storage under ``runs/``, so whoever can reach that storage can list the runs, read one,
and resume one by its id after a crash: finished tasks come back ``Cached`` from their
persisted results and only the rest run. See docs/durable-runs.md.
"""

from __future__ import annotations

__all__ = (
    "JOURNAL_PREFIX",
    "RunAttempt",
    "RunEvent",
    "RunRecord",
    "TaskRunRecord",
    "add_listener",
    "delete_run",
    "list_runs",
    "read_run",
    "resume",
)

from ._events import RunEvent, add_listener
from ._format import JOURNAL_PREFIX
from ._read import delete_run, list_runs, read_run
from ._records import RunAttempt, RunRecord, TaskRunRecord
from ._resume import resume
