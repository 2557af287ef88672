"""Tagged JSON: values that plain JSON would flatten come back as the type that went in.

Plain JSON turns a tuple into a list, a datetime into a string and refuses sets. A cached
result must read back as the value the task returned, so :func:`encode` rewrites such values
into small tagged objects, ``{"__fluvial__": "<tag>", "v": ...}``, before orjson sees them,
and :func:`decode` rewrites them back. A user dict that happens to contain the tag key, or
that has non-string keys, is itself stored tagged, so no plain dict is ever misread as a tag.

Classes (dataclasses, pydantic models, enums, named tuples, paths) are recorded by import
path and re-imported on read, so only read results from storage you trust. Subclasses of
``str``, ``int``, ``float``, ``list`` and ``dict`` that are not enums come back as the base type.
"""

from __future__ import annotations

__all__ = ("Unencodable", "decode", "encode")

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import math
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import orjson

_TAG = "__fluvial__"
# orjson encodes integers up to 64 bits; larger ones travel as decimal strings.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class Unencodable(TypeError):
    """A value (possibly nested) has a type the tagged JSON codec does not know."""

    def __init__(self, value: Any, reason: str = "") -> None:
        self.type_name = _qualname(type(value))
        super().__init__(reason or f"values of type {self.type_name} cannot be encoded as JSON")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _tag(tag: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": value, **extra}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _class_path(value: Any) -> str:
    cls = type(value)
    if "<locals>" in cls.__qualname__:
        raise Unencodable(
            value,
            f"{_qualname(cls)} is defined inside a function, so it cannot be imported when "
            "the result is read back; define it at module level",
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def encode(value: Any) -> Any:
    """Return *value* rewritten into JSON-native types, with tags for everything else."""
    cls = type(value)
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        return value if _INT_MIN <= value <= _INT_MAX else _tag("int", str(value))
    if cls is float:
        return value if math.isfinite(value) else _tag("float", repr(value))
    if cls is list:
        return [encode(item) for item in value]
    if cls is dict:
        return _encode_dict(value)
    encoder = _ENCODERS.get(cls)
    if encoder is not None:
        return encoder(value)
    return _encode_other(value)


def _encode_dict(value: dict[Any, Any]) -> Any:
    if _TAG not in value and all(type(key) is str for key in value):
        return {key: encode(item) for key, item in value.items()}
    return _tag("dict", [[encode(key), encode(item)] for key, item in value.items()])


def _encode_set(tag: str) -> Callable[[Any], Any]:
    def encode_set(value: Any) -> Any:
        # Sorted by encoded form so equal sets always produce equal bytes.
        items = sorted((encode(item) for item in value), key=orjson.dumps)
        return _tag(tag, items)

    return encode_set


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    dt.datetime: lambda v: _tag("datetime", v.isoformat()),
    dt.date: lambda v: _tag("date", v.isoformat()),
    dt.time: lambda v: _tag("time", v.isoformat()),
    dt.timedelta: lambda v: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
    uuid.UUID: lambda v: _tag("uuid", str(v)),
    Decimal: lambda v: _tag("decimal", str(v)),
    bytes: lambda v: _tag("bytes", _b64(v)),
    bytearray: lambda v: _tag("bytearray", _b64(bytes(v))),
    complex: lambda v: _tag("complex", [encode(v.real), encode(v.imag)]),
    tuple: lambda v: _tag("tuple", [encode(item) for item in v]),
    set: _encode_set("set"),
    frozenset: _encode_set("frozenset"),
}


def _encode_other(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _tag("enum", encode(value.value), cls=_class_path(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return _tag("dataclass", fields, cls=_class_path(value))
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return _tag("namedtuple", [encode(item) for item in value], cls=_class_path(value))
    if isinstance(value, PurePath):
        return _tag("path", str(value), cls=_class_path(value))
    encoded = _encode_optional_library(value)
    if encoded is not None:
        return encoded
    bases: tuple[type[Any], ...] = (str, int, float, list, dict)
    for base in bases:
        if isinstance(value, base):
            return encode(base(value))
    raise Unencodable(value)


def _encode_optional_library(value: Any) -> Any:
    # Only look for pydantic and numpy if the program already imported them: a value of
    # their types cannot exist otherwise, and importing them here would cost every caller.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return _tag("pydantic", value.model_dump(mode="json"), cls=_class_path(value))
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return _encode_numpy(value, scalar=isinstance(value, numpy.generic))
    return None


def _encode_numpy(value: Any, *, scalar: bool) -> Any:
    if value.dtype.hasobject or value.dtype.names is not None:
        raise Unencodable(value, f"numpy values of dtype {value.dtype} cannot be encoded as JSON")
    data = _b64(value.tobytes())
    if scalar:
        return _tag("npscalar", data, dtype=value.dtype.str)
    return _tag("ndarray", data, dtype=value.dtype.str, shape=list(value.shape))


def decode(node: Any) -> Any:
    """Return the value that :func:`encode` turned into *node*."""
    cls = type(node)
    if cls is list:
        return [decode(item) for item in node]
    if cls is dict:
        tag = node.get(_TAG)
        if tag is None:
            return {key: decode(item) for key, item in node.items()}
        decoder = _DECODERS.get(tag)
        if decoder is None:
            raise ValueError(f"unknown tagged value {tag!r}; was it written by a newer fluvial?")
        return decoder(node)
    return node


def _import_class(path: str, check: Callable[[type], bool]) -> Any:
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type) or not check(obj):
        raise ValueError(f"{path} is not a class of the kind the record says it is")
    return obj


def _decode_dataclass(node: dict[str, Any]) -> Any:
    cls = _import_class(node["cls"], dataclasses.is_dataclass)
    return cls(**{key: decode(item) for key, item in node["v"].items()})


def _decode_pydantic(node: dict[str, Any]) -> Any:
    cls = _import_class(node["cls"], lambda c: hasattr(c, "model_validate_json"))
    # JSON-mode validation is the exact inverse of model_dump(mode="json").
    return cls.model_validate_json(orjson.dumps(node["v"]))


def _decode_numpy(node: dict[str, Any]) -> Any:
    # Only records written where numpy was installed get here; numpy is not a dependency.
    numpy = importlib.import_module("numpy")
    array = numpy.frombuffer(base64.b64decode(node["v"]), dtype=numpy.dtype(node["dtype"]))
    if node[_TAG] == "npscalar":
        return array[0]
    return array.reshape(node["shape"]).copy()


def _decode_set(node: dict[str, Any]) -> Any:
    items = [decode(item) for item in node["v"]]
    return set(items) if node[_TAG] == "set" else frozenset(items)


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "int": lambda n: int(n["v"]),
    "float": lambda n: float(n["v"]),
    "dict": lambda n: {decode(k): decode(v) for k, v in n["v"]},
    "datetime": lambda n: dt.datetime.fromisoformat(n["v"]),
    "date": lambda n: dt.date.fromisoformat(n["v"]),
    "time": lambda n: dt.time.fromisoformat(n["v"]),
    "timedelta": lambda n: dt.timedelta(*n["v"]),
    "uuid": lambda n: uuid.UUID(n["v"]),
    "decimal": lambda n: Decimal(n["v"]),
    "bytes": lambda n: base64.b64decode(n["v"]),
    "bytearray": lambda n: bytearray(base64.b64decode(n["v"])),
    "complex": lambda n: complex(decode(n["v"][0]), decode(n["v"][1])),
    "tuple": lambda n: tuple(decode(item) for item in n["v"]),
    "set": _decode_set,
    "frozenset": _decode_set,
    "enum": lambda n: _import_class(n["cls"], lambda c: issubclass(c, enum.Enum))(decode(n["v"])),
    "dataclass": _decode_dataclass,
    "namedtuple": lambda n: _import_class(n["cls"], lambda c: issubclass(c, tuple))(
        *(decode(item) for item in n["v"])
    ),
    "path": lambda n: _import_class(n["cls"], lambda c: issubclass(c, PurePath))(n["v"]),
    "pydantic": _decode_pydantic,
    "ndarray": _decode_numpy,
    "npscalar": _decode_numpy,
}
