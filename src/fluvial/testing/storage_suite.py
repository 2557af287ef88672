"""Behaviour every result storage shares, as a pytest suite (like fsspec's ``tests/abstract``).

Subclass :class:`StorageConformance` and override its ``store`` fixture to return a fresh,
empty :class:`~fluvial.storage.ResultStore` on the storage under test. A store with a
``metadata_storage`` also runs the split-layout tests; a one-object store the others. The
suite writes corrupt objects straight through ``store.result_storage`` /
``store.metadata_storage``, so it needs no knowledge of the backend.
"""

from __future__ import annotations

__all__ = ("StorageConformance",)

import dataclasses
import datetime as dt
import pickle
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from ..exceptions import ConfigurationError, CorruptRecordError, ResultNotFound, StorageError
from ..storage import MemoryLockManager, ResultStore, known_serializers
from ..storage._cache import record_cache
from ..storage._location import StorageLocation
from ..storage.records import MAGIC, encode_record


@dataclasses.dataclass(frozen=True)
class Point:
    """A module-level dataclass, so the json serializer can re-import it."""

    x: int
    y: float


def _rich_value() -> dict[Any, Any]:
    return {
        "int": 7,
        "big": 2**80,
        "str": "naïve ✓",
        "none": None,
        "list": [1, "a", [2.5, False]],
        "tuple": (1, (2, 3)),
        "set": {3, 1, 2},
        "frozenset": frozenset({"a"}),
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        "day": dt.date(2024, 2, 29),
        "span": dt.timedelta(days=2, microseconds=3),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "money": Decimal("10.10"),
        "raw": b"\x00\xff",
        "point": Point(1, 2.5),
        1: "int key",
    }


def _explode() -> None:
    raise RuntimeError("this value was unpickled, which read_metadata/exists must not do")


class ExplodesWhenLoaded:
    """Pickles fine; unpickling it raises."""

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return _explode, ()


def _uncached(store: ResultStore) -> ResultStore:
    return store.with_options(cache_result_in_memory=False)


def _metadata_target(store: ResultStore) -> StorageLocation:
    return store.metadata_storage or store.result_storage


def _plant_garbage(store: ResultStore, key: str) -> None:
    _metadata_target(store).write(key, b"\x00\x01 certainly not a fluvial record")


def _plant_foreign(store: ResultStore, key: str) -> None:
    prefect_style = {"metadata": {"storage_key": key, "serializer": {"type": "pickle"}}}
    _metadata_target(store).write(key, orjson.dumps({**prefect_style, "result": "gAWVAA=="}))


def _truncate_header(store: ResultStore, key: str) -> None:
    target = _metadata_target(store)
    target.write(key, target.read(key)[:25])


def _truncate_payload(store: ResultStore, key: str) -> None:
    store.result_storage.write(key, store.result_storage.read(key)[:-10])


def _flip_payload_byte(store: ResultStore, key: str) -> None:
    raw = bytearray(store.result_storage.read(key))
    raw[-1] ^= 0xFF
    store.result_storage.write(key, bytes(raw))


def _unknown_serializer(store: ResultStore, key: str) -> None:
    metadata = store.read_metadata(key)
    changed = dataclasses.replace(metadata, serializer="no-such-serializer")
    if store.metadata_storage is not None:
        store.metadata_storage.write(key, changed.dump_bytes())
        return
    payload = store.result_storage.read(key)[-(metadata.size or 0) :]
    store.result_storage.write(key, encode_record(changed, payload))


_CORRUPTIONS: dict[str, Callable[[ResultStore, str], None]] = {
    "garbage": _plant_garbage,
    "foreign": _plant_foreign,
    "truncated-header": _truncate_header,
    "truncated-payload": _truncate_payload,
    "flipped-byte": _flip_payload_byte,
    "unknown-serializer": _unknown_serializer,
}


def _copy_record(store: ResultStore, source: str, target: str) -> None:
    """Copy stored objects behind the store's back, as another process's write would."""
    if store.metadata_storage is not None:
        store.result_storage.write(target, store.result_storage.read(source))
        store.metadata_storage.write(target, store.metadata_storage.read(source))
    else:
        store.result_storage.write(target, store.result_storage.read(source))


class StorageConformance:
    """The behaviour fluvial relies on from every result storage."""

    @pytest.fixture
    def store(self) -> ResultStore:
        """Override: return a fresh, empty ResultStore on the storage under test."""
        raise NotImplementedError("override the `store` fixture with a fresh ResultStore")

    @pytest.fixture
    def anyio_backend(self) -> str:
        """Run the async tests on asyncio."""
        return "asyncio"

    @pytest.mark.parametrize("serializer", sorted(known_serializers()))
    def test_round_trip_with_every_serializer(self, store: ResultStore, serializer: str) -> None:
        """Every built-in serializer reads back equal values of the same types."""
        value = _rich_value()
        store = store.with_options(serializer=serializer)
        written = store.write(value, key=f"round-trip/{serializer.replace('/', '-')}")
        assert written.metadata.serializer == serializer
        from_cache = store.read(written.metadata.storage_key).result
        from_storage = _uncached(store).read(written.metadata.storage_key).result
        for result in (from_cache, from_storage):
            assert result == value
            assert [type(item) for item in result.values()] == [type(v) for v in value.values()]

    @pytest.mark.parametrize("value", [None, b"", "x" * 100_000, list(range(10_000))])
    def test_round_trip_of_edge_values(self, store: ResultStore, value: Any) -> None:
        """None, empty, large and long values round-trip; metadata records the payload size."""
        store.write(value, key="edge")
        assert _uncached(store).read("edge").result == value
        assert store.read_metadata("edge").size == len(store.serializer.dumps(value))

    def test_exists_only_after_write(self, store: ResultStore) -> None:
        """Absent keys are absent for exists, read and read_metadata until written."""
        assert not store.exists("absent")
        with pytest.raises(ResultNotFound, match="absent"):
            store.read("absent")
        with pytest.raises(ResultNotFound):
            store.read_metadata("absent")
        store.write(1, key="present")
        assert store.exists("present")
        assert _uncached(store).exists("present")

    def test_default_key_is_random(self, store: ResultStore) -> None:
        """Writing without a key picks a fresh random key."""
        first, second = store.write(1), store.write(2)
        assert first.metadata.storage_key != second.metadata.storage_key
        assert store.read(second.metadata.storage_key).result == 2

    def test_expired_records_are_absent(self, store: ResultStore) -> None:
        """An expired record is absent, and read says it expired."""
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        store.write("stale", key="expired", expiration=past)
        assert not store.exists("expired")
        with pytest.raises(ResultNotFound, match="expired"):
            store.read("expired")
        with pytest.raises(ResultNotFound, match="expired"):
            _uncached(store).read("expired")
        assert store.read_metadata("expired").is_expired()

    def test_unexpired_records_are_present(self, store: ResultStore) -> None:
        """A record whose expiration is ahead is present and keeps it."""
        future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        store.write("fresh", key="fresh", expiration=future)
        assert store.exists("fresh")
        assert _uncached(store).read("fresh").metadata.expiration == future

    def test_naive_expiration_is_refused(self, store: ResultStore) -> None:
        """Expirations must be timezone-aware."""
        with pytest.raises(ConfigurationError, match="timezone"):
            store.write(1, key="naive", expiration=dt.datetime.now())

    def test_overwrite_replaces_the_value(self, store: ResultStore) -> None:
        """A second write to a key replaces the first."""
        store.write("first", key="again")
        store.write("second", key="again")
        assert store.read("again").result == "second"
        assert _uncached(store).read("again").result == "second"

    def test_keys_with_subdirectories(self, store: ResultStore) -> None:
        """Keys may contain '/' and live in nested directories under the root."""
        store.write("deep", key="a/b/c/leaf")
        store.write("sibling", key="a/b/other")
        assert _uncached(store).read("a/b/c/leaf").result == "deep"
        assert store.url_for("a/b/c/leaf").endswith("/a/b/c/leaf")
        assert store.url_for("a/b/c/leaf").startswith(store.result_storage_url)

    @pytest.mark.parametrize(
        "key", ["../escape", "a/../../b", "/absolute", "", "a//b", "./a", "a/", "C:/x", "a\\b"]
    )
    def test_keys_that_escape_the_root_are_refused(self, store: ResultStore, key: str) -> None:
        """Keys that are absolute, empty or climb out with '..' are refused."""
        operations: list[Callable[[str], object]] = [
            store.exists,
            store.read,
            store.read_metadata,
            store.delete,
            store.url_for,
            lambda k: store.write(1, key=k),
        ]
        for operation in operations:
            with pytest.raises(ConfigurationError):
                operation(key)

    def test_delete(self, store: ResultStore) -> None:
        """Delete removes a record; deleting nothing is fine."""
        store.write(1, key="doomed")
        store.delete("doomed")
        assert not store.exists("doomed")
        with pytest.raises(ResultNotFound):
            store.read("doomed")
        store.delete("doomed")  # deleting nothing is fine

    @pytest.mark.parametrize("corruption", sorted(_CORRUPTIONS))
    def test_corrupt_records_are_refused(self, store: ResultStore, corruption: str) -> None:
        """Torn, foreign or altered records: read raises, exists is False, rewrite heals."""
        _uncached(store).write("x" * 5000, key="broken")
        _CORRUPTIONS[corruption](store, "broken")
        assert not store.exists("broken")
        with pytest.raises(CorruptRecordError) as info:
            store.read("broken")
        assert store.url_for("broken") in str(info.value)
        store.write("repaired", key="broken")
        assert _uncached(store).read("broken").result == "repaired"

    def test_metadata_is_readable_without_deserializing(self, store: ResultStore) -> None:
        """read_metadata and exists never unpickle the payload."""
        writer = _uncached(store.with_options(serializer="pickle"))
        writer.write(ExplodesWhenLoaded(), key="bomb")
        metadata = store.read_metadata("bomb")
        assert metadata.serializer == "pickle"
        assert metadata.storage_key == "bomb"
        assert metadata.size
        assert metadata.checksum
        assert store.exists("bomb")
        with pytest.raises(CorruptRecordError, match="deserialized"):
            store.read("bomb")

    def test_one_object_layout(self, store: ResultStore) -> None:
        """Without metadata storage a record is magic line, metadata line, payload."""
        if store.metadata_storage is not None:
            pytest.skip("this store splits metadata from payloads")
        record = store.write([1, 2], key="layout")
        raw = store.result_storage.read("layout")
        assert raw.startswith(MAGIC)
        header, _, payload = raw[len(MAGIC) :].partition(b"\n")
        assert orjson.loads(header)["checksum"] == record.metadata.checksum
        assert store.serializer.loads(payload) == [1, 2]

    def test_split_layout(self, store: ResultStore) -> None:
        """With metadata storage, metadata JSON and the raw payload are stored apart."""
        if store.metadata_storage is None:
            pytest.skip("this store keeps one object per record")
        store.write({"a": 1}, key="split/one")
        metadata = orjson.loads(store.metadata_storage.read("split/one"))
        assert metadata["storage_key"] == "split/one"
        assert metadata["serializer"] == store.serializer.name
        payload = store.result_storage.read("split/one")
        assert not payload.startswith(MAGIC)
        assert store.serializer.loads(payload) == {"a": 1}

    def test_memory_cache_follows_other_instances(self, store: ResultStore) -> None:
        """The LRU never serves a value another store instance replaced."""
        other = pickle.loads(pickle.dumps(store))
        store.write("first", key="shared")
        assert store.read("shared").result == "first"
        other.write("second", key="shared")
        assert store.read("shared").result == "second"
        _uncached(other).write("third", key="shared")
        assert store.read("shared").result == "third"

    def test_memory_cache_notices_writes_from_elsewhere(self, store: ResultStore) -> None:
        """The LRU never serves a value replaced or removed behind its back."""
        store.write("old", key="elsewhere")
        assert store.read("elsewhere").result == "old"
        store.write("new", key="donor")
        _copy_record(store, "donor", "elsewhere")
        assert store.read("elsewhere").result == "new"
        store.result_storage.delete("elsewhere")
        if store.metadata_storage is not None:
            store.metadata_storage.delete("elsewhere")
        with pytest.raises(ResultNotFound):
            store.read("elsewhere")

    def test_uncached_store_keeps_no_values(self, store: ResultStore) -> None:
        """cache_result_in_memory=False keeps nothing in the LRU."""
        uncached = _uncached(store)
        uncached.write("value", key="uncached")
        assert uncached.read("uncached").result == "value"
        assert record_cache.get(store.url_for("uncached")) is None

    def test_concurrent_writers_leave_a_complete_record(self, store: ResultStore) -> None:
        """Threads writing one key leave a complete record; readers never see a torn one."""
        values = [bytes([n]) * 200_000 for n in range(6)]
        reader, seen, wrong = _uncached(store), [], []
        writers_done = threading.Event()

        def write(value: bytes) -> None:
            for _ in range(3):
                store.write(value, key="contended")

        def read() -> None:
            while not writers_done.is_set():
                try:
                    seen.append(reader.read("contended").result)
                except ResultNotFound:
                    pass
                except CorruptRecordError as exc:
                    # Only the split layout (two objects) can be caught mid-write by a reader.
                    if store.metadata_storage is None:
                        wrong.append(exc)

        threads = [threading.Thread(target=write, args=(v,)) for v in values]
        watcher = threading.Thread(target=read)
        for thread in [watcher, *threads]:
            thread.start()
        for thread in threads:
            thread.join()
        writers_done.set()
        watcher.join()
        assert not wrong
        assert all(value in values for value in seen)
        assert reader.read("contended").result in values

    def test_store_survives_pickling(self, store: ResultStore) -> None:
        """A pickled store (as sent to workers) reads the same storage."""
        store.write({"k": 1}, key="pickled")
        clone = pickle.loads(pickle.dumps(store))
        assert clone.result_storage_url == store.result_storage_url
        assert _uncached(clone).read("pickled").result == {"k": 1}

    @pytest.mark.anyio
    async def test_async_twins(self, store: ResultStore) -> None:
        """The async methods do what their sync twins do."""
        record = await store.awrite("async", key="async/one")
        assert await store.aexists("async/one")
        assert (await store.aread("async/one")).result == "async"
        assert await store.aread_metadata("async/one") == record.metadata
        await store.adelete("async/one")
        assert not await store.aexists("async/one")

    def test_locking_delegates_to_the_lock_manager(self, store: ResultStore) -> None:
        """Lock methods delegate; writes by another holder of a locked key are refused."""
        key = f"lock-{uuid.uuid4().hex}"
        assert not store.supports_isolation_level("SERIALIZABLE")
        locked = store.with_options(lock_manager=MemoryLockManager())
        assert locked.supports_isolation_level("SERIALIZABLE")
        assert locked.acquire_lock(key, holder="me")
        assert locked.is_locked(key)
        assert locked.is_lock_holder(key, "me")
        with pytest.raises(StorageError, match="locked"):
            locked.write(1, key=key, holder="someone else")
        locked.write(1, key=key, holder="me")
        locked.release_lock(key, holder="me")
        assert not locked.is_locked(key)
        assert locked.wait_for_lock(key, timeout=0)
