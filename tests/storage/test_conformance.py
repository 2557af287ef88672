"""The storage conformance suite over memory://, local files (one-object and split) and S3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from _s3 import S3Server
from fluvial.storage import ResultStore
from fluvial.testing import StorageConformance


class TestMemoryStorage(StorageConformance):
    @pytest.fixture
    def store(self) -> Iterator[ResultStore]:
        root = f"memory://fluvial-tests/{uuid.uuid4().hex}"
        yield ResultStore(root)
        fs = fsspec.filesystem("memory")
        if fs.exists(root):
            fs.rm(root, recursive=True)


class TestLocalStorage(StorageConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ResultStore:
        return ResultStore(tmp_path / "results")


class TestLocalSplitStorage(StorageConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ResultStore:
        return ResultStore(str(tmp_path / "results"), metadata_storage=tmp_path / "metadata")


class TestS3Storage(StorageConformance):
    @pytest.fixture
    def store(self, s3_server: S3Server) -> ResultStore:
        return ResultStore.from_url(s3_server.url(), **s3_server.storage_options())
