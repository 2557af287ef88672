"""Stable hashes of Python values: equal inputs give equal keys in every process and machine.

Canonical JSON (orjson with sorted keys) comes first because it is fast and does not depend on
object identity or interpreter details. Values JSON cannot express fall back to cloudpickle
bytes, which are stable for ordinary data but not for every object (classes defined in
``__main__`` among them). ``hash()``, ``id()`` and set iteration order are never used.
"""

from __future__ import annotations

__all__ = ("UnhashableInputError", "stable_hash")

import hashlib
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class UnhashableInputError(TypeError):
    """A value could be neither JSON-encoded nor pickled, so it has no stable hash."""


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        # Sorting the encoded members makes the order independent of hash seeds.
        return sorted(orjson.dumps(item, default=_default, option=_OPTIONS) for item in value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, tuple):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return {"__class__": _qualname(value), "data": dump(mode="json")}
    raise TypeError


def _qualname(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _canonical_bytes(value: Any) -> bytes:
    try:
        return b"j" + orjson.dumps(value, default=_default, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        pass
    import cloudpickle

    try:
        pickled: bytes = cloudpickle.dumps(value, protocol=5)
        return b"p" + pickled
    except Exception as exc:
        raise UnhashableInputError(
            f"{type(value).__name__} values cannot be hashed: {type(exc).__name__}: {exc}"
        ) from exc


def stable_hash(*values: Any) -> str:
    """Return a hex digest of *values* that is the same in every process for equal values.

    Raises:
        UnhashableInputError: a value is neither JSON-encodable nor picklable.
    """
    digest = hashlib.blake2b(digest_size=16)
    for value in values:
        digest.update(_canonical_bytes(value))
        digest.update(b"\x00")
    return digest.hexdigest()
