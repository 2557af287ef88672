"""Stable hashes of Python values: equal inputs give equal keys in every process and machine.

A key is ``blake2b-128`` over canonical JSON. Each value is first turned into a *canonical
tree* of JSON types, then encoded by orjson with sorted keys, then hashed:

- ``str``, ``bool``, ``None``, 64-bit ``int`` and finite ``float`` stay as they are, so ``1``,
  ``1.0`` and ``True`` encode as ``1``, ``1.0`` and ``true`` and never collide.
- Every other kind becomes a one-key object whose key starts with ``"\\x00"`` (a *tag*):
  tuples, sets and frozensets (members sorted by their encoding, so their order, which depends
  on the hash seed, does not matter), dicts with non-``str`` keys, bytes, big ints, NaN and
  infinities, datetimes, dates, times, timedeltas, UUIDs, Decimals, paths, enums, complex
  numbers, dataclasses and pydantic models (class name + fields), numpy arrays (dtype, shape
  and a digest of the bytes) and pandas objects (``hash_pandas_object`` + names and dtypes).
  User dict keys that start with ``"\\x00"`` are escaped, so no user value can forge a tag.
- Functions hash by qualified name and their code (bytecode, constants, names, defaults and
  closure values), classes by qualified name and the code of their methods; never by address.
- Other objects are reduced the way pickle would (``__reduce_ex__``) and the reduction is
  canonicalized, so an ordinary instance hashes by its class name and its state. Only when that
  fails do cloudpickle bytes stand in, and they are stable for ordinary data only (classes
  defined in ``__main__`` or state holding sets may not be).
- Locks, sockets, open files, generators, coroutines, asyncio tasks and anything whose
  reduction raises have no stable identity: they raise :class:`UnhashableInputError`.

Why blake2b: it is in the standard library with no OpenSSL dependency (so it works where FIPS
mode blocks md5), it is faster than sha256 in software, and 128 bits give keys as short as
Prefect's md5 keys with negligible accidental collisions. Keys are stable across processes,
machines and hash seeds for one Python minor version and one version of this module (code
hashing depends on the bytecode, which changes between Python versions).

``hash()``, ``id()`` (except to detect cycles) and set iteration order never reach a key.
numpy, pandas, pydantic and cloudpickle are never imported here: a value can only be an array
or a model if its library is already loaded, so ``sys.modules`` is consulted instead.
"""

from __future__ import annotations

__all__ = ("UnhashableInputError", "code_digest", "describe_type", "stable_hash")

import copyreg
import dataclasses
import datetime as _dt
import enum
import functools
import io
import math
import sys
import threading
import types
import weakref
from collections import OrderedDict
from typing import Any

import orjson

from .exceptions import FluvialError

try:  # hashlib would also load OpenSSL (milliseconds at import) for a hash it does not need
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - CPython always has _blake2
    from hashlib import blake2b

_OPT = orjson.OPT_SORT_KEYS
_PERSON = b"fluvial.key.v1"  # blake2b personalization: bump when the encoding changes
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_INLINE_BYTES = 256  # longer bytes are replaced by their own digest in the tree
# Subclasses of these (namedtuples, str-like ids, ...) hash as the base value plus class name.
_BUILTIN_BASES: tuple[Any, ...] = (str, int, float, bytes, tuple, list, dict, set, frozenset)


class UnhashableInputError(FluvialError, TypeError):
    """A value has no stable hash: it is a lock, socket, open file, generator or the like.

    Attributes:
        type_name: the qualified name of the type that could not be hashed (the innermost one
            when the value was nested inside another).
    """

    def __init__(self, message: str, type_name: str | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name


def describe_type(value: Any) -> str:
    """Return the qualified name of ``type(value)``, e.g. ``"_thread.lock"``."""
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def stable_hash(*values: Any) -> str:
    """Return a 32-character hex digest of *values*, the same in every process for equal values.

    ``stable_hash(a, b)`` differs from ``stable_hash((a, b))`` and from ``stable_hash([a, b])``.

    Raises:
        UnhashableInputError: a value (or something inside it) has no stable identity.
    """
    tree = [_canon_top(value) for value in values]
    try:
        data = orjson.dumps(tree, option=_OPT)
    except orjson.JSONEncodeError:
        # Strings holding lone surrogates are not valid UTF-8; spell those out in hex.
        data = orjson.dumps(_fix_strings(tree), option=_OPT)
    return blake2b(data, digest_size=16, person=_PERSON).hexdigest()


def _canon_top(value: Any) -> Any:
    try:
        return _canon(value, {})
    except UnhashableInputError as exc:
        outer = describe_type(value)
        if exc.type_name is not None and exc.type_name != outer:
            raise UnhashableInputError(
                f"{exc} (found inside a {outer} value)", exc.type_name
            ) from exc
        raise
    except RecursionError as exc:
        raise UnhashableInputError(
            f"cannot hash a {describe_type(value)} value: it is nested too deeply",
            describe_type(value),
        ) from exc


# -- the canonical tree ------------------------------------------------------------------------


def _canon(value: Any, active: dict[int, int]) -> Any:
    """Turn *value* into JSON types; *active* maps ids of containers being walked to depth."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if _INT_MIN <= value <= _INT_MAX else {"\x00int": str(value)}
    if kind is float:
        return value if math.isfinite(value) else {"\x00float": repr(value)}
    if kind is list or kind is tuple or kind is dict or kind is set or kind is frozenset:
        ident = id(value)
        if ident in active:
            return {"\x00cycle": active[ident]}
        active[ident] = len(active)
        try:
            if kind is list:
                return _canon_seq(value, active)
            if kind is tuple:
                return {"\x00tuple": _canon_seq(value, active)}
            if kind is dict:
                return _canon_dict(value, active)
            return _canon_set(value, active, "set" if kind is set else "frozenset")
        finally:
            del active[ident]
    if kind is bytes:
        return _bytes_node("bytes", value)
    return _canon_other(value, active)


def _canon_seq(items: Any, active: dict[int, int]) -> Any:
    # Homogeneous lists of plain scalars (the common big case) pass through untouched.
    if items:
        first = type(items[0])
        if first is str and all(type(item) is str for item in items):
            return items
        if (
            first is int
            and all(type(item) is int for item in items)
            and min(items) >= _INT_MIN
            and max(items) <= _INT_MAX
        ):
            return items
        if (
            first is float
            and all(type(item) is float for item in items)
            and all(map(math.isfinite, items))
        ):
            return items
    return [_canon(item, active) for item in items]


def _escape_key(key: str) -> str:
    return "\x00" + key if key[:1] == "\x00" else key


def _canon_dict(mapping: Any, active: dict[int, int]) -> Any:
    if all(type(key) is str for key in mapping):
        return {_escape_key(key): _canon(item, active) for key, item in mapping.items()}
    # Non-str keys: pairs sorted by the key's encoding (so insertion order never matters).
    pairs = [(_encode(_canon(key, active)), _canon(item, active)) for key, item in mapping.items()]
    pairs.sort(key=_first)
    return {"\x00map": [[key, item] for key, item in pairs]}


def _canon_set(members: Any, active: dict[int, int], tag: str) -> Any:
    if all(type(item) is str for item in members):
        return {f"\x00{tag}:str": sorted(members)}
    encoded = sorted(_encode(_canon(item, active)) for item in members)
    return {f"\x00{tag}": encoded}


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _encode(tree: Any) -> str:
    try:
        return orjson.dumps(tree, option=_OPT).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(_fix_strings(tree), option=_OPT).decode()


def _bytes_node(tag: str, data: bytes | bytearray | memoryview) -> Any:
    raw = bytes(data)
    if len(raw) <= _INLINE_BYTES:
        return {f"\x00{tag}": raw.hex()}
    return {f"\x00{tag}#": blake2b(raw, digest_size=32).hexdigest()}


def _fix_strings(tree: Any) -> Any:
    """Copy *tree*, replacing strings that are not valid UTF-8 by a hex spelling."""
    kind = type(tree)
    if kind is str:
        try:
            tree.encode("utf-8")
        except UnicodeEncodeError:
            return {"\x00str": tree.encode("utf-8", "surrogatepass").hex()}
        return tree
    if kind is list:
        return [_fix_strings(item) for item in tree]
    if kind is dict:
        fixed: dict[str, Any] = {}
        for key, item in tree.items():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                key = "\x00s:" + key.encode("utf-8", "surrogatepass").hex()
            fixed[key] = _fix_strings(item)
        return fixed
    return tree


def _qualified(kind: Any) -> str:
    module = getattr(kind, "__module__", None) or "?"
    name = getattr(kind, "__qualname__", None) or getattr(kind, "__name__", None) or repr(kind)
    return f"{module}.{name}"


# Kinds with no stable identity, named in the error. Checked before trying a reduction
# (cloudpickle would read an open file's contents; the others would fail less clearly).
_LOCK_TYPES: tuple[type, ...] = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Semaphore,
    threading.Event,
    threading.Barrier,
)
_LIVE_TYPES: tuple[tuple[Any, str], ...] = (
    (_LOCK_TYPES, "a thread lock or synchronization primitive"),
    (threading.Thread, "a thread"),
    (io.IOBase, "an open file or stream"),
    (types.GeneratorType, "a generator"),
    (types.AsyncGeneratorType, "an async generator"),
    (types.CoroutineType, "a coroutine"),
    (types.FrameType, "a stack frame"),
    (types.TracebackType, "a traceback"),
)


def _live_kind(value: Any) -> str | None:
    for kinds, label in _LIVE_TYPES:
        if isinstance(value, kinds):
            return label
    socket = sys.modules.get("socket")
    if socket is not None and isinstance(value, socket.socket):
        return "a socket"
    aio = sys.modules.get("asyncio")
    if aio is not None and isinstance(value, aio.Future):
        return "an asyncio task or future"
    cf = sys.modules.get("concurrent.futures")
    if cf is not None and isinstance(value, cf.Future):
        return "a future"
    return None


def _unhashable(value: Any, reason: str) -> UnhashableInputError:
    name = describe_type(value)
    return UnhashableInputError(f"cannot hash a value of type {name}: {reason}", name)


def _canon_other(value: Any, active: dict[int, int]) -> Any:
    """Everything that is not a plain scalar or an exact builtin container."""
    # Enums before int/str subclasses (IntEnum, StrEnum).
    if isinstance(value, enum.Enum):
        return {"\x00enum": [_qualified(type(value)), value.name]}
    for moment in (_dt.datetime, _dt.date, _dt.time):  # datetime first: it is a date
        if isinstance(value, moment):
            tag = f"\x00{moment.__name__}"
            if type(value) is moment:
                return {tag: value.isoformat()}
            return {tag: [_qualified(type(value)), value.isoformat()]}
    if isinstance(value, _dt.timedelta):
        return {"\x00timedelta": [value.days, value.seconds, value.microseconds]}
    # A UUID, Decimal or path exists only if its module was imported: don't import it here.
    modules = sys.modules
    if "uuid" in modules and isinstance(value, modules["uuid"].UUID):
        return {"\x00uuid": value.hex}
    if "decimal" in modules and isinstance(value, modules["decimal"].Decimal):
        return {"\x00decimal": str(value)}
    if "pathlib" in modules and isinstance(value, modules["pathlib"].PurePath):
        return {"\x00path": value.as_posix()}
    if isinstance(value, complex):
        return {"\x00complex": [_canon(value.real, active), _canon(value.imag, active)]}
    if isinstance(value, bytearray | memoryview):
        return _bytes_node(type(value).__name__, value)
    if value is Ellipsis or value is NotImplemented:
        return {"\x00const": repr(value)}
    if isinstance(value, range):
        return {"\x00range": [value.start, value.stop, value.step]}

    special = _canon_library(value, active)
    if special is not None:
        return special

    ident = id(value)
    if ident in active:
        return {"\x00cycle": active[ident]}
    active[ident] = len(active)
    try:
        return _canon_structured(value, active)
    finally:
        del active[ident]


def _canon_structured(value: Any, active: dict[int, int]) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            _escape_key(field.name): _canon(getattr(value, field.name), active)
            for field in dataclasses.fields(value)
        }
        return {"\x00dataclass": [_qualified(type(value)), fields]}
    if isinstance(value, OrderedDict):
        pairs = [[_canon(key, active), _canon(item, active)] for key, item in value.items()]
        return {"\x00sub": [_qualified(type(value)), pairs]}
    for base in _BUILTIN_BASES:
        if isinstance(value, base):
            # Subclasses (namedtuples, str-like ids, ...) keep their class name.
            return {"\x00sub": [_qualified(type(value)), _canon(base(value), active)]}
    if isinstance(value, types.FunctionType):
        return _canon_function(value, active)
    if isinstance(value, type):
        return _canon_class(value)
    if isinstance(value, types.MethodType):
        return {"\x00method": [_canon(value.__self__, active), _canon(value.__func__, active)]}
    if isinstance(value, types.BuiltinFunctionType | types.BuiltinMethodType):
        owner = value.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            return {"\x00builtin": _qualified(value)}
        return {"\x00builtin": [_qualified(value), _canon(owner, active)]}
    if isinstance(value, functools.partial):
        return {
            "\x00partial": [
                _canon(value.func, active),
                _canon(value.args, active),
                _canon(value.keywords, active),
            ]
        }
    if isinstance(value, property):
        parts = [value.fget, value.fset, value.fdel]
        return {"\x00property": [_canon(part, active) for part in parts]}
    if isinstance(value, staticmethod | classmethod):
        return {"\x00" + type(value).__name__: _canon(value.__func__, active)}
    if isinstance(value, types.ModuleType):
        return {"\x00module": value.__name__}
    if isinstance(value, types.CodeType):
        return {"\x00code": code_digest(value)}
    if isinstance(value, BaseException):
        return {"\x00exception": [_qualified(type(value)), _canon(value.args, active)]}
    label = _live_kind(value)
    if label is not None:
        raise _unhashable(value, f"it is {label}, which has no stable identity to hash")
    return _canon_reduced(value, active)


def _canon_reduced(value: Any, active: dict[int, int]) -> Any:
    """Canonicalize what pickle would store: the reduction of *value*."""
    try:
        reduced = value.__reduce_ex__(4)
    except Exception as exc:
        return _pickled(value, exc)
    if isinstance(reduced, str):  # a global singleton
        return {"\x00global": [getattr(value, "__module__", None) or "?", reduced]}
    try:
        func, args, *rest = reduced
    except (TypeError, ValueError) as exc:
        return _pickled(value, exc)
    if func is copyreg.__newobj__:  # type: ignore[attr-defined]
        head: Any = ["new", _qualified(args[0]), _canon(args[1:], active)]
    elif func is copyreg.__newobj_ex__:  # type: ignore[attr-defined]
        head = ["new_ex", _qualified(args[0]), _canon(args[1], active), _canon(args[2], active)]
    elif func is copyreg._reconstructor:  # type: ignore[attr-defined]
        head = ["reconstruct", _qualified(args[0]), _qualified(args[1]), _canon(args[2], active)]
    else:
        # The reconstructing callable is named like pickle names it; its arguments are data.
        ref = _qualified(func) if isinstance(func, type | types.BuiltinFunctionType) else None
        head = [ref if ref is not None else _canon(func, active), _canon(args, active)]
    state = rest[0] if rest else None
    listitems = list(rest[1]) if len(rest) > 1 and rest[1] is not None else None
    dictitems = list(rest[2]) if len(rest) > 2 and rest[2] is not None else None
    return {
        "\x00object": [
            _qualified(type(value)),
            head,
            _canon(state, active),
            _canon(listitems, active),
            _canon(dictitems, active),
        ]
    }


def _pickled(value: Any, reduce_error: BaseException) -> Any:
    """Last resort: the digest of cloudpickle's bytes (see the module docstring)."""
    import cloudpickle

    try:
        data: bytes = cloudpickle.dumps(value, protocol=5)
    except Exception as exc:
        raise _unhashable(
            value, f"it cannot be pickled ({type(exc).__name__}: {exc})"
        ) from reduce_error
    return {"\x00pickle": blake2b(data, digest_size=32).hexdigest()}


# -- code, functions and classes ---------------------------------------------------------------

_code_digests: weakref.WeakKeyDictionary[types.CodeType, str] = weakref.WeakKeyDictionary()


def code_digest(code: types.CodeType) -> str:
    """Return a digest of what *code* does: bytecode, constants, names and signature shape.

    Line numbers and file names are left out, so editing other parts of a file (or comments)
    does not change it; nested code objects (inner functions, comprehensions) are included.
    """
    try:
        return _code_digests[code]
    except KeyError:
        pass
    consts = [
        {"\x00code": code_digest(item)} if isinstance(item, types.CodeType) else item
        for item in code.co_consts
    ]
    parts = [
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_code.hex(),
        _canon(consts, {}),
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        list(code.co_cellvars),
    ]
    digest = blake2b(orjson.dumps(parts, option=_OPT), digest_size=16).hexdigest()
    _code_digests[code] = digest
    return digest


def _canon_function(fn: types.FunctionType, active: dict[int, int]) -> Any:
    closure: list[Any] = []
    for cell in fn.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            closure.append({"\x00const": "empty-cell"})
            continue
        closure.append(_canon(contents, active))
    return {
        "\x00function": [
            _qualified(fn),
            code_digest(fn.__code__),
            _canon(fn.__defaults__, active),
            _canon(fn.__kwdefaults__, active),
            closure,
        ]
    }


def _canon_class(cls: type) -> Any:
    methods: dict[str, str] = {}
    for name, attr in vars(cls).items():
        target = attr.__func__ if isinstance(attr, staticmethod | classmethod) else attr
        if isinstance(target, property):
            target = target.fget
        code = getattr(target, "__code__", None)
        if isinstance(code, types.CodeType):
            methods[_escape_key(name)] = code_digest(code)
    bases = [_qualified(base) for base in cls.__mro__[1:]]
    return {"\x00class": [_qualified(cls), bases, methods]}


# -- optional libraries, only when already imported ---------------------------------------------


def _canon_library(value: Any, active: dict[int, int]) -> Any:
    modules = sys.modules
    if "numpy" in modules:
        np = modules["numpy"]
        if isinstance(value, np.ndarray):
            return _canon_ndarray(np, value, active)
        if isinstance(value, np.generic):
            return {"\x00npscalar": [value.dtype.str, _canon_ndarray(np, np.asarray(value), {})]}
    if "pandas" in modules:
        pd = modules["pandas"]
        if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
            return _canon_pandas(pd, value, active)
    pydantic_main = modules.get("pydantic.main")
    if pydantic_main is not None and isinstance(value, pydantic_main.BaseModel):
        # Python mode, not JSON mode: JSON mode turns sets into lists in iteration order,
        # which depends on the hash seed; the tree sorts set members instead.
        data = value.model_dump(mode="python", round_trip=True)
        return {"\x00pydantic": [_qualified(type(value)), _canon(data, active)]}
    return None


def _canon_ndarray(np: Any, array: Any, active: dict[int, int]) -> Any:
    if array.dtype.hasobject:
        return {"\x00ndarray": [array.dtype.str, list(array.shape), _canon(array.tolist(), active)]}
    dtype = array.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big"):
        dtype = dtype.newbyteorder("<")
        array = array.astype(dtype)
    data = np.ascontiguousarray(array).tobytes()
    descr = dtype.descr if dtype.fields is not None else dtype.str
    digest = blake2b(data, digest_size=32).hexdigest()
    return {"\x00ndarray": [_canon(descr, active), list(array.shape), digest]}


def _canon_pandas(pd: Any, obj: Any, active: dict[int, int]) -> Any:
    kind = _qualified(type(obj))
    if isinstance(obj, pd.DataFrame):
        meta: Any = [
            _canon(list(obj.columns), active),
            [str(dtype) for dtype in obj.dtypes],
            _canon(list(obj.index.names), active),
            str(obj.index.dtype),
        ]
    elif isinstance(obj, pd.Series):
        meta = [_canon(obj.name, active), str(obj.dtype), _canon(list(obj.index.names), active)]
    else:
        meta = [_canon(obj.name, active), str(obj.dtype)]
    try:
        rows = pd.util.hash_pandas_object(obj, index=not isinstance(obj, pd.Index))
        data = rows.to_numpy(dtype="<u8").tobytes()
        content: Any = blake2b(data, digest_size=32).hexdigest()
    except TypeError:
        # Cells hash_pandas_object can't take (lists, dicts): hash the cells themselves.
        if isinstance(obj, pd.DataFrame):
            cells = obj.to_dict("split")
            content = _canon([cells["index"], cells["data"]], active)
        else:
            content = _canon([list(obj.index), list(obj)], active)
    return {"\x00pandas": [kind, meta, content]}
