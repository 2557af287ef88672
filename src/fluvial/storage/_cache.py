"""A small process-wide LRU of recently written or read records, keyed by full URL.

Keyed by URL rather than per store, so two stores on the same storage in one process see
each other's writes: a write through either replaces (or, without
``cache_result_in_memory``, evicts) the entry. Writers in other processes are caught by the
store, which checks an entry's metadata against the stored header before trusting it.
Bounded both by entry count and by the total payload size, so a few huge results cannot pin
gigabytes of memory.
"""

from __future__ import annotations

__all__ = ("RecordCache", "record_cache")

import threading
from collections import OrderedDict

from .records import ResultRecord


class RecordCache:
    """A thread-safe LRU of :class:`ResultRecord` by URL, bounded in entries and bytes."""

    def __init__(self, maxsize: int = 1000, max_bytes: int = 256 * 2**20) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, ResultRecord] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, url: str) -> ResultRecord | None:
        """Return the record cached for *url*, marking it recently used, or ``None``."""
        with self._lock:
            record = self._entries.get(url)
            if record is not None:
                self._entries.move_to_end(url)
            return record

    def put(self, url: str, record: ResultRecord) -> None:
        """Cache *record* for *url*, evicting the least recently used entries as needed."""
        size = record.metadata.size or 0
        with self._lock:
            self._pop(url)
            if size > self.max_bytes:
                return
            self._entries[url] = record
            self._bytes += size
            while len(self._entries) > self.maxsize or self._bytes > self.max_bytes:
                self._pop(next(iter(self._entries)))

    def discard(self, url: str) -> None:
        """Forget *url* if it is cached."""
        with self._lock:
            self._pop(url)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _pop(self, url: str) -> None:
        record = self._entries.pop(url, None)
        if record is not None:
            self._bytes -= record.metadata.size or 0


#: The one cache every ResultStore in this process shares.
record_cache = RecordCache()
