"""Prefect-style storage objects: ``LocalFileSystem`` and ``RemoteFileSystem``.

Prefect code passes these blocks as ``result_storage``; fluvial accepts them unchanged (no
saving or loading: there is no server). Both hand :class:`fluvial.storage.ResultStore` an
fsspec filesystem and root through ``to_fsspec()``, and offer Prefect's ``read_path`` and
``write_path``. Writes are atomic, unlike Prefect's ``LocalFileSystem.write_path``.
fsspec is imported on first use, not when this module is imported.
"""

from __future__ import annotations

__all__ = ("LocalFileSystem", "RemoteFileSystem")

import os
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .storage._location import StorageLocation


class _FsspecStorage:
    """Shared behaviour: a lazily built location, path checks, read/write by path."""

    _location: StorageLocation | None = None
    basepath: str | None = None

    def to_fsspec(self) -> tuple[Any, str]:
        """Return ``(fsspec filesystem, root path)`` for a result store."""
        return self._get_location().to_fsspec()

    def _build_location(self) -> StorageLocation:
        raise NotImplementedError

    def _get_location(self) -> StorageLocation:
        if self._location is None:
            self._location = self._build_location()
        return self._location

    def _key(self, path: str) -> str:
        from .storage._location import validate_key

        location = self._get_location()
        if location.root:
            # Prefect accepts full paths inside the base path as well as relative ones.
            given = (self.basepath or "").rstrip("/")
            for prefix in (location.url, location.root, given):
                if prefix and path.startswith(prefix + "/"):
                    return validate_key(path[len(prefix) + 1 :])
        return validate_key(path)

    def read_path(self, path: str) -> bytes:
        """Return the bytes stored at *path* (relative to, or inside, the base path).

        Raises:
            ResultNotFound: nothing is stored there.
            StorageError: the storage could not be read.
        """
        return self._get_location().read(self._key(path))

    def write_path(self, path: str, content: bytes) -> str:
        """Store *content* at *path* atomically and return the full path written."""
        key = self._key(path)
        location = self._get_location()
        location.write(key, content)
        return location.path_for(key)

    async def aread_path(self, path: str) -> bytes:
        """Async :meth:`read_path`, run in a worker thread."""
        return await anyio.to_thread.run_sync(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        """Async :meth:`write_path`, run in a worker thread."""
        return await anyio.to_thread.run_sync(self.write_path, path, content)


class LocalFileSystem(_FsspecStorage):
    """A directory on this machine (Prefect's ``LocalFileSystem`` block).

    Args:
        basepath: the directory; ``~`` is expanded. ``None``: the current directory.
    """

    def __init__(self, basepath: str | os.PathLike[str] | None = None) -> None:
        self.basepath = None if basepath is None else os.fspath(basepath)

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={self.basepath!r})"

    def _build_location(self) -> StorageLocation:
        from .storage._location import resolve_location

        return resolve_location(os.path.abspath(os.path.expanduser(self.basepath or ".")))


class RemoteFileSystem(_FsspecStorage):
    """Any fsspec URL (Prefect's ``RemoteFileSystem`` block), e.g. ``s3://bucket/prefix``.

    Args:
        basepath: an fsspec URL with a scheme.
        settings: options for the fsspec filesystem (``endpoint_url``, ``key``,
            ``secret``, ``client_kwargs``...).
    """

    def __init__(self, basepath: str, settings: dict[str, Any] | None = None) -> None:
        if "://" not in basepath:
            raise ConfigurationError(
                f"RemoteFileSystem basepath {basepath!r} needs a scheme, e.g. s3://bucket/prefix;"
                " use LocalFileSystem for local paths"
            )
        self.basepath = basepath
        self.settings = dict(settings or {})

    def __repr__(self) -> str:
        return f"RemoteFileSystem(basepath={self.basepath!r})"

    def _build_location(self) -> StorageLocation:
        from .storage._location import resolve_location

        return resolve_location(self.basepath, self.settings)
