"""Prefect-style LocalFileSystem and RemoteFileSystem."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from _s3 import S3Server
from fluvial.exceptions import ConfigurationError, ResultNotFound
from fluvial.filesystems import LocalFileSystem, RemoteFileSystem


def test_local_read_and_write_paths(tmp_path: Path) -> None:
    fs = LocalFileSystem(basepath=tmp_path)
    written = fs.write_path("a/b.bin", b"content")
    assert written == str(tmp_path / "a" / "b.bin")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"content"
    assert fs.read_path("a/b.bin") == b"content"
    assert fs.read_path(written) == b"content"  # full paths inside the base path work too
    with pytest.raises(ResultNotFound):
        fs.read_path("missing")
    with pytest.raises(ConfigurationError):
        fs.read_path("../outside")
    with pytest.raises(ConfigurationError):
        fs.read_path("/etc/passwd")
    assert not [p for p in (tmp_path / "a").iterdir() if p.name != "b.bin"]  # no temp left


def test_local_default_base_is_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    LocalFileSystem().write_path("here.txt", b"x")
    assert (tmp_path / "here.txt").read_bytes() == b"x"
    assert "LocalFileSystem" in repr(LocalFileSystem())


def test_remote_needs_a_scheme() -> None:
    with pytest.raises(ConfigurationError, match="scheme"):
        RemoteFileSystem("/local/path")


def test_remote_on_memory_and_s3(s3_server: S3Server) -> None:
    memory = RemoteFileSystem(f"memory://fs-tests/{uuid.uuid4().hex}")
    memory.write_path("k", b"v")
    assert memory.read_path("k") == b"v"
    url = s3_server.url()
    s3 = RemoteFileSystem(url, settings=s3_server.storage_options())
    s3.write_path("dir/k", b"s3 bytes")
    assert s3.read_path("dir/k") == b"s3 bytes"
    assert s3.read_path(f"{url}/dir/k") == b"s3 bytes"
    assert url in repr(s3)


@pytest.mark.anyio
async def test_async_twins(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    await fs.awrite_path("k", b"async")
    assert await fs.aread_path("k") == b"async"


def test_remote_accepts_paths_spelled_like_its_base_path() -> None:
    base = f"memory://fs-tests/{uuid.uuid4().hex}"
    fs = RemoteFileSystem(base)
    fs.write_path(f"{base}/x/y", b"1")
    assert fs.read_path("x/y") == b"1"
