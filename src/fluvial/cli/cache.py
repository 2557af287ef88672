"""``fluvial cache ls|clear``: the result and cache records in a result storage.

Only records are listed or removed: the run journal (``runs/``), lock files and anything else
in the storage are left alone. Each record is removed with one delete, so a record is either
still there whole or gone; a run reading it at that moment sees a hit or a miss, never half.
"""

from __future__ import annotations

__all__ = ("app", "register")

import datetime as dt
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import JsonOption, StorageOption, group
from ._output import console, format_bytes, format_time, out

if TYPE_CHECKING:
    from rich.table import Table

    from ..storage import ResultStore
    from ..storage._listing import StoredRecord

app = group("cache", "List and clear persisted results and cache records.")

_PREFIX = typer.Option("--prefix", metavar="KEY", help="Only records whose key starts so.")
_EXPIRED = typer.Option("--expired", help="Only records whose cache_expiration has passed.")


def register(root: typer.Typer) -> None:
    """Add the ``cache`` group to *root*."""
    root.add_typer(app)


def open_store(storage: str | None) -> ResultStore:
    """Return a store on *storage* (default: the configured default storage), no LRU."""
    from ..storage import ResultStore

    return ResultStore(storage, cache_result_in_memory=False)


def _is_journal(key: str) -> bool:
    from ..runs._format import JOURNAL_PREFIX

    return key.startswith(f"{JOURNAL_PREFIX}/") and key.endswith(".json")


def _records(store: ResultStore, prefix: str, expired: bool) -> list[StoredRecord]:
    now = dt.datetime.now(dt.UTC)
    records = [r for r in store.list_records(prefix) if not _is_journal(r.key)]
    if expired:
        records = [r for r in records if r.metadata is not None and r.metadata.is_expired(now)]
    return records


def _expires(record: StoredRecord, now: dt.datetime) -> str:
    if record.metadata is None:
        return "corrupt"
    expiration = record.metadata.expiration
    if expiration is None:
        return "never"
    return ("expired " if expiration <= now else "") + format_time(expiration)


def _as_json(record: StoredRecord) -> dict[str, Any]:
    metadata = None if record.metadata is None else record.metadata.to_json_dict()
    return {"key": record.key, "size": record.size, "metadata": metadata, "problem": record.problem}


def _table(records: list[StoredRecord], url: str) -> Table:
    from rich import box
    from rich.table import Table

    now = dt.datetime.now(dt.UTC)
    table = Table(
        title=f"Records in {url}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    table.add_column("key", overflow="fold", min_width=32)
    table.add_column("size", justify="right", no_wrap=True)
    for column in ("serializer", "written", "expires"):
        table.add_column(column, no_wrap=True)
    for record in records:
        meta = record.metadata
        table.add_row(
            record.key,
            format_bytes(record.size),
            "-" if meta is None else meta.serializer,
            "-" if meta is None else format_time(meta.created),
            _expires(record, now),
        )
    return table


@app.command("ls")
def _ls(
    storage: StorageOption = None,
    prefix: Annotated[str, _PREFIX] = "",
    expired: Annotated[bool, _EXPIRED] = False,
    as_json: JsonOption = False,
) -> int:
    """List records: key, size, serializer, when written, when they expire."""
    import orjson

    store = open_store(storage)
    records = _records(store, prefix, expired)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps([_as_json(r) for r in records]) + b"\n")
        return 0
    if not records:
        out(f"No records in {store.result_storage_url}.")
        return 0
    table = _table(records, store.result_storage_url)
    total = sum(record.size or 0 for record in records)
    console().print(table)
    out(f"{len(records)} record(s), {format_bytes(total)}.")
    return 0


@app.command("clear")
def _clear(
    storage: StorageOption = None,
    prefix: Annotated[str, _PREFIX] = "",
    expired: Annotated[bool, _EXPIRED] = False,
) -> int:
    """Remove records (never the run journal), one atomic delete each.

    Temporary files that crashed writers left on local storage more than an hour ago go too.
    """
    from ..storage._listing import remove_abandoned_temporaries

    store = open_store(storage)
    records = _records(store, prefix, expired)
    for record in records:
        store.delete(record.key)
    freed = sum(record.size or 0 for record in records)
    which = "expired record(s)" if expired else "record(s)"
    out(f"Removed {len(records)} {which} ({format_bytes(freed)}) from {store.result_storage_url}.")
    # Crashed writers' temporary files are garbage whatever the options say.
    files, size = remove_abandoned_temporaries(store.result_storage, prefix)
    if files:
        out(f"Removed {files} abandoned temporary file(s) ({format_bytes(size)}).")
    return 0
