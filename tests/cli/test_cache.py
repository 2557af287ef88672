"""``fluvial cache ls|clear``: records listed from their headers, removed one by one, and
nothing else in the storage touched (the run journal, foreign files)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fluvial.runs import list_runs
from fluvial.storage import ResultStore
from fluvial.storage.records import MAGIC

from .conftest import FLOWS, Result, assert_user_error


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    return tmp_path / "results"


def _records(cli: Callable[..., Result], storage: Path | str, *extra: str) -> list[Any]:
    listed = cli("cache", "ls", "--storage", str(storage), "--json", *extra)
    assert listed.code == 0, listed
    records: list[Any] = json.loads(listed.out)
    return records


def _fill(cli: Callable[..., Result], storage: Path) -> None:
    """Two cached tasks per input (one expiring at once), the flow's result, a journal."""
    result = cli("run", f"{FLOWS}:caching", "-p", "n=2", "--storage", str(storage))
    assert result.code == 0, result
    time.sleep(0.01)  # let the 1 ms cache_expiration pass


def test_ls_shows_every_record_and_nothing_else(cli: Callable[..., Result], storage: Path) -> None:
    _fill(cli, storage)
    (storage / "notes.txt").write_text("the user's own file")
    records = _records(cli, storage)
    # short_lived x2, kept x2, the flow's result
    assert len(records) == 5
    assert not any(r["key"].startswith("runs/") or r["key"] == "notes.txt" for r in records)
    expiring = [r for r in records if r["metadata"]["expiration"] is not None]
    assert len(expiring) == 2
    assert all(r["size"] > len(MAGIC) for r in records)
    assert [r["key"] for r in _records(cli, storage, "--expired")] == sorted(
        r["key"] for r in expiring
    )
    table = cli("cache", "ls", "--storage", str(storage))
    assert "5 record(s)" in table.out
    assert table.out.count("expired ") == 2
    assert table.out.count("never") == 3


def test_clear_expired_then_all_keeps_the_journal(
    cli: Callable[..., Result], storage: Path
) -> None:
    _fill(cli, storage)
    (storage / "notes.txt").write_text("the user's own file")
    journal = sorted(p for p in (storage / "runs").rglob("*") if p.is_file())
    assert journal

    cleared = cli("cache", "clear", "--storage", str(storage), "--expired")
    assert cleared.out.startswith("Removed 2 expired record(s)")
    assert len(_records(cli, storage)) == 3
    assert cli("cache", "clear", "--storage", str(storage)).out.startswith("Removed 3 record(s)")
    assert _records(cli, storage) == []
    assert sorted(p for p in (storage / "runs").rglob("*") if p.is_file()) == journal
    assert (storage / "notes.txt").read_text() == "the user's own file"
    assert [run.flow_name for run in list_runs(str(storage))] == ["caching"]
    # A run after the clear executes its tasks again and persists them afresh.
    _fill(cli, storage)
    assert len(_records(cli, storage)) == 5


def test_clear_removes_abandoned_temporary_files_but_not_fresh_ones(
    cli: Callable[..., Result], storage: Path
) -> None:
    _fill(cli, storage)
    # What a writer killed between its write and its rename leaves (see _write_local_atomic).
    abandoned = storage / ".0a1b2c.5e6f7a8b9c0d.fluvial-tmp"
    abandoned.write_bytes(MAGIC + b"half a record")
    hours_ago = time.time() - 7200
    os.utime(abandoned, (hours_ago, hours_ago))
    in_progress = storage / ".3d4e5f.0123456789ab.fluvial-tmp"
    in_progress.write_bytes(MAGIC + b"being written right now")

    listed = cli("cache", "ls", "--storage", str(storage)).out
    assert "fluvial-tmp" not in listed
    cleared = cli("cache", "clear", "--storage", str(storage))
    assert "Removed 1 abandoned temporary file(s)" in cleared.out
    assert not abandoned.exists()
    assert in_progress.exists(), "a write that may still be going on is left alone"


def test_a_torn_record_is_listed_as_corrupt_and_cleared(
    cli: Callable[..., Result], storage: Path
) -> None:
    storage.mkdir()
    (storage / "torn").write_bytes(MAGIC + b'{"storage_key": "to')
    [record] = _records(cli, storage)
    assert record["metadata"] is None
    assert "truncated or garbled" in record["problem"]
    assert "corrupt" in cli("cache", "ls", "--storage", str(storage)).out
    assert _records(cli, storage, "--expired") == []
    cli("cache", "clear", "--storage", str(storage))
    assert not (storage / "torn").exists()


def test_prefix_and_memory_storage(cli: Callable[..., Result]) -> None:
    url = "memory://cli-cache-test"
    store = ResultStore(url)
    store.write(1, key="a/one")
    store.write(2, key="a/two")
    store.write(3, key="b/three")
    assert [r["key"] for r in _records(cli, url, "--prefix", "a")] == ["a/one", "a/two"]
    assert cli("cache", "clear", "--storage", url, "--prefix", "a/").out.startswith(
        "Removed 2 record(s)"
    )
    assert [r["key"] for r in _records(cli, url)] == ["b/three"]
    assert store.read("b/three").result == 3


def test_default_storage_is_under_fluvial_home(
    cli: Callable[..., Result], isolated_fluvial_home: Path
) -> None:
    assert cli("cache", "ls").out == f"No records in file://{isolated_fluvial_home}/storage.\n"
    ResultStore(isolated_fluvial_home / "storage").write("x", key="k")
    assert [r["key"] for r in _records(cli, isolated_fluvial_home / "storage")] == ["k"]
    assert "1 record(s)" in cli("cache", "ls").out


def test_unusable_storage_is_one_line(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert_user_error(cli("cache", "ls", "--storage", "nope://x"), "is not a usable URL")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = cli("cache", "clear", "--storage", f"{blocker}/inside")
    assert result.code == 0  # nothing there: nothing to remove
    assert result.out.startswith("Removed 0 record(s)")


def test_unreachable_s3_is_one_line_with_a_hint(shell: Callable[..., Result]) -> None:
    # The session points AWS clients at a dead local endpoint (tests/conftest.py).
    result = shell(
        "cache", "ls", "--storage", "s3://fluvial-tests/x", env={"AWS_MAX_ATTEMPTS": "1"}
    )
    assert_user_error(result, "s3://fluvial-tests/x")
    assert "check the endpoint URL" in result.err


def test_s3_records_and_runs(shell: Callable[..., Result], s3_server: object) -> None:
    from _s3 import S3Server

    assert isinstance(s3_server, S3Server)
    env = {"AWS_ENDPOINT_URL": s3_server.endpoint_url}
    url = s3_server.url()
    ran = shell("run", f"{FLOWS}:caching", "-p", "n=1", "--storage", url, env=env)
    assert ran.code == 0, ran.err
    listed = shell("cache", "ls", "--storage", url, "--json", env=env)
    assert len(json.loads(listed.out)) == 3, listed
    cleared = shell("cache", "clear", "--storage", url, env=env)
    assert cleared.out.startswith("Removed 3 record(s)"), cleared
    runs = shell("runs", "ls", "--storage", url, "--json", env=env)
    assert [run["flow_name"] for run in json.loads(runs.out)] == ["caching"], "journal kept"


def test_list_records_refuses_a_split_store(tmp_path: Path) -> None:
    from fluvial.exceptions import ConfigurationError

    store = ResultStore(tmp_path / "payloads", metadata_storage=tmp_path / "metadata")
    store.write(1, key="k")
    with pytest.raises(ConfigurationError, match="keeps metadata in"):
        store.list_records()
    assert [r.key for r in ResultStore(tmp_path / "metadata").list_records()] == []


def test_many_records_are_read_in_parallel_and_listed_in_order(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    store = ResultStore(tmp_path / "many")
    keys = [f"k{i:03d}" for i in range(60)]
    for key in reversed(keys):
        store.write(key, key=key)
    (tmp_path / "many" / "foreign.bin").write_bytes(b"\x00" * 10)
    assert [record.key for record in store.list_records()] == keys
    assert [r["key"] for r in _records(cli, tmp_path / "many")] == keys
    assert cli("cache", "clear", "--storage", str(tmp_path / "many")).out.startswith(
        "Removed 60 record(s)"
    )
    assert [p.name for p in (tmp_path / "many").iterdir()] == ["foreign.bin"]
