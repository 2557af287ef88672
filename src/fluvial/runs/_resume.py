"""Resume a recorded flow run by its id: same flow, same parameters, same run id.

Task results persisted under keys that include the flow run id (``DEFAULT``, ``RUN_ID``)
are found again, so finished tasks come back ``Cached`` and only the rest run. The journal
of the run gets one more attempt, with the history of the earlier ones kept.
"""

from __future__ import annotations

__all__ = ("process_gone", "resume", "running_pid")

import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Literal

from ..exceptions import FlowImportError, RunJournalError, RunStillRunning
from ..storage._filelock import pid_alive
from ._format import parse_run
from ._journal import resuming
from ._read import journal_location, read_raw
from ._source import load_flow

if TYPE_CHECKING:
    from ..storage import StorageLocation
    from ._records import RunRecord


def resume(
    run_id: uuid.UUID | str,
    storage: Any = None,
    *,
    return_state: bool = False,
    task_runner: Any = None,
    force: bool = False,
) -> Any:
    """Run the recorded flow run *run_id* again, replaying what it had finished.

    Returns what calling the flow returns (its state with ``return_state=True``). A run that
    already completed returns its persisted result without running. For an async flow the
    run is driven to its end here, unless an event loop is running in this thread: then a
    coroutine is returned, as calling the flow would.

    Args:
        run_id: the flow run's id.
        storage: where the run was recorded (any form ``result_storage`` takes); None for
            the default result storage.
        return_state: return the final state instead of the result.
        task_runner: run the tasks on this runner instead of the flow's own.
        force: resume even when a live process on this machine is still running the run
            (its unfinished tasks may then run twice).

    Raises:
        RunNotFound: no such run in that storage.
        CorruptRunJournal: its journal cannot be read.
        FlowImportError: the flow's code cannot be imported here.
        RunJournalError: the run's parameters were not recorded or do not deserialize here.
        RunStillRunning: the run's process is alive on this machine (see *force*).
    """
    location = journal_location(storage)
    data = read_raw(run_id, location)
    record = parse_run(data, location.url, None)
    pid = None if force else running_pid(record)
    if pid is not None:
        raise RunStillRunning(
            f"flow run {record.id} is still running, in process {pid} on this machine; wait "
            "for it or stop it, or pass force=True to resume it anyway (its tasks may run twice)"
        )
    if record.state == "COMPLETED" and record.result_key is not None:
        return _stored_outcome(record.result_key, location, return_state)
    if record.import_path is None:
        raise FlowImportError(f"flow run {record.id} has no recorded import path to resume from")
    flow = load_flow(record.import_path, record.source_file, record.flow_name)
    if record.parameters_error is not None:
        raise RunJournalError(
            f"flow run {record.id} cannot be resumed: {record.parameters_error}. Run the flow "
            "again instead"
        )
    options: dict[str, Any] = {}
    if flow.result_storage is None:
        # The run's results are where its journal is, whatever this process's settings say.
        options["result_storage"] = location.url
    if task_runner is not None:
        options["task_runner"] = task_runner
    if options:
        flow = flow.with_options(**options)
    return _run(flow, record.id, record.name, record.parameters, data, return_state)


def _run(
    flow: Any,
    run_id: uuid.UUID,
    name: str,
    parameters: dict[str, Any],
    previous: dict[str, Any],
    return_state: bool,
) -> Any:
    from ..engine.flow_engine import new_flow_run, run_flow_async, run_flow_sync

    bound = flow._signature.bind((), parameters)
    run = new_flow_run(flow, bound, run_id=run_id)
    run.name = name
    return_type: Literal["result", "state"] = "state" if return_state else "result"
    resuming[run_id] = previous  # the journal continues the run's history (see _journal)
    if not flow.isasync:
        try:
            return run_flow_sync(flow, bound, return_type, flow_run=run)
        finally:
            resuming.pop(run_id, None)
    coro = _run_async(run_flow_async(flow, bound, return_type, flow_run=run), run_id)
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    return coro


async def _run_async(coro: Any, run_id: uuid.UUID) -> Any:
    try:
        return await coro
    finally:
        resuming.pop(run_id, None)


def _stored_outcome(key: str, location: StorageLocation, return_state: bool) -> Any:
    from ..states import Completed
    from ..storage import ResultStore

    value = ResultStore(location).read(key).result
    return Completed(data=value) if return_state else value


def running_pid(record: RunRecord) -> int | None:
    """Return the pid of a live process of this machine that is running *record*, if any."""
    pid = _local_pid(record)
    return pid if pid is not None and pid_alive(pid) else None


def process_gone(record: RunRecord) -> bool:
    """Whether *record* is unfinished and the process of this machine that ran it has ended
    without recording an end (killed, crashed): only a resume will finish it."""
    pid = _local_pid(record)
    return pid is not None and not pid_alive(pid)


def _local_pid(record: RunRecord) -> int | None:
    """Return the pid of the unfinished last attempt of *record*, if another process of this
    machine ran it (a process elsewhere cannot be looked at)."""
    if record.is_final or not record.attempts or os.name != "posix":
        return None  # os.kill(pid, 0) would end the process on Windows
    last = record.attempts[-1]
    if last.ended is not None or last.host != socket.gethostname() or last.pid == os.getpid():
        return None
    return last.pid
