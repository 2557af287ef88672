"""A root directory on one fsspec filesystem: typed access, atomic writes, clear errors.

fsspec and s3fs are untyped and raise whatever their backend raises. Every call fluvial
makes into them goes through :class:`StorageLocation`, which turns backend errors into
:class:`StorageError` (naming the URL, the reason and what to check) at this one boundary.

Writes never leave a partial object at the final key: local files are written to a temporary
file in the same directory, fsynced and ``os.replace``-d over the key; every other filesystem
gets the whole object in one ``pipe_file`` call (one PUT on object stores, one dict swap on
``memory://``). fsspec is imported on first use so ``import fluvial`` stays cheap.
"""

from __future__ import annotations

__all__ = (
    "StorageLike",
    "StorageLocation",
    "SupportsFsspec",
    "default_result_storage",
    "resolve_location",
    "validate_key",
)

import os
import secrets
from contextlib import suppress
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from ..exceptions import ConfigurationError, MissingExtraError, ResultNotFound
from ._errors import storage_error

if TYPE_CHECKING:
    from collections.abc import Mapping

# Filesystems where a missing parent "directory" is never why a write failed, and where
# makedirs could have side effects (s3fs creates a *bucket* for a one-segment path).
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"})


@runtime_checkable
class SupportsFsspec(Protocol):
    """A storage object that can hand fluvial an fsspec filesystem and a root path in it."""

    def to_fsspec(self) -> tuple[Any, str]:
        """Return ``(filesystem, root)``; keys are stored under ``root``."""
        ...


#: What ``ResultStore`` accepts as storage: URL or path string, ``Path``, fsspec filesystem,
#: or an object with ``to_fsspec()`` (``LocalFileSystem``/``RemoteFileSystem``).
StorageLike: TypeAlias = "str | os.PathLike[str] | SupportsFsspec | Any"


def default_result_storage() -> str:
    """Return the default result storage in effect (``<FLUVIAL_HOME>/storage`` unless set)."""
    from .._config import run_config

    return run_config().result_storage_url


def validate_key(key: str) -> str:
    """Return *key* if it is a relative path that stays under the store's root.

    Raises:
        ConfigurationError: the key is empty, absolute, or has ``..``/``.``/empty segments.
    """
    if key.__class__ is str and key.isalnum():
        return key  # the common case (hashed cache keys): no separator, dot or drive letter
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"a storage key must be a non-empty string, not {key!r}")
    if "\\" in key or "\x00" in key or key[0] == "/" or (len(key) > 1 and key[1] == ":"):
        raise ConfigurationError(f"storage key {key!r} must be a relative path with '/' separators")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ConfigurationError(
            f"storage key {key!r} must stay under the store's root: no '..', '.' or empty parts"
        )
    return key


class StorageLocation:
    """A root path on an fsspec filesystem, with the operations a result store needs.

    ``store.result_storage`` and ``store.metadata_storage`` are these. Keys are relative
    paths under :attr:`root`, checked by :func:`validate_key`.
    """

    __slots__ = ("_local", "_url_base", "fs", "protocol", "root")

    def __init__(self, fs: Any, root: str) -> None:
        from fsspec.implementations.local import LocalFileSystem

        self.fs = fs
        self._local = isinstance(fs, LocalFileSystem)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.protocol: str = "file" if self._local else protocol
        if self._local:
            root = os.path.abspath(os.path.expanduser(root or "/"))
        self.root = root.rstrip("/")
        # Keys are appended to this base; a bare filesystem has its root marker ("/" or "").
        base = f"{self.root}/" if self.root else fs.root_marker
        self._url_base = f"file://{base}" if self._local else fs.unstrip_protocol(base)

    def __repr__(self) -> str:
        return f"StorageLocation({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageLocation) and (self.fs, self.root) == (other.fs, other.root)

    def __hash__(self) -> int:
        return hash(self.root)

    def __getstate__(self) -> tuple[Any, str]:
        return self.fs, self.root

    def __setstate__(self, state: tuple[Any, str]) -> None:
        StorageLocation.__init__(self, *state)

    def to_fsspec(self) -> tuple[Any, str]:
        """Return ``(filesystem, root)``."""
        return self.fs, self.root

    @property
    def url(self) -> str:
        """The root as a URL."""
        return self._url_base.rstrip("/") or self._url_base

    def path_for(self, key: str) -> str:
        """Return the filesystem path of *key* (validated) under the root."""
        return self._path(validate_key(key))

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else f"{self.fs.root_marker}{key}"

    def url_for(self, key: str) -> str:
        """Return the full URL of *key* (validated) under the root."""
        return self._url_base + validate_key(key)

    def read(self, key: str) -> bytes:
        """Return the whole object at *key*.

        Raises:
            ResultNotFound: nothing is stored there.
            StorageError: the storage could not be read.
        """
        return self._read(validate_key(key), None)

    def read_prefix(self, key: str, size: int) -> bytes:
        """Return up to the first *size* bytes at *key* (one ranged read where supported)."""
        return self._read(validate_key(key), size)

    def _read(self, key: str, size: int | None) -> bytes:
        path = self._path(key)
        try:
            if self._local:
                with open(path, "rb") as file:
                    return file.read() if size is None else file.read(size)
            data: bytes = self.fs.cat_file(path, start=None if size is None else 0, end=size)
            return data
        except (FileNotFoundError, IsADirectoryError) as exc:
            if not _is_missing_bucket(exc):
                url = self._url_base + key
                raise ResultNotFound(f"no result record at {url}", url=url) from exc
            raise storage_error(exc, self._url_base + key, "read") from exc
        except Exception as exc:
            raise storage_error(exc, self._url_base + key, "read") from exc

    def write(self, key: str, data: bytes) -> None:
        """Store *data* at *key* atomically: readers see the old object or the new one.

        Raises:
            StorageError: the storage could not be written.
        """
        path = self.path_for(key)
        try:
            if self._local:
                _write_local_atomic(path, data)
            else:
                self._pipe(path, data)
        except Exception as exc:
            raise storage_error(exc, self._url_base + key, "write") from exc

    def _pipe(self, path: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(path, data)
        except FileNotFoundError:
            if self.protocol in _OBJECT_STORES:
                raise
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
            self.fs.pipe_file(path, data)

    def delete(self, key: str) -> None:
        """Remove the object at *key*; a missing object is not an error."""
        path = self.path_for(key)
        try:
            if self._local:
                os.unlink(path)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise storage_error(exc, self._url_base + key, "delete") from exc


def _is_missing_bucket(exc: BaseException) -> bool:
    # s3fs reports a missing bucket as FileNotFoundError; that is a broken configuration,
    # not a cache miss, so it must not become ResultNotFound.
    cause = exc.__cause__
    return "bucket does not exist" in str(exc) or type(cause).__name__ == "NoSuchBucket"


def _write_local_atomic(path: str, data: bytes) -> None:
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    # Same directory, so os.replace is a rename within one filesystem (atomic on POSIX and
    # Windows); a name no key can take, so a crashed writer's leftover is never read.
    temp = os.path.join(directory, f".{name[:100]}.{secrets.token_hex(6)}.fluvial-tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            # Without fsync a power loss after the rename could expose an empty file.
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise


def _local_location(path: str) -> StorageLocation:
    from fsspec.implementations.local import LocalFileSystem

    return StorageLocation(LocalFileSystem(), path)


def _location_from_url(url: str, storage_options: Mapping[str, Any]) -> StorageLocation:
    if "://" not in url and "::" not in url:
        return _local_location(url)
    import fsspec.core

    protocol = url.split("://", 1)[0].split("::")[-1]
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except ImportError as exc:
        if protocol in ("s3", "s3a"):
            raise MissingExtraError("S3 result storage", "s3") from exc
        raise ConfigurationError(
            f"result storage {url!r} needs a package that is not installed: {exc}"
        ) from exc
    except ValueError as exc:
        raise ConfigurationError(f"result storage {url!r} is not a usable URL: {exc}") from exc
    except Exception as exc:
        raise storage_error(exc, url, "open") from exc
    return StorageLocation(fs, root)


def resolve_location(
    storage: StorageLike, storage_options: Mapping[str, Any] | None = None
) -> StorageLocation:
    """Turn anything ``ResultStore`` accepts as storage into a :class:`StorageLocation`.

    Raises:
        ConfigurationError: *storage* is of no supported kind, or its URL is not usable.
        MissingExtraError: an ``s3://`` URL without s3fs installed.
    """
    if isinstance(storage, StorageLocation):
        return storage
    if isinstance(storage, str):
        return _location_from_url(storage, storage_options or {})
    if isinstance(storage, PurePath | os.PathLike):
        return _local_location(os.fspath(storage))
    if isinstance(storage, SupportsFsspec):
        return StorageLocation(*storage.to_fsspec())
    if _is_fsspec_filesystem(storage):
        return StorageLocation(storage, "")
    raise ConfigurationError(
        f"cannot use {storage!r} as result storage: pass a URL or path string, a Path, an "
        "fsspec filesystem, or a LocalFileSystem/RemoteFileSystem"
    )


def _is_fsspec_filesystem(obj: object) -> bool:
    from fsspec.spec import AbstractFileSystem

    return isinstance(obj, AbstractFileSystem)
