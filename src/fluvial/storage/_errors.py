"""Translate fsspec, s3fs and botocore errors into one :class:`StorageError` that helps.

Backends raise a zoo of exceptions (``PermissionError``, ``FileNotFoundError`` for a missing
bucket, botocore's ``EndpointConnectionError``, ``NoCredentialsError``, aiohttp errors...).
Callers of a result store should catch one class and read a message that names the URL, the
reason and what to check. Classes are matched by name so botocore and aiohttp are never
imported here.
"""

from __future__ import annotations

__all__ = ("storage_error",)

from ..exceptions import StorageError

_CONNECTION_ERRORS = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "TimeoutError",
        "FSTimeoutError",
        "ConnectionRefusedError",
    }
)
_CREDENTIAL_ERRORS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "InvalidAccessKeyId", "ExpiredToken"}
)


def _names(exc: BaseException) -> set[str]:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if exc.__cause__ is not None:
        names |= {cls.__name__ for cls in type(exc.__cause__).__mro__}
    return names


def _hint(exc: BaseException, action: str) -> str:
    names = _names(exc)
    text = str(exc)
    if names & _CONNECTION_ERRORS:
        return (
            "check the endpoint URL (storage_options, e.g. client_kwargs={'endpoint_url': ...}), "
            "that the service is running and that the network reaches it"
        )
    if names & _CREDENTIAL_ERRORS or "credentials" in text.lower():
        return (
            "check the credentials: pass key/secret in storage_options or set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if "bucket does not exist" in text or "NoSuchBucket" in names:
        return "check the bucket name in the storage URL and that the bucket exists"
    if isinstance(exc, PermissionError):
        return f"check that this user (or the credentials in storage_options) may {action} there"
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return "check the storage path: a part of it is a file, not a directory"
    if isinstance(exc, FileNotFoundError):
        return "check that the storage location exists"
    return "check the storage URL, its storage_options, and that the location is reachable"


def storage_error(exc: BaseException, url: str, action: str) -> StorageError:
    """Return a :class:`StorageError` for *exc*, raised while trying to *action* *url*.

    Raise it with ``from exc`` so the backend's traceback stays attached.
    """
    if isinstance(exc, StorageError):
        return exc
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return StorageError(f"could not {action} {url}: {reason}; {_hint(exc, action)}", url=url)
