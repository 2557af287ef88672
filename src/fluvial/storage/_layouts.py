"""How records map onto storage objects: one object per record, or metadata split off.

Both layouts answer the same four questions for the store: read the metadata alone, load
metadata plus verified payload, write atomically, delete. Neither deserializes anything.
"""

from __future__ import annotations

__all__ = ("OneObjectLayout", "SplitLayout", "make_layout")

import threading
import time

from ..exceptions import CorruptRecordError, ResultNotFound, StorageError
from ._location import StorageLocation
from .records import (
    ResultRecordMetadata,
    encode_record,
    parse_header,
    split_record,
    verify_payload,
)

# First ranged read for a header; metadata lines are a few hundred bytes.
_HEADER_READ_SIZE = 4096
# Split-layout writers of one key in this process take turns (striped: no lock per key kept).
_WRITE_STRIPES = tuple(threading.Lock() for _ in range(64))


class OneObjectLayout:
    """Magic line, metadata line and payload in one object: one write publishes it all."""

    def __init__(self, result: StorageLocation) -> None:
        self.result = result

    def read_metadata(self, key: str, url: str) -> ResultRecordMetadata:
        """Return the metadata from the record's header, with ranged reads only."""
        size = _HEADER_READ_SIZE
        while True:
            data = self.result.read_prefix(key, size)
            header = parse_header(data, url=url, at_eof=len(data) < size)
            if header is not None:
                return header[0]
            size *= 4

    def load(self, key: str, url: str) -> tuple[ResultRecordMetadata, bytes]:
        """Return the metadata and the checksum-verified payload."""
        return split_record(self.result.read(key), url=url)

    def write(self, key: str, metadata: ResultRecordMetadata, payload: bytes, url: str) -> None:
        """Replace the record at *key* in one atomic write."""
        self.result.write(key, encode_record(metadata, payload))

    def delete(self, key: str) -> None:
        """Remove the record at *key*."""
        self.result.delete(key)


class SplitLayout:
    """Metadata JSON in one storage, the raw payload under the same key in another.

    Two objects cannot be replaced together. Writers in one process take turns per key;
    every writer publishes the payload first and the metadata second, then checks the payload
    is still its own and writes again if a writer elsewhere got in between. Readers retry
    briefly when a payload does not match its metadata. A reader racing writers may get
    :class:`CorruptRecordError` (a miss), never a wrong value.
    """

    def __init__(self, result: StorageLocation, metadata: StorageLocation) -> None:
        self.result = result
        self.metadata = metadata

    def read_metadata(self, key: str, url: str) -> ResultRecordMetadata:
        """Return the metadata from the metadata storage."""
        return ResultRecordMetadata.load_bytes(self.metadata.read(key), url=url)

    def load(self, key: str, url: str) -> tuple[ResultRecordMetadata, bytes]:
        """Return the metadata and a payload verified against it."""
        metadata = self.read_metadata(key, url)
        for attempt in range(5):
            try:
                payload = self.result.read(key)
            except ResultNotFound as exc:
                raise CorruptRecordError(f"the payload of {url} is missing", url=url) from exc
            try:
                verify_payload(metadata, payload, url=url)
                return metadata, payload
            except CorruptRecordError:
                # A concurrent writer replaces the payload first and the metadata second;
                # give it a moment to publish the metadata that matches.
                latest = self.read_metadata(key, url)
                if latest == metadata:
                    if attempt >= 2:
                        raise
                    time.sleep(0.01)
                metadata = latest
        raise CorruptRecordError(f"the record at {url} kept changing while it was read", url=url)

    def write(self, key: str, metadata: ResultRecordMetadata, payload: bytes, url: str) -> None:
        """Publish payload then metadata, until the stored pair is consistent."""
        with _WRITE_STRIPES[hash(url) % len(_WRITE_STRIPES)]:
            self._write_until_consistent(key, metadata, payload, url)

    def _write_until_consistent(
        self, key: str, metadata: ResultRecordMetadata, payload: bytes, url: str
    ) -> None:
        for _ in range(5):
            self.result.write(key, payload)
            self.metadata.write(key, metadata.dump_bytes())
            # If another writer's payload landed between ours and our metadata, write again:
            # whoever publishes metadata last also checks last, so the final pair matches.
            try:
                if self.result.read(key) == payload:
                    return
            except ResultNotFound:
                pass
        raise StorageError(
            f"could not write {url}: concurrent writers kept replacing its payload", url=url
        )

    def delete(self, key: str) -> None:
        """Remove the metadata (which unpublishes the record), then the payload."""
        self.metadata.delete(key)
        self.result.delete(key)


def make_layout(
    result: StorageLocation, metadata: StorageLocation | None
) -> OneObjectLayout | SplitLayout:
    """Return the layout for a store with these storages."""
    return OneObjectLayout(result) if metadata is None else SplitLayout(result, metadata)
