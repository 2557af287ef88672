"""Result storage: ``ResultStore``, records, serializers, locks and Prefect-style filesystems.

Everything here is imported only when persistence is used; fsspec itself is imported on the
first store built. See :mod:`fluvial.storage.store` for what each store method raises.
"""

from __future__ import annotations

__all__ = (
    "CompressedSerializer",
    "DaskLockManager",
    "FileSystemLockManager",
    "IsolationLevel",
    "JSONSerializer",
    "LocalFileSystem",
    "LockManager",
    "MemoryLockManager",
    "PickleSerializer",
    "RayLockManager",
    "RemoteFileSystem",
    "ResultRecord",
    "ResultRecordMetadata",
    "ResultStore",
    "Serializer",
    "StorageLike",
    "StorageLocation",
    "SupportsFsspec",
    "clear_memory_cache",
    "current_holder",
    "default_result_storage",
    "get_serializer",
    "known_serializers",
    "register_serializer",
    "resolve_result_store",
)

import importlib
from typing import TYPE_CHECKING, Any

from ..filesystems import LocalFileSystem, RemoteFileSystem
from ._cache import record_cache
from ._location import StorageLike, StorageLocation, SupportsFsspec, default_result_storage
from ._resolve import resolve_result_store
from .locks import (
    FileSystemLockManager,
    IsolationLevel,
    LockManager,
    MemoryLockManager,
    current_holder,
)
from .records import ResultRecord, ResultRecordMetadata
from .serializers import (
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
    Serializer,
    get_serializer,
    known_serializers,
    register_serializer,
)
from .store import ResultStore

if TYPE_CHECKING:
    from .dask_locks import DaskLockManager
    from .ray_locks import RayLockManager

# Cluster lock managers, imported on first access so that importing this package never
# imports their modules (nor, through them, dask or ray).
_LAZY = {"DaskLockManager": ".dask_locks", "RayLockManager": ".ray_locks"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def clear_memory_cache() -> None:
    """Forget every record in the process-wide LRU (tests, or to free memory)."""
    record_cache.clear()
