"""Turn a task's or flow's ``result_storage`` option into a ``ResultStore``, reusing stores.

Building a store parses its URL and looks up its fsspec filesystem; the engine asks for a
store on every task run, so stores built from strings and paths are kept and reused.
"""

from __future__ import annotations

__all__ = ("resolve_result_store",)

import os
from typing import Any

from ._location import StorageLike, default_result_storage
from .locks import LockManager
from .serializers import Serializer
from .store import ResultStore

_resolved: dict[tuple[Any, ...], ResultStore] = {}


def resolve_result_store(
    storage: ResultStore | StorageLike | None = None,
    serializer: str | Serializer | None = None,
    *,
    metadata_storage: StorageLike | None = None,
    lock_manager: LockManager | None = None,
    cache_result_in_memory: bool | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ResultStore:
    """Return a store for a task's or flow's ``result_storage`` option.

    A :class:`ResultStore` is returned as is, or with the given non-``None`` options applied;
    anything else builds one (``None``: :func:`default_result_storage`). Stores built from
    URL or path strings are reused, since building one parses the URL on every task run.
    """
    if isinstance(storage, ResultStore):
        return _with_changes(
            storage,
            serializer=serializer,
            metadata_storage=metadata_storage,
            lock_manager=lock_manager,
            cache_result_in_memory=cache_result_in_memory,
        )
    _refuse_block_slug(storage)
    keep = True if cache_result_in_memory is None else cache_result_in_memory
    options = (metadata_storage, serializer or "pickle", lock_manager, keep, storage_options)
    key = _reuse_key(storage or default_result_storage(), *options)
    store = None if key is None else _resolved.get(key)
    if store is None:
        store = ResultStore(storage, *options)
        if key is not None:
            if len(_resolved) >= 128:
                _resolved.clear()
            _resolved[key] = store
    return store


def _with_changes(store: ResultStore, **changes: Any) -> ResultStore:
    changes = {name: value for name, value in changes.items() if value is not None}
    return store.with_options(**changes) if changes else store


def _reuse_key(*parts: Any) -> tuple[Any, ...] | None:
    # Only plain, hashable descriptions are reused: a filesystem object or a dict of
    # options could change behind the cache's back.
    if parts[-1] is not None:
        return None
    for part in parts:
        if not isinstance(part, str | bool | os.PathLike | LockManager | None):
            return None
        try:
            hash(part)
        except TypeError:
            return None
    return parts


# Prefect's storage block types: a "type/name" string naming one is a saved block in Prefect,
# which fluvial has no server to load from; it would otherwise silently become a local folder.
_BLOCK_TYPES = (
    "local-file-system",
    "remote-file-system",
    "s3-bucket",
    "s3",
    "gcs-bucket",
    "gcs",
    "azure-blob-storage",
    "azure",
    "smb",
    "github",
    "gitlab-repository",
)


def _refuse_block_slug(storage: Any) -> None:
    if not isinstance(storage, str) or storage.count("/") != 1 or "://" in storage:
        return
    block_type = storage.split("/", 1)[0]
    if block_type in _BLOCK_TYPES:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(
            f"result_storage={storage!r} looks like a Prefect block slug; fluvial has no block "
            "server. Pass the location itself: a URL such as 's3://bucket/prefix' (credentials "
            "via ResultStore.from_url(url, key=..., secret=...)), a local path, or a "
            "LocalFileSystem/RemoteFileSystem object"
        )
