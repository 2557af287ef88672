"""ResultStore specifics: the storage forms it accepts, the LRU, and store resolution."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import pytest

from _s3 import S3Server
from fluvial.exceptions import (
    ConfigurationError,
    CorruptRecordError,
    MissingExtraError,
    ResultNotFound,
)
from fluvial.storage import (
    LocalFileSystem,
    MemoryLockManager,
    RemoteFileSystem,
    ResultStore,
    default_result_storage,
    resolve_result_store,
)
from fluvial.storage._cache import RecordCache, record_cache
from fluvial.storage.records import ResultRecord, ResultRecordMetadata


def _memory_url() -> str:
    return f"memory://store-tests/{uuid.uuid4().hex}"


def _round_trip(store: ResultStore) -> None:
    store.write({"v": 1}, key="sub/k")
    assert store.with_options(cache_result_in_memory=False).read("sub/k").result == {"v": 1}


def test_plain_and_file_url_and_path_forms_are_one_storage(tmp_path: Path) -> None:
    forms = [str(tmp_path), f"file://{tmp_path}", tmp_path, LocalFileSystem(tmp_path)]
    ResultStore(forms[0]).write("shared", key="k")
    for form in forms:
        store = ResultStore(form)
        assert store.result_storage_url == f"file://{tmp_path}"
        assert store.with_options(cache_result_in_memory=False).read("k").result == "shared"
    assert (tmp_path / "k").is_file()


def test_relative_and_home_paths_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ResultStore("rel/dir").result_storage_url == f"file://{tmp_path}/rel/dir"
    assert ResultStore("~/x").result_storage_url == f"file://{tmp_path}/home/x"


def test_fsspec_filesystem_forms() -> None:
    fs = fsspec.filesystem("memory")
    root = f"/fs-form/{uuid.uuid4().hex}"
    store = ResultStore.from_filesystem(fs, root)
    _round_trip(store)
    assert fs.exists(f"{root}/sub/k")
    assert store.url_for("sub/k") == f"memory://{root}/sub/k"
    bare = ResultStore(fs)  # keys from the filesystem's root
    assert bare.with_options(cache_result_in_memory=False).read(root[1:] + "/sub/k").result


def test_remote_file_system_on_memory_and_s3(s3_server: S3Server) -> None:
    _round_trip(ResultStore(RemoteFileSystem(_memory_url())))
    settings = s3_server.storage_options()
    remote = RemoteFileSystem(s3_server.url(), settings=settings)
    store = ResultStore(remote)
    _round_trip(store)
    assert store.url_for("sub/k").startswith(f"s3://{s3_server.bucket}/")


def test_storage_options_reach_fsspec(s3_server: S3Server) -> None:
    options = s3_server.storage_options()
    store = ResultStore(s3_server.url(), storage_options=options)
    _round_trip(store)
    assert store.result_storage.fs.client_kwargs["endpoint_url"] == s3_server.endpoint_url


def test_unusable_storage_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a usable URL|needs a package"):
        ResultStore("nosuchprotocol://x")
    with pytest.raises(ConfigurationError, match="cannot use 42"):
        ResultStore(42)


def test_missing_s3fs_names_the_extra() -> None:
    script = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from fluvial.exceptions import MissingExtraError\n"
        "from fluvial.storage import ResultStore\n"
        "try:\n    ResultStore('s3://bucket/prefix')\n"
        "except MissingExtraError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert "pip install 'fluvial[s3]'" in out.stdout, out.stderr
    assert issubclass(MissingExtraError, ImportError)


def _run(script: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_fluvial_imports_neither_storage_nor_fsspec() -> None:
    modules = "('fsspec', 'fluvial.storage', 'fluvial.filesystems')"
    assert _run(f"import sys, fluvial; print([m for m in {modules} if m in sys.modules])") == "[]"
    lazy = (
        "import sys, fluvial.storage, fluvial.testing; print({'fsspec', 'pytest'} & {*sys.modules})"
    )
    assert _run(lazy) == "set()"


def test_default_storage_follows_fluvial_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluvial.settings import reload_settings

    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path))
    reload_settings()  # settings are read once; a changed environment is seen after a reload
    assert default_result_storage() == os.path.join(tmp_path, "storage")
    store = ResultStore()
    store.write(1, key="k")
    assert (tmp_path / "storage" / "k").is_file()


def test_long_headers_are_read_in_more_than_one_ranged_read() -> None:
    store = ResultStore(_memory_url())
    key = "/".join(["segment" * 20] * 40)  # a storage_key of ~5.6 KB in the header
    store.write(b"payload", key=key)
    assert store.read_metadata(key).storage_key == key
    assert store.with_options(cache_result_in_memory=False).read(key).result == b"payload"


def test_header_without_end_is_corrupt() -> None:
    store = ResultStore(_memory_url())
    store.result_storage.write("k", b"FLUVIAL-RESULT 1\n" + b"x" * 20_000)
    with pytest.raises(CorruptRecordError, match="truncated or garbled"):
        store.read_metadata("k")


def test_memory_cache_returns_the_same_object_until_overwritten() -> None:
    store = ResultStore(_memory_url())
    value = {"big": list(range(100))}
    store.write(value, key="k")
    assert store.read("k").result is value
    assert store.with_options(cache_result_in_memory=False).read("k").result is not value


def test_memory_cache_honours_expiration_of_cached_records() -> None:
    store = ResultStore(_memory_url())
    store.write(1, key="k", expiration=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.2))
    assert store.read("k").result == 1
    assert record_cache.get(store.url_for("k")) is not None
    time.sleep(0.3)
    assert not store.exists("k")
    with pytest.raises(ResultNotFound, match="expired"):
        store.read("k")
    assert record_cache.get(store.url_for("k")) is None


def test_record_cache_is_bounded_by_entries_and_bytes() -> None:
    cache = RecordCache(maxsize=3, max_bytes=100)

    def record(size: int) -> ResultRecord:
        return ResultRecord(ResultRecordMetadata("k", "pickle", size=size, checksum="c"), None)

    for n in range(5):
        cache.put(f"u{n}", record(10))
    assert len(cache) == 3
    assert cache.get("u0") is None
    assert cache.get("u4") is not None
    cache.put("huge", record(101))
    assert cache.get("huge") is None
    cache.put("a", record(60))
    cache.put("b", record(60))
    assert cache.get("a") is None
    assert cache.get("b") is not None


def test_with_options_keeps_the_storage() -> None:
    store = ResultStore(_memory_url(), serializer="json")
    other = store.with_options(serializer="pickle", lock_manager=MemoryLockManager())
    assert other.result_storage is store.result_storage
    assert (store.serializer.name, other.serializer.name) == ("json", "pickle")
    assert store.lock_manager is None
    assert other.with_lock_manager(None).lock_manager is None
    assert "json" in repr(store)
    assert store.result_storage_url in repr(store)


def test_resolve_result_store_reuses_stores_built_from_strings(tmp_path: Path) -> None:
    first = resolve_result_store(str(tmp_path), "json")
    assert resolve_result_store(str(tmp_path), "json") is first
    assert resolve_result_store(str(tmp_path), "pickle") is not first
    assert resolve_result_store(first) is first
    changed = resolve_result_store(first, "pickle", cache_result_in_memory=False)
    assert changed.serializer.name == "pickle"
    assert not changed.cache_result_in_memory
    assert changed.result_storage is first.result_storage


def test_lock_methods_need_a_lock_manager() -> None:
    store = ResultStore(_memory_url())
    assert store.supports_isolation_level("READ_COMMITTED")
    assert not store.supports_isolation_level("SERIALIZABLE")
    assert not store.supports_isolation_level("NOT-A-LEVEL")
    assert not store.is_locked("k")
    assert store.wait_for_lock("k")
    with pytest.raises(ConfigurationError, match="lock manager"):
        store.acquire_lock("k")
