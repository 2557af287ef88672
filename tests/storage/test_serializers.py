"""Serializers: the registry, and values that must come back as the type that went in."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import threading
import uuid
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluvial.exceptions import ConfigurationError, SerializationError
from fluvial.storage import (
    CompressedSerializer,
    JSONSerializer,
    ResultStore,
    get_serializer,
    known_serializers,
    register_serializer,
)


@dataclasses.dataclass
class Box:
    label: str
    items: tuple[int, ...]
    computed: int = dataclasses.field(init=False, default=0)


class Colour(enum.Enum):
    RED = "red"


Pair = collections.namedtuple("Pair", "left right")


class Model(pydantic.BaseModel):
    when: dt.datetime
    tags: set[str]
    nested: Box | None = None


ROUND_TRIPS: dict[str, Any] = {
    "datetime-aware": dt.datetime(
        2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=5))
    ),
    "datetime-naive": dt.datetime(2024, 1, 2, 3, 4, 5),
    "date": dt.date(2024, 1, 2),
    "time": dt.time(3, 4, 5, 6),
    "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "uuid": uuid.UUID(int=12345),
    "decimal": Decimal("-1.2300"),
    "decimal-nan": Decimal("NaN"),
    "bytes": bytes(range(256)),
    "bytearray": bytearray(b"abc"),
    "set": {1, "a", (2, 3)},
    "frozenset": frozenset({1.5}),
    "tuple": (1, [2, (3,)], {"k": (4,)}),
    "empty-tuple": (),
    "complex": 1 + 2j,
    "big-int": -(2**100),
    "infinity": float("inf"),
    "enum": Colour.RED,
    "namedtuple": Pair(1, (2,)),
    "path": PurePosixPath("/a/b"),
    "dataclass": Box("x", (1, 2)),
    "pydantic": Model(when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), tags={"a"}, nested=Box("n", ())),
    "non-str-keys": {1: "a", (2, 3): "b", None: "c"},
    "tag-like-dict": {"__fluvial__": "datetime", "v": "not a date"},
    "ordered-keys": {"b": 1, "a": 2},
}


@pytest.mark.parametrize("name", ["json", "compressed/json"])
@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_json_round_trips_to_the_same_type(name: str, case: str) -> None:
    value = ROUND_TRIPS[case]
    serializer = get_serializer(name)
    result = serializer.loads(serializer.dumps(value))
    assert type(result) is type(value)
    if case == "decimal-nan":
        assert result.is_nan()
    else:
        assert result == value
    if isinstance(value, dict):
        assert list(result) == list(value)


def test_json_keeps_dataclass_derived_fields() -> None:
    box = Box("x", (1,))
    box.computed = 5  # not an __init__ field: rebuilt by the constructor, not stored
    result = JSONSerializer().loads(JSONSerializer().dumps(box))
    assert result == Box("x", (1,))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children)
        | st.tuples(children, children)
        | st.dictionaries(st.text(), children)
        | st.dictionaries(st.integers(), children)
        | st.frozensets(st.integers() | st.text())
    ),
    max_leaves=20,
)


@given(json_values)
def test_json_round_trips_nested_values(value: Any) -> None:
    serializer = JSONSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


def test_json_names_the_unsupported_type_and_suggests_pickle() -> None:
    with pytest.raises(SerializationError, match=r"threading\.Event.*pickle"):
        JSONSerializer().dumps({"ok": 1, "bad": threading.Event()})


def test_json_refuses_classes_defined_in_functions() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match="inside a function"):
        JSONSerializer().dumps(Local(1))


def test_json_load_failures_are_serialization_errors() -> None:
    with pytest.raises(SerializationError):
        JSONSerializer().loads(b"{not json")
    with pytest.raises(SerializationError, match="unknown tagged value"):
        JSONSerializer().loads(b'{"__fluvial__": "from-the-future", "v": 1}')
    with pytest.raises(SerializationError):
        JSONSerializer().loads(b'{"__fluvial__": "dataclass", "cls": "os:system", "v": {}}')


def test_pickle_failure_names_the_type() -> None:
    with pytest.raises(SerializationError, match="_thread.lock"):
        get_serializer("pickle").dumps(threading.Lock())
    with pytest.raises(SerializationError):
        get_serializer("pickle").loads(b"not a pickle")
    with pytest.raises(SerializationError, match="decompress"):
        get_serializer("compressed/pickle").loads(b"not zlib")


def test_pickle_handles_closures() -> None:
    offset = 3
    pickle_serializer = get_serializer("pickle")
    restored = pickle_serializer.loads(pickle_serializer.dumps(lambda x: x + offset))
    assert restored(1) == 4


def test_numpy_arrays_round_trip_through_json() -> None:
    numpy = pytest.importorskip("numpy")
    serializer = get_serializer("json")
    for value in [
        numpy.arange(12, dtype=numpy.float32).reshape(3, 4),
        numpy.arange(10)[::3],
        numpy.array(["a", "bc"]),
        numpy.array(["2024-01-01"], dtype="datetime64[ns]"),
    ]:
        result = serializer.loads(serializer.dumps(value))
        assert result.dtype == value.dtype
        assert numpy.array_equal(result, value)
    scalar = serializer.loads(serializer.dumps(numpy.int16(7)))
    assert type(scalar) is numpy.int16
    assert scalar == 7
    with pytest.raises(SerializationError, match="pickle"):
        serializer.dumps(numpy.array([object()]))


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"'nope'.*compressed/json.*json.*pickle"):
        get_serializer("nope")
    with pytest.raises(ConfigurationError):
        ResultStore("memory://unused", serializer="nope")
    assert {"pickle", "json", "compressed/pickle", "compressed/json"} <= set(known_serializers())


class Upper:
    """A user serializer: text, upper-cased on the way in."""

    name = "test-upper"

    def dumps(self, value: Any, /) -> bytes:
        return str(value).upper().encode()

    def loads(self, data: bytes, /) -> Any:
        return data.decode()


def test_register_serializer() -> None:
    register_serializer(Upper(), replace=True)
    with pytest.raises(ConfigurationError, match="already registered"):
        register_serializer(Upper())
    with pytest.raises(ConfigurationError, match="not a serializer"):
        register_serializer(object())  # type: ignore[arg-type]
    assert get_serializer("test-upper").loads(get_serializer("test-upper").dumps("a")) == "A"
    compressed = get_serializer("compressed/test-upper")
    assert isinstance(compressed, CompressedSerializer)
    assert compressed.loads(compressed.dumps("b")) == "B"


def test_unregistered_serializer_objects_work_in_their_store() -> None:
    class Reversed:
        name = "test-reversed"

        def dumps(self, value: Any, /) -> bytes:
            return str(value)[::-1].encode()

        def loads(self, data: bytes, /) -> Any:
            return data.decode()[::-1]

    store = ResultStore(f"memory://{uuid.uuid4().hex}", serializer=Reversed())
    store.write("abc", key="k")
    assert store.with_options(cache_result_in_memory=False).read("k").result == "abc"
    assert store.read_metadata("k").serializer == "test-reversed"


def test_a_failing_user_serializer_becomes_a_serialization_error() -> None:
    class Broken:
        name = "test-broken"

        def dumps(self, value: Any, /) -> bytes:
            raise KeyError("nope")

        def loads(self, data: bytes, /) -> Any:
            raise AssertionError

    store = ResultStore(f"memory://{uuid.uuid4().hex}", serializer=Broken())
    with pytest.raises(SerializationError, match=r"test-broken.*builtins\.int") as info:
        store.write(1, key="k")
    assert store.url_for("k") in str(info.value)
    with pytest.raises(SerializationError) as json_info:
        store.with_options(serializer="json").write(threading.Lock(), key="k")
    assert any(store.url_for("k") in note for note in json_info.value.__notes__)
    assert not store.exists("k")
