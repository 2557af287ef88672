"""Reading the journal back: list runs, read one run, delete one run."""

from __future__ import annotations

__all__ = ("delete_run", "journal_location", "list_runs", "read_raw", "read_run")

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..exceptions import CorruptRunJournal, ResultNotFound, RunJournalError, RunNotFound
from ._format import (
    JOURNAL_PREFIX,
    check_version,
    parse_run,
    parse_task_runs,
    run_key,
    task_prefix,
    timestamp_of_id,
)
from ._records import RunRecord, TaskRunRecord

if TYPE_CHECKING:
    from ..storage import StorageLocation

_logger = logging.getLogger("fluvial.runs")


def journal_location(storage: Any = None) -> StorageLocation:
    """Return the storage root a journal lives under, for anything ``result_storage`` takes.

    None means the default result storage (``<FLUVIAL_HOME>/storage`` unless configured).
    """
    from ..storage import ResultStore, default_result_storage
    from ..storage._location import resolve_location

    if isinstance(storage, ResultStore):
        return storage.result_storage
    return resolve_location(default_result_storage() if storage is None else storage)


def _run_id(run_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(run_id, uuid.UUID):
        return run_id
    try:
        return uuid.UUID(str(run_id).strip())
    except ValueError:
        raise RunNotFound(
            f"{run_id!r} is not a flow run id (ids look like 0193c1d2-7a4b-7c3d-8e9f-"
            "0123456789ab); list runs with fluvial.runs.list_runs() or `fluvial runs ls`"
        ) from None


def read_raw(run_id: uuid.UUID | str, location: StorageLocation) -> dict[str, Any]:
    """Return the checked ``run.json`` object of a run.

    Raises:
        RunNotFound: no such run in this storage.
        CorruptRunJournal: the file is not readable journal JSON.
    """
    key = run_key(_run_id(run_id))
    url = location.url_for(key)
    try:
        data = location.read(key)
    except ResultNotFound:
        raise RunNotFound(
            f"no flow run {run_id} is recorded in {location.url}: check the id and the "
            "storage (runs are recorded in the result storage of flows that persist results)"
        ) from None
    try:
        return check_version(orjson.loads(data), url)
    except orjson.JSONDecodeError as exc:
        raise CorruptRunJournal(f"{url} is not valid JSON ({exc}); delete the run") from exc


def read_run(run_id: uuid.UUID | str, storage: Any = None) -> RunRecord:
    """Return the recorded flow run *run_id*, with its task runs, from *storage*.

    Raises:
        RunNotFound: no such run in that storage.
        CorruptRunJournal: its journal cannot be read.
        StorageError: the storage cannot be reached.
    """
    location = journal_location(storage)
    data = read_raw(run_id, location)
    return _parse(data, location, _task_runs(_run_id(run_id), location))


def _parse(
    data: dict[str, Any], location: StorageLocation, tasks: tuple[TaskRunRecord, ...] | None
) -> RunRecord:
    try:
        return parse_run(data, location.url, tasks)
    except (KeyError, ValueError, TypeError) as exc:
        url = location.url_for(run_key(data.get("id", "?")))
        raise CorruptRunJournal(f"{url} lacks or garbles a field ({exc!r})") from exc


def _task_runs(run_id: uuid.UUID, location: StorageLocation) -> tuple[TaskRunRecord, ...]:
    segments = []
    for name in _list(location, task_prefix(run_id)):
        key = f"{task_prefix(run_id)}/{name}"
        try:
            segments.append(check_version(orjson.loads(location.read(key)), key))
        except (orjson.JSONDecodeError, CorruptRunJournal, ResultNotFound) as exc:
            _logger.warning(
                "skipping unreadable run journal file %s: %s", location.url_for(key), exc
            )
    try:
        return parse_task_runs(segments)
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptRunJournal(
            f"the task runs of flow run {run_id} in {location.url} are garbled ({exc!r})"
        ) from exc


def _list(location: StorageLocation, key: str) -> list[str]:
    """Return the sorted names directly under *key* (none if it does not exist)."""
    from ..storage._errors import storage_error

    path = location.path_for(key)
    fs = location.fs
    try:
        fs.invalidate_cache(path)  # s3fs caches listings; other processes write here
        names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise storage_error(exc, location.url_for(key), "list") from exc
    return sorted(name for name in names if not name.startswith("."))


def list_runs(
    storage: Any = None,
    *,
    flow_name: str | None = None,
    state: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    tasks: bool = False,
) -> list[RunRecord]:
    """Return the flow runs recorded in *storage*, newest first.

    Args:
        storage: where the runs were recorded, in any form ``result_storage`` takes; None
            for the default result storage.
        flow_name: only runs of this flow.
        state: only runs whose last state has this type or name (``"failed"``,
            ``"Completed"``, ``"Crashed"``…; case-insensitive).
        since: only runs started at or after this time (naive datetimes are taken as UTC).
        limit: at most this many runs.
        tasks: also read each run's task runs (slower); otherwise ``task_runs`` is None.

    A run whose journal cannot be read is skipped with a warning.
    """
    location = journal_location(storage)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    wanted = None if state is None else state.lower()
    found: list[RunRecord] = []
    for name in reversed(_list(location, JOURNAL_PREFIX)):
        if limit is not None and len(found) >= limit:
            break
        try:
            run_id = uuid.UUID(name)
        except ValueError:
            continue
        if since is not None and timestamp_of_id(run_id) < since:
            break  # ids are time-ordered: every later name is older still
        record = _read_listed(run_id, location, tasks)
        if record is None or (flow_name is not None and record.flow_name != flow_name):
            continue
        if wanted is not None and wanted not in (record.state.lower(), record.state_name.lower()):
            continue
        found.append(record)
    return found


def _read_listed(run_id: uuid.UUID, location: StorageLocation, tasks: bool) -> RunRecord | None:
    try:
        data = read_raw(run_id, location)
        return _parse(data, location, _task_runs(run_id, location) if tasks else None)
    except RunNotFound:
        return None  # a folder without run.json: a run being deleted, or not ours
    except RunJournalError as exc:
        _logger.warning("skipping flow run %s: %s", run_id, exc)
        return None


def delete_run(run_id: uuid.UUID | str, storage: Any = None) -> None:
    """Delete the journal of flow run *run_id* (its persisted results stay in the cache).

    Raises:
        RunNotFound: no such run in that storage.
    """
    from ..storage._errors import storage_error

    location = journal_location(storage)
    parsed = _run_id(run_id)
    key = run_key(parsed)
    try:
        location.read_prefix(key, 1)
    except ResultNotFound:
        raise RunNotFound(f"no flow run {run_id} is recorded in {location.url}") from None
    for name in _list(location, task_prefix(parsed)):
        location.delete(f"{task_prefix(parsed)}/{name}")
    location.delete(key)  # last: a delete cut short leaves a run that can be deleted again
    folder = location.path_for(f"{JOURNAL_PREFIX}/{parsed}")
    try:
        if location.fs.exists(folder):
            location.fs.rm(folder, recursive=True)
    except FileNotFoundError:
        pass
    except Exception as exc:
        raise storage_error(exc, location.url_for(f"{JOURNAL_PREFIX}/{parsed}"), "delete") from exc
