"""Turn task results into bytes and back, by serializer name.

A stored record names its serializer (``"pickle"``, ``"json"``, ``"compressed/pickle"``,
``"compressed/json"`` or one a user registered), never a class path, so a result written
today stays readable after fluvial's classes move.

Reading a pickle executes code chosen by whoever wrote it: only read results from storage
you trust. The ``json`` serializer re-imports the dataclasses, pydantic models and enums a
record names, which is safer but still assumes trusted storage.
"""

from __future__ import annotations

__all__ = (
    "CompressedSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "get_serializer",
    "known_serializers",
    "register_serializer",
)

import pickle
import zlib
from typing import Any, Protocol, runtime_checkable

import cloudpickle
import orjson

from ..exceptions import ConfigurationError, SerializationError
from . import _json_codec


@runtime_checkable
class Serializer(Protocol):
    """Anything with a ``name`` and a ``dumps``/``loads`` pair that round-trips values."""

    @property
    def name(self) -> str:
        """The name records store to find this serializer again."""
        ...

    def dumps(self, value: Any, /) -> bytes:
        """Return *value* as bytes; raise :class:`SerializationError` if it can't be."""
        ...

    def loads(self, data: bytes, /) -> Any:
        """Return the value that :meth:`dumps` turned into *data*."""
        ...


def _type_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


class PickleSerializer:
    """cloudpickle: handles almost any value; only load results from storage you trust."""

    name = "pickle"

    def dumps(self, value: Any, /) -> bytes:
        """Pickle *value* with cloudpickle (so lambdas and local classes work)."""
        try:
            data: bytes = cloudpickle.dumps(value)  # cloudpickle is untyped
        except Exception as exc:
            raise SerializationError(
                f"could not pickle a value of type {_type_name(value)}: {exc}"
            ) from exc
        return data

    def loads(self, data: bytes, /) -> Any:
        """Unpickle *data*; this runs code the writer chose."""
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError(f"could not unpickle the stored value: {exc!r}") from exc


class JSONSerializer:
    """orjson with tags, so datetimes, sets, tuples, dataclasses and models keep their type.

    Supported beyond plain JSON: ``datetime``/``date``/``time``/``timedelta``, ``UUID``,
    ``Decimal``, ``bytes``, ``set``/``frozenset``/``tuple``, ``complex``, enums, paths,
    named tuples, dataclass instances, pydantic models and (when installed) numpy arrays.
    Anything else raises :class:`SerializationError`; use ``"pickle"`` for such values.
    """

    name = "json"

    def dumps(self, value: Any, /) -> bytes:
        """Encode *value* as tagged JSON."""
        try:
            return orjson.dumps(_json_codec.encode(value))
        except (_json_codec.Unencodable, orjson.JSONEncodeError) as exc:
            raise SerializationError(
                f"the json serializer cannot store a value of type {_type_name(value)}: {exc}; "
                "use serializer='pickle' (or 'compressed/pickle') for arbitrary Python objects"
            ) from exc

    def loads(self, data: bytes, /) -> Any:
        """Decode tagged JSON back into the values that were encoded."""
        try:
            return _json_codec.decode(orjson.loads(data))
        except Exception as exc:
            raise SerializationError(f"could not decode the stored JSON value: {exc!r}") from exc


class CompressedSerializer:
    """Another serializer's bytes, compressed with zlib.

    zlib rather than lzma (Prefect's choice): lzma compresses somewhat smaller but is several
    times slower to compress, and results are compressed on the task's own critical path.
    """

    def __init__(self, serializer: Serializer | str, *, level: int = 6) -> None:
        if isinstance(serializer, str):
            serializer = get_serializer(serializer)
        self.serializer = serializer
        self.level = level
        self.name = f"compressed/{serializer.name}"

    def dumps(self, value: Any, /) -> bytes:
        """Serialize with the inner serializer, then compress."""
        return zlib.compress(self.serializer.dumps(value), self.level)

    def loads(self, data: bytes, /) -> Any:
        """Decompress, then deserialize with the inner serializer."""
        try:
            raw = zlib.decompress(data)
        except zlib.error as exc:
            raise SerializationError(f"could not decompress the stored value: {exc}") from exc
        return self.serializer.loads(raw)


_registry: dict[str, Serializer] = {}


def register_serializer(serializer: Serializer, *, replace: bool = False) -> None:
    """Make *serializer* available under ``serializer.name``.

    Raises:
        ConfigurationError: the name is taken (pass ``replace=True``) or *serializer*
            lacks ``name``/``dumps``/``loads``.
    """
    if not isinstance(serializer, Serializer) or not isinstance(serializer.name, str):
        raise ConfigurationError(
            f"{serializer!r} is not a serializer: it needs a str `name`, `dumps` and `loads`"
        )
    if serializer.name in _registry and not replace:
        raise ConfigurationError(
            f"a serializer named {serializer.name!r} is already registered; "
            "pass replace=True to replace it"
        )
    _registry[serializer.name] = serializer


def known_serializers() -> list[str]:
    """Return the registered serializer names, sorted."""
    return sorted(_registry)


def get_serializer(name_or_serializer: str | Serializer) -> Serializer:
    """Return the serializer registered under a name, or the serializer object given.

    ``"compressed/<name>"`` works for any registered ``<name>``.

    Raises:
        ConfigurationError: no serializer has that name; the message lists known ones.
    """
    if not isinstance(name_or_serializer, str):
        if not isinstance(name_or_serializer, Serializer):
            raise ConfigurationError(f"{name_or_serializer!r} is not a serializer or a name")
        return name_or_serializer
    serializer = _registry.get(name_or_serializer)
    if serializer is not None:
        return serializer
    prefix, _, inner = name_or_serializer.partition("/")
    if prefix == "compressed" and inner in _registry:
        serializer = CompressedSerializer(_registry[inner])
        _registry[serializer.name] = serializer
        return serializer
    raise ConfigurationError(
        f"no serializer named {name_or_serializer!r}; known: {', '.join(known_serializers())} "
        "(register your own with fluvial.storage.register_serializer)"
    )


for _builtin in (PickleSerializer(), JSONSerializer()):
    register_serializer(_builtin)
    register_serializer(CompressedSerializer(_builtin))
