"""stable_hash: equal values give equal keys everywhere; different values, different keys."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import decimal
import enum
import json
import math
import os
import pickle
import random
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluvial._hashing import UnhashableInputError, code_digest, stable_hash

# -- strategies --------------------------------------------------------------------------------

hashable_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64 - 5, max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
values = st.recursive(
    hashable_scalars
    | st.frozensets(hashable_scalars, max_size=4)
    | st.sets(hashable_scalars, max_size=4),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
        | st.dictionaries(st.integers() | st.text(max_size=2), children, max_size=4)
    ),
    max_leaves=12,
)


def typed(value: Any) -> Any:
    """A comparison form in which equal means "same types all the way down, same values"."""
    kind = type(value)
    if kind is float:
        return ("float", "nan" if math.isnan(value) else value.hex())
    if kind in (list, tuple):
        return (kind.__name__, tuple(typed(item) for item in value))
    if kind is dict:
        return ("dict", frozenset((typed(k), typed(v)) for k, v in value.items()))
    if kind in (set, frozenset):
        return (kind.__name__, frozenset(typed(item) for item in value))
    return (kind.__name__, value)


def rebuild(value: Any, rnd: random.Random) -> Any:
    """An equal copy built in another order: dicts re-inserted and sets re-filled shuffled."""
    kind = type(value)
    if kind in (list, tuple):
        return kind(rebuild(item, rnd) for item in value)
    if kind is dict:
        items = list(value.items())
        rnd.shuffle(items)
        return {k: rebuild(v, rnd) for k, v in items}
    if kind in (set, frozenset):
        members = list(value)
        rnd.shuffle(members)
        return kind(members)
    if kind is bytes:
        return bytes(bytearray(value))
    return value


# -- equal values, equal keys; different values, different keys ----------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, rnd=st.randoms(use_true_random=False))
def test_equal_values_built_in_any_order_give_equal_keys(value: Any, rnd: random.Random) -> None:
    assert stable_hash(value) == stable_hash(rebuild(value, rnd))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(first=values, second=values)
def test_keys_are_equal_exactly_when_values_are_equal_with_their_types(
    first: Any, second: Any
) -> None:
    assert (stable_hash(first) == stable_hash(second)) == (typed(first) == typed(second))


@given(items=st.dictionaries(st.text(max_size=5), st.integers(), min_size=2), data=st.data())
def test_dict_insertion_order_does_not_matter(items: dict[str, int], data: st.DataObject) -> None:
    order = data.draw(st.permutations(list(items.items())))
    assert stable_hash(items) == stable_hash(dict(order))


@given(
    members=st.lists(st.text(max_size=5) | st.integers(), min_size=2, unique=True),
    data=st.data(),
)
def test_set_and_frozenset_order_does_not_matter(members: list[Any], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(members))
    assert stable_hash(set(members)) == stable_hash(set(shuffled))
    assert stable_hash(frozenset(members)) == stable_hash(frozenset(shuffled))


def test_numbers_and_bools_that_compare_equal_still_get_different_keys() -> None:
    keys = [stable_hash(v) for v in (1, 1.0, True, "1", b"1", [1], (1,), {1}, frozenset({1}))]
    assert len(set(keys)) == len(keys)
    assert len({stable_hash(0), stable_hash(0.0), stable_hash(False), stable_hash(None)}) == 4


def test_containers_of_different_kinds_are_distinguished() -> None:
    keys = [
        stable_hash(v)
        for v in ([1, 2], (1, 2), {1, 2}, frozenset({1, 2}), {1: 2}, {"1": 2}, [[1, 2]], "12")
    ]
    assert len(set(keys)) == len(keys)
    # several arguments are not one tuple or one list
    assert len({stable_hash(1, 2), stable_hash((1, 2)), stable_hash([1, 2])}) == 3


def test_user_dict_keys_cannot_forge_internal_tags() -> None:
    assert stable_hash({"\x00tuple": [1, 2]}) != stable_hash((1, 2))
    assert stable_hash({"\x00set:str": ["a"]}) != stable_hash({"a"})
    assert stable_hash({"\x00\x00x": 1}) != stable_hash({"\x00x": 1})


def test_special_floats_big_ints_and_odd_strings() -> None:
    assert stable_hash(float("nan")) == stable_hash(float("nan"))
    assert stable_hash(float("nan")) != stable_hash(None)
    assert stable_hash(float("inf")) != stable_hash(float("-inf"))
    assert stable_hash(2**64 - 1) != stable_hash(2**64)
    assert stable_hash(2**100) == stable_hash(2**100)
    assert stable_hash(-(2**100)) != stable_hash(2**100)
    assert stable_hash("\ud800") == stable_hash("\ud800")  # lone surrogate: not valid UTF-8
    assert stable_hash("\ud800") != stable_hash("\ud801")
    assert stable_hash({"\ud800": 1}) != stable_hash({"\ud801": 1})


def test_key_is_32_hex_characters() -> None:
    key = stable_hash({"a": [1, 2, 3]})
    assert len(key) == 32
    int(key, 16)


def test_large_homogeneous_lists_and_bytes() -> None:
    numbers = list(range(100_000))
    assert stable_hash(numbers) == stable_hash(list(range(100_000)))
    assert stable_hash(numbers) != stable_hash([*numbers[:-1], 0])
    assert stable_hash([1.5, 2.5]) != stable_hash([1.5, float("nan")])
    blob = bytes(range(256)) * 100
    assert stable_hash(blob) == stable_hash(bytes(blob))
    assert stable_hash(blob) != stable_hash(blob[:-1] + b"\x01")
    assert stable_hash(bytearray(b"ab")) != stable_hash(b"ab")


# -- richer types --------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: Any = None


@dataclasses.dataclass
class Other:
    x: int
    y: Any = None


class Model(pydantic.BaseModel):
    name: str
    tags: set[str]
    when: datetime.datetime


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class IntColor(enum.IntEnum):
    RED = 1


Pair = collections.namedtuple("Pair", "a b")


class Plain:
    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b


class Slotted:
    __slots__ = ("a",)

    def __init__(self, a: Any) -> None:
        self.a = a


def test_dataclasses_hash_by_class_and_fields() -> None:
    assert stable_hash(Point(1, {"a", "b"})) == stable_hash(Point(1, {"b", "a"}))
    assert stable_hash(Point(1)) != stable_hash(Point(2))
    assert stable_hash(Point(1)) != stable_hash(Other(1))


def test_pydantic_models_hash_by_class_and_data_with_sets_sorted() -> None:
    when = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)
    first = Model(name="a", tags={"x", "y", "z"}, when=when)
    second = Model(name="a", tags={"z", "y", "x"}, when=when)
    assert stable_hash(first) == stable_hash(second)
    assert stable_hash(first) != stable_hash(Model(name="b", tags={"x"}, when=when))
    assert stable_hash(first) != stable_hash(first.model_dump())


def test_dates_ids_decimals_paths_enums() -> None:
    moment = datetime.datetime(2024, 1, 2, 3, 4, 5, 6)
    assert stable_hash(moment) == stable_hash(datetime.datetime(2024, 1, 2, 3, 4, 5, 6))
    assert stable_hash(moment) != stable_hash(moment.replace(tzinfo=datetime.UTC))
    assert stable_hash(moment.date()) != stable_hash(moment.date().isoformat())
    assert stable_hash(datetime.timedelta(1)) != stable_hash(datetime.timedelta(seconds=1))
    ident = uuid.UUID(int=7)
    assert stable_hash(ident) == stable_hash(uuid.UUID(int=7))
    assert stable_hash(ident) != stable_hash(str(ident))
    assert stable_hash(decimal.Decimal("1.5")) != stable_hash(1.5)
    assert stable_hash(Path("a/b")) == stable_hash(PurePosixPath("a/b"))
    assert stable_hash(Path("a/b")) != stable_hash("a/b")
    assert stable_hash(Color.RED) != stable_hash(Color.BLUE)
    assert stable_hash(Color.RED) != stable_hash(1)
    assert stable_hash(IntColor.RED) != stable_hash(1)
    assert stable_hash(complex(1, 2)) != stable_hash((1.0, 2.0))


def test_subclasses_and_plain_objects_hash_by_state() -> None:
    assert stable_hash(Pair(1, 2)) != stable_hash((1, 2))
    assert stable_hash(Pair(1, 2)) == stable_hash(Pair(1, 2))
    assert stable_hash(collections.OrderedDict(a=1, b=2)) != stable_hash({"a": 1, "b": 2})
    assert stable_hash(Plain(1, {"x", "y"})) == stable_hash(Plain(1, {"y", "x"}))
    assert stable_hash(Plain(1, 2)) != stable_hash(Plain(1, 3))
    assert stable_hash(Slotted([1])) == stable_hash(Slotted([1]))
    assert stable_hash(Slotted([1])) != stable_hash(Slotted([2]))


def test_cycles_do_not_recurse_forever() -> None:
    first: list[Any] = [1]
    first.append(first)
    second: list[Any] = [1]
    second.append(second)
    assert stable_hash(first) == stable_hash(second)
    obj = Plain(1, None)
    obj.b = obj
    assert stable_hash(obj) == stable_hash(obj)


def _make_adder(amount: int) -> Any:
    def add(value: int) -> int:
        return value + amount

    return add


def test_functions_hash_by_name_code_and_captured_values_not_address() -> None:
    assert stable_hash(_make_adder(1)) == stable_hash(_make_adder(1))
    assert stable_hash(_make_adder(1)) != stable_hash(_make_adder(2))
    assert stable_hash(len) == stable_hash(len)
    assert stable_hash(len) != stable_hash(abs)
    assert stable_hash(Plain) != stable_hash(Slotted)


def _define(source: str, name: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "defined"}
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - functions built under test
    return namespace[name]


def test_function_and_class_keys_follow_their_code() -> None:
    one = _define("def f(x):\n    return x + 1\n", "f")
    same = _define("def f(x):\n    # a comment\n    return x + 1\n", "f")
    other = _define("def f(x):\n    return x + 2\n", "f")
    assert stable_hash(one) == stable_hash(same)
    assert stable_hash(one) != stable_hash(other)
    assert code_digest(one.__code__) == code_digest(same.__code__)
    cls_a = _define("class K:\n    def m(self):\n        return 1\n", "K")
    cls_b = _define("class K:\n    def m(self):\n        return 2\n", "K")
    assert stable_hash(cls_a) != stable_hash(cls_b)


# -- unhashable values ---------------------------------------------------------------------------


def _raise_on_reduce(self: Any, protocol: int) -> Any:
    raise RuntimeError("no pickling here")


NoPickle = type("NoPickle", (), {"__reduce_ex__": _raise_on_reduce})


def test_locks_raise_naming_the_type() -> None:
    for lock, name in ((threading.Lock(), "_thread.lock"), (threading.RLock(), "_thread.RLock")):
        with pytest.raises(UnhashableInputError, match=name) as info:
            stable_hash(lock)
        assert info.value.type_name == name


def test_socket_raises_naming_the_type() -> None:
    with socket.socket() as sock, pytest.raises(UnhashableInputError, match=r"socket\.socket"):
        stable_hash(sock)


def test_open_file_raises_naming_the_type(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    target.write_text("contents")
    with target.open() as handle, pytest.raises(UnhashableInputError, match="TextIOWrapper"):
        stable_hash(handle)
    with target.open("rb") as handle, pytest.raises(UnhashableInputError, match="open file"):
        stable_hash(handle)


def test_generator_raises_naming_the_type() -> None:
    with pytest.raises(UnhashableInputError, match="generator"):
        stable_hash(x for x in range(3))


def test_asyncio_task_raises_naming_the_type() -> None:
    async def main() -> None:
        job = asyncio.ensure_future(asyncio.sleep(0))
        try:
            with pytest.raises(UnhashableInputError, match="Task"):
                stable_hash(job)
        finally:
            await job

    asyncio.run(main())


def test_object_whose_pickling_raises_is_unhashable() -> None:
    with pytest.raises(UnhashableInputError, match="NoPickle"):
        stable_hash(NoPickle())


def test_nested_unhashable_value_names_inner_and_outer_types() -> None:
    with pytest.raises(UnhashableInputError, match=r"_thread\.lock.*inside a .*Plain") as info:
        stable_hash(Plain(1, {"lock": threading.Lock()}))
    assert info.value.type_name == "_thread.lock"


def test_unhashable_error_is_a_type_error_and_pickles() -> None:
    with pytest.raises(UnhashableInputError) as info:
        stable_hash(threading.Lock())
    assert isinstance(info.value, TypeError)
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.type_name == "_thread.lock"
    assert str(copy) == str(info.value)


# -- the same keys in every interpreter -------------------------------------------------------

FIXTURE_MODULE = '''
"""Values whose keys must be equal in every interpreter run."""
import collections
import dataclasses
import datetime
import decimal
import enum
import pathlib
import uuid

import pydantic


@dataclasses.dataclass
class Point:
    x: int
    tags: frozenset


class Model(pydantic.BaseModel):
    name: str
    tags: set[str]
    when: datetime.datetime


class Mode(enum.Enum):
    FAST = "fast"


class Plain:
    def __init__(self):
        self.names = {"alpha", "beta", "gamma", "delta"}
        self.mapping = {"b": 1, "a": 2}


def transform(value, factor=2):
    return value * factor


WORDS = ["w%d" % i for i in range(40)]


def values():
    moment = datetime.datetime(2024, 2, 29, 23, 59, 1, 5, tzinfo=datetime.timezone.utc)
    result = {
        "dict": {w: i for i, w in enumerate(WORDS)},
        "set": set(WORDS),
        "frozenset_mixed": frozenset([1, "a", (2, "b"), None, 2.5]),
        "dataclass": Point(3, frozenset(WORDS[:10])),
        "pydantic": Model(name="m", tags=set(WORDS[:12]), when=moment),
        "datetime": moment,
        "date": moment.date(),
        "decimal": decimal.Decimal("3.14159"),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "path": pathlib.PurePosixPath("/data/in.csv"),
        "enum": Mode.FAST,
        "nested": {"a": [1, (2, 3), {"x": {4, 5}}], "b": {1: "int key", "1": "str key"}},
        "object": Plain(),
        "function": transform,
        "class": Point,
        "big": 2**80,
        "floats": [0.1, -0.0, float("inf"), float("nan")],
        "bytes": bytes(range(256)) * 3,
        "namedtuple": collections.namedtuple("P", "a b")(1, 2),
        "args": ("several", "values"),
    }
    try:
        import numpy
    except ImportError:
        pass
    else:
        result["numpy"] = numpy.arange(24, dtype="int32").reshape(2, 3, 4)
        result["numpy_object"] = numpy.array([{"b", "a"}, None], dtype=object)
    try:
        import pandas
    except ImportError:
        pass
    else:
        result["pandas"] = pandas.DataFrame(
            {"b": ["x", "y", "z"], "a": [1.5, 2.5, None]}, index=[10, 20, 30]
        )
        result["series"] = pandas.Series(WORDS[:5], name="words")
    return result
'''

_KEY_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import fluvial_hash_fixture as fixture
from fluvial._hashing import stable_hash
print(json.dumps({
    "keys": {name: stable_hash(value) for name, value in fixture.values().items()},
    "set_order": list(fixture.values()["set"]),
}))
"""


def _keys_in_subprocess(folder: Path, seed: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", _KEY_SCRIPT, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def fixture_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "fluvial_hash_fixture.py").write_text(FIXTURE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fluvial_hash_fixture", raising=False)
    import fluvial_hash_fixture  # type: ignore[import-not-found]

    yield fluvial_hash_fixture
    sys.modules.pop("fluvial_hash_fixture", None)


def test_keys_are_identical_across_interpreters_with_different_hash_seeds(
    fixture_module: Any, tmp_path: Path
) -> None:
    here = {name: stable_hash(value) for name, value in fixture_module.values().items()}
    first = _keys_in_subprocess(tmp_path, "1")
    second = _keys_in_subprocess(tmp_path, "2")
    # The seeds really do change iteration order, so the test has teeth.
    assert first["set_order"] != second["set_order"]
    assert first["keys"] == here
    assert second["keys"] == here
    assert len(set(here.values())) == len(here)


def test_numpy_arrays_hash_by_dtype_shape_and_bytes() -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(12, dtype="int64").reshape(3, 4)
    assert stable_hash(array) == stable_hash(array.copy())
    assert stable_hash(array) == stable_hash(np.asfortranarray(array))
    assert stable_hash(array) == stable_hash(array.astype(">i8"))
    assert stable_hash(array) != stable_hash(array.reshape(4, 3))
    assert stable_hash(array) != stable_hash(array.astype("int32"))
    assert stable_hash(np.float64(1.0)) != stable_hash(1.0)
    assert stable_hash(np.array([{"a", "b"}], dtype=object)) == stable_hash(
        np.array([{"b", "a"}], dtype=object)
    )


def test_pandas_objects_hash_by_content_names_and_dtypes() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert stable_hash(frame) == stable_hash(frame.copy())
    assert stable_hash(frame) != stable_hash(frame.rename(columns={"a": "c"}))
    assert stable_hash(frame) != stable_hash(frame.astype({"a": "float64"}))
    assert stable_hash(frame) != stable_hash(frame.iloc[::-1])
    assert stable_hash(frame["a"]) != stable_hash(frame["a"].rename("z"))
    lists = pd.DataFrame({"a": [[1], [2]]})  # cells hash_pandas_object cannot take
    assert stable_hash(lists) == stable_hash(pd.DataFrame({"a": [[1], [2]]}))
    assert stable_hash(lists) != stable_hash(pd.DataFrame({"a": [[1], [3]]}))
