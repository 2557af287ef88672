"""Find the result records under a storage root, without deserializing any of them.

A store's root may hold more than records: the run journal (JSON files under ``runs/``),
lock files, a crashed writer's temporary file, files of the user's own. Only objects that start
with the record magic line (:data:`~.records.MAGIC`) are records; everything else is skipped,
so listing and clearing never touch what fluvial did not write as a result. Each candidate costs
one ranged read of its header.
"""

from __future__ import annotations

__all__ = ("StoredRecord", "list_records", "remove_abandoned_temporaries")

import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..exceptions import CorruptRecordError, ResultNotFound
from ._errors import storage_error
from ._location import StorageLocation
from .records import MAGIC, ResultRecordMetadata, parse_header

# A crashed local writer leaves ".<name>.<hex>.fluvial-tmp" behind (see _location).
_TEMP_SUFFIX = ".fluvial-tmp"
# A temporary file untouched this long belongs to no live writer: a write takes milliseconds.
ABANDONED_AFTER_SECONDS = 3600.0
_HEADER_READ_SIZE = 4096
# Past this many objects, headers are read by _READERS threads at once.
_SERIAL_LIMIT = 16
_READERS = 16


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record found in storage: its key, its size there, and its metadata if readable."""

    #: The key under the store's root.
    key: str
    #: The object's size in bytes, header included.
    size: int | None
    #: The metadata, or None when the header is torn or garbled (see :attr:`problem`).
    metadata: ResultRecordMetadata | None
    #: Why the metadata could not be read, for a corrupt record.
    problem: str | None = None


def _objects(location: StorageLocation, prefix: str) -> dict[str, int | None]:
    fs = location.fs
    base = f"{location.root}/" if location.root else fs.root_marker
    top = base + prefix.strip("/") if prefix else (location.root or fs.root_marker)
    try:
        found = fs.find(top, detail=True) if fs.exists(top) else {}
    except Exception as exc:
        raise storage_error(exc, location.url, "list") from exc
    objects: dict[str, int | None] = {}
    for path, info in found.items():
        name = str(path)
        if info.get("type") == "directory" or not name.startswith(base):
            continue
        key = name[len(base) :]
        if key and not key.endswith(_TEMP_SUFFIX):
            objects[key] = info.get("size")
    return objects


def _read_record(location: StorageLocation, key: str, size: int | None) -> StoredRecord | None:
    url = location.url_for(key)
    try:
        data = location.read_prefix(key, _HEADER_READ_SIZE)
    except ResultNotFound:
        return None  # removed since it was listed
    if not data.startswith(MAGIC):
        return None
    try:
        header = parse_header(data, url=url, at_eof=len(data) < _HEADER_READ_SIZE)
        if header is None:  # a header longer than one read: rare, read it all
            header = parse_header(location.read(key), url=url, at_eof=True)
    except CorruptRecordError as exc:
        return StoredRecord(key, size, None, str(exc))
    assert header is not None  # at_eof: never asks for more
    return StoredRecord(key, size, header[0])


def list_records(location: StorageLocation, prefix: str = "") -> Iterator[StoredRecord]:
    """Yield every result record under *prefix* of *location*, in key order.

    Raises:
        StorageError: the storage could not be listed or read.
    """
    objects = sorted(_objects(location, prefix).items())
    if len(objects) <= _SERIAL_LIMIT:
        found = [_read_record(location, key, size) for key, size in objects]
    else:
        # One small read per object: on an object store that is one request each, so read
        # many at once (fsspec's sync calls are safe from several threads).
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            found = list(pool.map(lambda item: _read_record(location, *item), objects))
    yield from (record for record in found if record is not None)


def remove_abandoned_temporaries(
    location: StorageLocation, prefix: str = "", older_than: float = ABANDONED_AFTER_SECONDS
) -> tuple[int, int]:
    """Delete temporary files crashed writers left under *location*; return (files, bytes).

    Only local storage has them (other filesystems write objects whole). A file modified in
    the last *older_than* seconds may belong to a write in progress and is kept.
    """
    if location.protocol != "file":
        return 0, 0
    fs = location.fs
    top = f"{location.root}/{prefix.strip('/')}" if prefix.strip("/") else location.root
    cutoff = time.time() - older_than
    try:
        found = fs.find(top, detail=True) if fs.exists(top) else {}
    except Exception as exc:
        raise storage_error(exc, location.url, "list") from exc
    files = freed = 0
    for path, info in found.items():
        if not str(path).endswith(_TEMP_SUFFIX) or info.get("mtime", cutoff) >= cutoff:
            continue
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            continue  # someone else removed it meanwhile
        except Exception as exc:
            raise storage_error(exc, location.url, "clean") from exc
        files += 1
        freed += int(info.get("size") or 0)
    return files, freed
