"""``ResultStore``: persisted results on any fsspec storage, with atomic writes and an LRU.

A store maps relative keys to :class:`ResultRecord` objects under one root (``memory://x``,
a local directory, ``s3://bucket/prefix``...). Writes are atomic, reads verify a checksum and
never deserialize an expired record, and recent records are kept in a process-wide LRU keyed
by URL (see :mod:`._cache`). What each method raises:

* ``read``/``read_metadata``: :class:`ResultNotFound` (no record, or expired),
  :class:`CorruptRecordError` (torn, foreign, fails its checksum, unknown serializer, or a
  payload that will not deserialize), :class:`StorageError` (storage unreachable).
* ``exists``: ``False`` for absent, expired and corrupt records; :class:`StorageError` only
  when the storage itself fails.
* ``write``/``persist_result_record``: :class:`SerializationError` from the serializer,
  :class:`StorageError` when the storage cannot be written.

Reading a pickle runs code chosen by whoever wrote it: point stores only at trusted storage.
"""

from __future__ import annotations

__all__ = ("ResultStore",)

import dataclasses
import datetime as dt
import enum
import logging
import uuid
from functools import partial
from typing import Any, Self

import anyio.to_thread

from ..exceptions import (
    ConfigurationError,
    CorruptRecordError,
    ResultNotFound,
    SerializationError,
    StorageError,
)
from ._cache import record_cache
from ._layouts import make_layout
from ._listing import StoredRecord, list_records
from ._location import (
    StorageLike,
    StorageLocation,
    default_result_storage,
    resolve_location,
    validate_key,
)
from ._store_locks import LockingMixin
from .locks import LockManager, current_holder
from .records import ResultRecord, ResultRecordMetadata, fluvial_version, payload_checksum
from .serializers import Serializer, get_serializer

logger = logging.getLogger("fluvial.storage")


class _Unset(enum.Enum):
    UNSET = "UNSET"


_UNSET = _Unset.UNSET


class ResultStore(LockingMixin):
    """Reads and writes result records under one storage root.

    Args:
        result_storage: URL or path string (``"memory://x"``, ``"file:///p"``, ``"/p"``,
            ``"s3://bucket/prefix"``), ``pathlib.Path``, fsspec filesystem (keys from its
            root), or ``LocalFileSystem``/``RemoteFileSystem``. ``None``: the default
            storage, :func:`default_result_storage`.
        metadata_storage: where metadata goes in the split layout (Prefect's
            ``key_storage``); same forms. ``None``: one object per record.
        serializer: name (``"pickle"``, ``"json"``, ``"compressed/pickle"``,
            ``"compressed/json"``) or serializer object, used for new records.
        lock_manager: enables SERIALIZABLE isolation and the lock methods.
        cache_result_in_memory: keep recent records in the process-wide LRU.
        storage_options: passed to fsspec for URL storages (endpoint, credentials...).
    """

    def __init__(
        self,
        result_storage: StorageLike | None = None,
        metadata_storage: StorageLike | None = None,
        serializer: str | Serializer = "pickle",
        lock_manager: LockManager | None = None,
        cache_result_in_memory: bool = True,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.storage_options = dict(storage_options or {})
        if result_storage is None:
            result_storage = default_result_storage()
        self.result_storage = resolve_location(result_storage, self.storage_options)
        self.metadata_storage = (
            None
            if metadata_storage is None
            else resolve_location(metadata_storage, self.storage_options)
        )
        self._layout = make_layout(self.result_storage, self.metadata_storage)
        self.serializer = get_serializer(serializer)
        self.lock_manager = lock_manager
        self.cache_result_in_memory = cache_result_in_memory

    @classmethod
    def from_url(
        cls,
        url: str,
        /,
        *,
        metadata_storage: StorageLike | None = None,
        serializer: str | Serializer = "pickle",
        lock_manager: LockManager | None = None,
        cache_result_in_memory: bool = True,
        **storage_options: Any,
    ) -> Self:
        """Return a store on *url*, passing *storage_options* to fsspec."""
        return cls(
            url,
            metadata_storage,
            serializer,
            lock_manager,
            cache_result_in_memory,
            storage_options,
        )

    @classmethod
    def from_filesystem(cls, fs: Any, root: str = "", **options: Any) -> Self:
        """Return a store on fsspec filesystem *fs*, with keys under *root*."""
        return cls(StorageLocation(fs, root), **options)

    def with_options(
        self,
        *,
        metadata_storage: StorageLike | None | _Unset = _UNSET,
        serializer: str | Serializer | _Unset = _UNSET,
        lock_manager: LockManager | None | _Unset = _UNSET,
        cache_result_in_memory: bool | _Unset = _UNSET,
    ) -> Self:
        """Return a store on the same result storage with the given options changed."""
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        if metadata_storage is not _UNSET:
            new.metadata_storage = (
                None
                if metadata_storage is None
                else resolve_location(metadata_storage, self.storage_options)
            )
            new._layout = make_layout(new.result_storage, new.metadata_storage)
        if serializer is not _UNSET:
            new.serializer = get_serializer(serializer)
        if lock_manager is not _UNSET:
            new.lock_manager = lock_manager
        if cache_result_in_memory is not _UNSET:
            new.cache_result_in_memory = cache_result_in_memory
        return new

    def with_lock_manager(self, lock_manager: LockManager | None) -> Self:
        """Return a store on the same storage that uses *lock_manager*."""
        return self.with_options(lock_manager=lock_manager)

    def __repr__(self) -> str:
        split = ""
        if self.metadata_storage is not None:
            split = f", metadata_storage={self.metadata_storage.url!r}"
        return (
            f"ResultStore({self.result_storage_url!r}{split}, serializer={self.serializer.name!r})"
        )

    @property
    def result_storage_url(self) -> str:
        """The URL of the result storage root (rebuild with :meth:`from_url`)."""
        return self.result_storage.url

    @property
    def metadata_storage_url(self) -> str | None:
        """The URL of the metadata storage root, or ``None`` for one-object records."""
        return None if self.metadata_storage is None else self.metadata_storage.url

    def url_for(self, key: str) -> str:
        """Return the full URL of the record (or payload) stored at *key*."""
        return self.result_storage.url_for(key)

    # -- reading ---------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """Return True if a valid, unexpired record is stored at *key*.

        Verifies the payload's checksum without deserializing it, so this downloads the
        record; to look up and load in one go, call :meth:`read` and catch
        :class:`ResultNotFound` and :class:`CorruptRecordError`.
        """
        key = validate_key(key)
        url = self.result_storage.url_for(key)
        try:
            cached = self._cached(key, url)
            metadata = cached.metadata if cached is not None else self._layout.load(key, url)[0]
            self._serializer_of(metadata, url)
        except ResultNotFound:
            logger.debug("no result record at %s", url)
            return False
        except CorruptRecordError as exc:
            logger.warning("ignoring an unreadable result record: %s", exc)
            return False
        if metadata.is_expired():
            logger.debug("the result record at %s expired at %s", url, metadata.expiration)
            return False
        return True

    def read(self, key: str, holder: str | None = None) -> ResultRecord:
        """Return the record at *key*, from the LRU when it is still current.

        If another holder has *key* locked, wait for the lock first (SERIALIZABLE readers
        wait for the writer). See the module docstring for what this raises.
        """
        key = validate_key(key)
        self._wait_unless_holder(key, holder)
        url = self.result_storage.url_for(key)
        record = self._cached(key, url)
        if record is not None and not record.metadata.is_expired():
            return record
        metadata, payload = self._layout.load(key, url)
        if metadata.is_expired():
            record_cache.discard(url)
            raise ResultNotFound(
                f"the result record at {url} expired at {metadata.expiration}", url=url
            )
        record = ResultRecord(metadata, self._deserialize(metadata, payload, url))
        self._remember(url, record)
        return record

    def read_metadata(self, key: str) -> ResultRecordMetadata:
        """Return the metadata at *key* without reading or deserializing the payload.

        Expired records' metadata is returned too. Raises :class:`ResultNotFound` or
        :class:`CorruptRecordError` as :meth:`read` does.
        """
        key = validate_key(key)
        return self._layout.read_metadata(key, self.result_storage.url_for(key))

    def _cached(self, key: str, url: str) -> ResultRecord | None:
        if not self.cache_result_in_memory:
            return None
        record = record_cache.get(url)
        if record is None:
            return None
        # Another process may have replaced or removed the record: trust the entry only
        # while the stored metadata (a header read, no payload) still matches it.
        try:
            current = self._layout.read_metadata(key, url)
        except StorageError:
            record_cache.discard(url)
            raise
        if current != record.metadata:
            record_cache.discard(url)
            return None
        return record

    def _serializer_for(self, name: str) -> Serializer:
        return self.serializer if name == self.serializer.name else get_serializer(name)

    def _serializer_of(self, metadata: ResultRecordMetadata, url: str) -> Serializer:
        try:
            return self._serializer_for(metadata.serializer)
        except ConfigurationError as exc:
            raise CorruptRecordError(
                f"{url} was written with serializer {metadata.serializer!r}, which is not "
                f"registered in this process: {exc}",
                url=url,
            ) from exc

    def _deserialize(self, metadata: ResultRecordMetadata, payload: bytes, url: str) -> Any:
        serializer = self._serializer_of(metadata, url)
        try:
            return serializer.loads(payload)
        except Exception as exc:
            raise CorruptRecordError(
                f"the payload of {url} could not be deserialized with "
                f"{metadata.serializer!r}: {exc}",
                url=url,
            ) from exc

    # -- writing ---------------------------------------------------------------------------

    def create_result_record(
        self, value: Any, key: str | None = None, expiration: dt.datetime | None = None
    ) -> ResultRecord:
        """Return an unpersisted record of *value* (no serialization happens yet).

        *key* defaults to a random hex name; *expiration* must be timezone-aware.
        """
        key = uuid.uuid4().hex if key is None else validate_key(key)
        if expiration is not None and expiration.utcoffset() is None:
            raise ConfigurationError(
                f"expiration {expiration!r} must be timezone-aware, e.g. "
                "datetime.now(timezone.utc) + timedelta(hours=1)"
            )
        metadata = ResultRecordMetadata(
            storage_key=key, serializer=self.serializer.name, expiration=expiration
        )
        return ResultRecord(metadata, value)

    def write(
        self,
        value: Any,
        key: str | None = None,
        expiration: dt.datetime | None = None,
        holder: str | None = None,
    ) -> ResultRecord:
        """Serialize *value* and store it at *key*; return the persisted record."""
        record = self.create_result_record(value, key=key, expiration=expiration)
        return self.persist_result_record(record, holder=holder)

    def persist_result_record(
        self, record: ResultRecord, holder: str | None = None
    ) -> ResultRecord:
        """Serialize and store *record* atomically; return it with size and checksum set.

        Raises:
            SerializationError: the value cannot be serialized (a note names the URL).
            StorageError: the storage cannot be written, or another holder has the key locked.
        """
        key = validate_key(record.metadata.storage_key)
        url = self.result_storage.url_for(key)
        self._refuse_if_locked(key, holder, url)
        payload = self._serialize(record, url)
        metadata = dataclasses.replace(
            record.metadata,
            fluvial_version=fluvial_version(),
            created=dt.datetime.now(dt.UTC),
            size=len(payload),
            checksum=payload_checksum(payload),
        )
        self._layout.write(key, metadata, payload, url)
        persisted = ResultRecord(metadata, record.result)
        self._remember(url, persisted)
        return persisted

    def _serialize(self, record: ResultRecord, url: str) -> bytes:
        serializer = self._serializer_for(record.metadata.serializer)
        try:
            return serializer.dumps(record.result)
        except SerializationError as exc:
            exc.add_note(f"while writing the result record {url}")
            raise
        except Exception as exc:
            # A user-registered serializer may raise anything; callers catch one class.
            cls = type(record.result)
            raise SerializationError(
                f"serializer {serializer.name!r} failed on a value of type "
                f"{cls.__module__}.{cls.__qualname__} for {url}: {exc!r}"
            ) from exc

    def list_records(self, prefix: str = "") -> list[StoredRecord]:
        """Return the records under *prefix*, in key order, reading headers only.

        Objects that are not records (the run journal, lock and temporary files) are skipped;
        torn records are listed with ``metadata=None``. One-object layout only.

        Raises:
            ConfigurationError: the store keeps metadata apart (``metadata_storage``).
            StorageError: the storage could not be listed or read.
        """
        if self.metadata_storage is not None:
            raise ConfigurationError(
                f"{self!r} keeps metadata in {self.metadata_storage_url}; list records there"
            )
        return list(list_records(self.result_storage, prefix))

    def delete(self, key: str) -> None:
        """Remove the record at *key*; a missing record is not an error."""
        key = validate_key(key)
        record_cache.discard(self.result_storage.url_for(key))
        self._layout.delete(key)

    def _remember(self, url: str, record: ResultRecord) -> None:
        if self.cache_result_in_memory:
            record_cache.put(url, record)
        else:
            record_cache.discard(url)

    # -- async twins -----------------------------------------------------------------------

    async def aexists(self, key: str) -> bool:
        """Async :meth:`exists`, run in a worker thread."""
        return await anyio.to_thread.run_sync(self.exists, key)

    async def aread(self, key: str, holder: str | None = None) -> ResultRecord:
        """Async :meth:`read`, run in a worker thread."""
        holder = holder or self._holder_if_locking()
        return await anyio.to_thread.run_sync(self.read, key, holder)

    async def aread_metadata(self, key: str) -> ResultRecordMetadata:
        """Async :meth:`read_metadata`, run in a worker thread."""
        return await anyio.to_thread.run_sync(self.read_metadata, key)

    async def awrite(
        self,
        value: Any,
        key: str | None = None,
        expiration: dt.datetime | None = None,
        holder: str | None = None,
    ) -> ResultRecord:
        """Async :meth:`write`, run in a worker thread."""
        holder = holder or self._holder_if_locking()
        return await anyio.to_thread.run_sync(partial(self.write, value, key, expiration, holder))

    async def apersist_result_record(
        self, record: ResultRecord, holder: str | None = None
    ) -> ResultRecord:
        """Async :meth:`persist_result_record`, run in a worker thread."""
        holder = holder or self._holder_if_locking()
        return await anyio.to_thread.run_sync(self.persist_result_record, record, holder)

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`, run in a worker thread."""
        await anyio.to_thread.run_sync(self.delete, key)

    def _holder_if_locking(self) -> str | None:
        # The default holder names the calling thread/task, so take it before leaving it.
        return None if self.lock_manager is None else current_holder()
