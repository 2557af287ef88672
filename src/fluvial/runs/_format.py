"""The journal's files: where they live in a storage, and what is in them.

Layout under the storage root of the flow's results (``FORMAT_VERSION`` 1)::

    runs/<flow run id>/run.json                      the run: written at start, on each state
                                                     change, and rewritten at each flush
    runs/<flow run id>/tasks/<AAA>-<SSSSSS>.json     task runs changed since the last flush,
                                                     AAA = attempt (1 = first run, 2 = first
                                                     resume…), SSSSSS = flush number

Run ids are time-ordered UUIDs, so listing ``runs/`` gives every run in start order and a
``since`` filter needs no read at all. Every file is one JSON object with a ``version`` field,
written atomically (temp file + rename locally, one PUT on object stores); a file never holds
half a write. A task run recorded in several segments is taken from the last one.
"""

from __future__ import annotations

__all__ = (
    "FORMAT_VERSION",
    "JOURNAL_PREFIX",
    "decode_parameters",
    "iso",
    "parse_run",
    "parse_task_runs",
    "run_key",
    "segment_key",
    "task_prefix",
    "timestamp_of_id",
)

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from ..exceptions import CorruptRunJournal
from ._records import RunAttempt, RunRecord, TaskRunRecord

#: The folder of the journal under a result storage root.
JOURNAL_PREFIX = "runs"
#: The version written in every journal file; readers refuse newer ones.
FORMAT_VERSION = 1


def run_key(run_id: uuid.UUID | str) -> str:
    """Return the key of a run's ``run.json``."""
    return f"{JOURNAL_PREFIX}/{run_id}/run.json"


def task_prefix(run_id: uuid.UUID | str) -> str:
    """Return the key of the folder of a run's task segments."""
    return f"{JOURNAL_PREFIX}/{run_id}/tasks"


def segment_key(run_id: uuid.UUID | str, attempt: int, seq: int) -> str:
    """Return the key of one task segment."""
    return f"{task_prefix(run_id)}/{attempt:03d}-{seq:06d}.json"


def timestamp_of_id(run_id: uuid.UUID) -> datetime:
    """Return when a fluvial run id was made (its first 48 bits are milliseconds)."""
    return datetime.fromtimestamp((run_id.int >> 80) / 1000, UTC)


def iso(seconds: float | None) -> str | None:
    """Return epoch *seconds* as an ISO 8601 UTC string."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def check_version(data: Any, url: str) -> dict[str, Any]:
    """Return *data* if it is a journal object this fluvial can read.

    Raises:
        CorruptRunJournal: not an object with a version, or a newer version.
    """
    if not isinstance(data, dict) or not isinstance(data.get("version"), int):
        raise CorruptRunJournal(f"{url} is not a fluvial run journal file (no 'version' field)")
    if data["version"] > FORMAT_VERSION:
        raise CorruptRunJournal(
            f"{url} was written by a newer fluvial (journal format {data['version']}, this one "
            f"reads up to {FORMAT_VERSION}); upgrade fluvial to read it"
        )
    return data


def decode_parameters(data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Return the recorded parameters and None, or the previews and why the values are not
    available (never recorded, or they do not deserialize here)."""
    preview: dict[str, Any] = dict(data.get("parameters_preview") or {})
    encoded = data.get("parameters")
    if encoded is None:
        return preview, data.get("parameters_error") or "the parameters were not recorded"
    from ..storage import get_serializer

    try:
        serializer = get_serializer(encoded["serializer"])
        values = serializer.loads(base64.b64decode(encoded["data"]))
    except Exception as exc:
        return preview, f"the parameters do not deserialize here: {type(exc).__name__}: {exc}"
    if not isinstance(values, dict):
        return preview, f"the recorded parameters are a {type(values).__name__}, not a dict"
    return values, None


def parse_run(
    data: dict[str, Any], storage: str, tasks: tuple[TaskRunRecord, ...] | None
) -> RunRecord:
    """Build a :class:`RunRecord` from a checked ``run.json`` object.

    Raises:
        KeyError, ValueError, TypeError: a field is missing or malformed.
    """
    parameters, error = decode_parameters(data)
    result = data.get("result") or {}
    return RunRecord(
        id=uuid.UUID(data["id"]),
        name=data["name"],
        flow_name=data["flow_name"],
        import_path=data.get("import_path"),
        parameters=parameters,
        parameters_preview=dict(data.get("parameters_preview") or {}),
        parameters_error=error,
        state=data["state"],
        state_name=data["state_name"],
        message=data.get("message"),
        history=tuple((name, datetime.fromisoformat(ts)) for name, ts in data["history"]),
        attempts=tuple(_attempt(item) for item in data.get("attempts", ())),
        started=_when(data.get("started")),
        ended=_when(data.get("ended")),
        parent_id=_uuid(data.get("parent_id")),
        children=tuple(uuid.UUID(child) for child in data.get("children", ())),
        tags=tuple(data.get("tags", ())),
        result_ref=result.get("url"),
        storage=storage,
        task_counts=dict(data.get("task_counts") or {}),
        task_runs=tasks,
        version=data["version"],
        source_file=data.get("source_file"),
        result_key=result.get("key"),
    )


def _attempt(item: dict[str, Any]) -> RunAttempt:
    return RunAttempt(
        attempt=int(item["attempt"]),
        started=_when(item.get("started")),
        ended=_when(item.get("ended")),
        state_name=item.get("state_name"),
        host=str(item.get("host", "")),
        pid=int(item.get("pid", 0)),
    )


def parse_task_runs(segments: list[dict[str, Any]]) -> tuple[TaskRunRecord, ...]:
    """Merge checked segments (in key order) into task run records, the latest entry winning.

    Raises:
        KeyError, ValueError, TypeError: an entry is missing a field or malformed.
    """
    merged: dict[str, dict[str, Any]] = {}
    for segment in segments:
        attempt = int(segment["attempt"])
        for entry in segment["task_runs"]:
            merged.pop(entry["id"], None)  # re-inserted: order follows the latest change
            merged[entry["id"]] = {**entry, "flow_attempt": attempt}
    return tuple(_task_run(entry) for entry in merged.values())


def _task_run(entry: dict[str, Any]) -> TaskRunRecord:
    return TaskRunRecord(
        id=uuid.UUID(entry["id"]),
        name=entry["name"],
        task_name=entry["task_name"],
        task_key=entry["task_key"],
        cache_key=entry.get("cache_key"),
        state=entry["state"],
        state_name=entry["state_name"],
        message=entry.get("message"),
        started=_when(entry.get("started")),
        ended=_when(entry.get("ended")),
        attempts=int(entry.get("attempts", 0)),
        result_ref=entry.get("result_ref"),
        error=entry.get("error"),
        flow_attempt=int(entry["flow_attempt"]),
    )
