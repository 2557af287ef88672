"""Cache policies: what each key is made of, composition, configuration, unhashable inputs."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from fluvial import flow, task
from fluvial._hashing import UnhashableInputError, stable_hash
from fluvial._runs import TaskRun
from fluvial.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    NONE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    FlowParameters,
    Inputs,
    RunId,
    TaskSource,
    UnhashableParameterError,
)
from fluvial.context import TaskRunContext


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Flows read settings and profiles; keep this module's runs off the user's ~/.fluvial.
    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUVIAL_PROFILES_PATH", str(tmp_path / "home" / "profiles.toml"))


@task
def add(x: int, y: int = 0) -> int:
    return x + y


def make_ctx(
    the_task: Any = add,
    parameters: dict[str, Any] | None = None,
    flow_run_id: uuid.UUID | None = None,
) -> TaskRunContext:
    params = dict(parameters or {})
    run = TaskRun(the_task, params, frozenset(), flow_run_id)
    return TaskRunContext(the_task, run, params, False)


def key(policy: CachePolicy, inputs: dict[str, Any] | None = None, **kwargs: Any) -> str | None:
    ctx = kwargs.pop("ctx", None) or make_ctx(parameters=inputs)
    flow_parameters = kwargs.pop("flow_parameters", {})
    return policy.compute_key(ctx, inputs or {}, flow_parameters, **kwargs)


def level_name(level: Any) -> Any:
    return getattr(level, "name", level)


# -- Inputs ----------------------------------------------------------------------------------


def test_inputs_same_values_same_key_in_any_order() -> None:
    assert key(INPUTS, {"x": 1, "y": [1, 2]}) == key(INPUTS, {"y": [1, 2], "x": 1})
    assert key(INPUTS, {"x": 1, "y": 2}) == stable_hash({"x": 1, "y": 2})


def test_inputs_different_values_or_names_different_key() -> None:
    base = key(INPUTS, {"x": 1, "y": 2})
    assert base != key(INPUTS, {"x": 1, "y": 3})
    assert base != key(INPUTS, {"x": 1, "z": 2})
    assert base != key(INPUTS, {"x": 1.0, "y": 2})


def test_inputs_none_without_inputs() -> None:
    assert INPUTS.compute_key(make_ctx(), {}, {}) is None
    assert INPUTS.compute_key(make_ctx(), None, None) is None


def test_excluded_input_is_ignored() -> None:
    policy = INPUTS - "client"
    assert isinstance(policy, Inputs)
    assert policy.exclude == ["client"]
    assert INPUTS.exclude == []  # the shared constant is untouched
    assert key(policy, {"x": 1, "client": "a"}) == key(policy, {"x": 1, "client": "b"})
    assert key(policy, {"x": 1, "client": "a"}) == key(INPUTS, {"x": 1})
    assert key(policy, {"x": 1, "client": "a"}) != key(policy, {"x": 2, "client": "a"})
    assert key(Inputs(exclude=["client"]), {"x": 1, "client": 0}) == key(policy, {"x": 1})
    assert key(Inputs(["client"]), {"x": 1, "client": 0}) == key(policy, {"x": 1})


def test_excluding_every_input_still_caches_like_prefect() -> None:
    # Prefect hashes the empty dict here: the task is cached regardless of the excluded input.
    policy = INPUTS - "x"
    assert key(policy, {"x": 1}) == key(policy, {"x": 2}) == stable_hash({})


def test_excluded_unhashable_input_is_fine() -> None:
    lock = threading.Lock()
    assert key(INPUTS - "lock", {"x": 1, "lock": lock}) == key(INPUTS, {"x": 1})
    assert key(DEFAULT - "lock", {"x": 1, "lock": lock}) is not None


# -- unhashable inputs ---------------------------------------------------------------------------


@task
def uses_lock(x: int, lock: Any) -> int:
    return x


def test_unhashable_input_names_task_and_parameter() -> None:
    ctx = make_ctx(uses_lock, {"x": 1, "lock": threading.Lock()})
    with pytest.raises(UnhashableParameterError) as info:
        INPUTS.compute_key(ctx, ctx.parameters, {})
    error = info.value
    message = str(error)
    assert "'uses_lock'" in message
    assert "parameter 'lock'" in message
    assert "_thread.lock" in message
    assert 'INPUTS - "lock"' in message
    assert "cache_key_fn" in message
    assert "NO_CACHE" in message
    assert isinstance(error, ValueError)
    assert isinstance(error, UnhashableInputError)
    assert error.task_name == "uses_lock"
    assert error.parameter == "lock"
    assert error.type_name == "_thread.lock"
    assert error.flow_parameter is False
    assert isinstance(error.__cause__, UnhashableInputError)


def test_unhashable_input_inside_compound_policy_raises_the_same() -> None:
    with socket.socket() as sock:
        ctx = make_ctx(uses_lock, {"x": 1, "lock": sock})
        with pytest.raises(ValueError, match=r"parameter 'lock'.*socket\.socket"):
            DEFAULT.compute_key(ctx, ctx.parameters, {})


def test_unhashable_nested_input_names_the_parameter() -> None:
    ctx = make_ctx(uses_lock, {"x": 1, "lock": {"inner": [threading.RLock()]}})
    with pytest.raises(UnhashableParameterError, match="parameter 'lock'") as info:
        INPUTS.compute_key(ctx, ctx.parameters, {})
    assert info.value.type_name == "_thread.RLock"


def test_unhashable_parameter_error_pickles_with_its_details() -> None:
    ctx = make_ctx(uses_lock, {"x": 1, "lock": threading.Lock()})
    with pytest.raises(UnhashableParameterError) as info:
        INPUTS.compute_key(ctx, ctx.parameters, {})
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.task_name, copy.parameter, copy.type_name) == ("uses_lock", "lock", "_thread.lock")
    assert str(copy) == str(info.value)


def test_unhashable_input_from_a_real_task_run_context() -> None:
    seen: list[TaskRunContext] = []

    @task(cache_policy=NO_CACHE)
    def grab(lock: Any) -> None:
        ctx = TaskRunContext.get()
        assert ctx is not None
        seen.append(ctx)

    grab(threading.Lock())
    with pytest.raises(UnhashableParameterError, match="task 'grab'.*parameter 'lock'"):
        INPUTS.compute_key(seen[0], seen[0].parameters, {})


# -- TaskSource -----------------------------------------------------------------------------------


def _task_from(source: str, name: str = "work") -> Any:
    namespace: dict[str, Any] = {"task": task}
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - tasks built under test
    return namespace[name]


def source_key(the_task: Any) -> str | None:
    return TASK_SOURCE.compute_key(make_ctx(the_task), {}, {})


def test_task_source_changes_with_the_function_body() -> None:
    first = _task_from("@task\ndef work(x):\n    return x + 1\n")
    second = _task_from("@task\ndef work(x):\n    return x + 2\n")
    third = _task_from("@task\ndef work(x):\n    return x * 1\n")
    assert first.name == second.name == "work"
    assert len({source_key(first), source_key(second), source_key(third)}) == 3


def test_task_source_ignores_comments_and_other_functions_in_exec_code() -> None:
    first = _task_from("def helper():\n    pass\n\n@task\ndef work(x):\n    return x + 1\n")
    second = _task_from(
        "def renamed_helper():\n    pass\n\n@task\ndef work(x):\n    # note\n    return x + 1\n"
    )
    assert source_key(first) == source_key(second)


MODULE_TEMPLATE = '''
from fluvial import task


def {helper}():
    """Another function in the same file."""
    return 0


# {comment}
@task
def work(x):
    # {inner_comment}
    total = x + {amount}
    return total
'''


def _load_module(folder: Path, name: str, **fields: Any) -> Any:
    values = {"helper": "helper", "comment": "c", "inner_comment": "c", "amount": 1, **fields}
    folder.mkdir(parents=True)
    path = folder / f"{name}.py"
    path.write_text(MODULE_TEMPLATE.format(**values))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_source_from_files(tmp_path: Path) -> None:
    base = _load_module(tmp_path / "a", "src_mod")
    renamed = _load_module(tmp_path / "b", "src_mod", helper="helper_with_a_new_name")
    commented = _load_module(
        tmp_path / "c", "src_mod", comment="changed", inner_comment="also changed"
    )
    changed = _load_module(tmp_path / "d", "src_mod", amount=2)
    assert source_key(base.work) == source_key(renamed.work)
    assert source_key(base.work) == source_key(commented.work)
    assert source_key(base.work) != source_key(changed.work)


def test_task_source_is_computed_once_and_cached_on_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    the_task = _task_from("@task\ndef work(x):\n    return x - 1\n")
    first = source_key(the_task)
    assert the_task._fluvial_source_key == (the_task.fn, first)

    def fail(obj: Any) -> str:
        raise AssertionError("source read twice")

    monkeypatch.setattr("inspect.getsource", fail)
    assert source_key(the_task) == first


def test_task_source_prefers_captured_source_code() -> None:
    first = _task_from("@task\ndef work(x):\n    return x + 1\n")
    second = _task_from("@task\ndef work(x):\n    return x + 1\n")
    first.source_code = "def work(x):\n    return x + 1\n"
    second.source_code = "def work(x):\n    return x + 100\n"
    assert source_key(first) != source_key(second)


def test_task_source_without_task_context_is_none() -> None:
    assert TASK_SOURCE.compute_key(None, {"x": 1}, {}) is None


# -- FlowParameters, RunId -----------------------------------------------------------------------


def test_flow_parameters_key() -> None:
    ctx = make_ctx()
    assert FLOW_PARAMETERS.compute_key(ctx, {"x": 1}, {}) is None
    first = FLOW_PARAMETERS.compute_key(ctx, {"x": 1}, {"a": 1, "b": {2, 3}})
    again = FLOW_PARAMETERS.compute_key(ctx, {"x": 2}, {"b": {3, 2}, "a": 1})
    other = FLOW_PARAMETERS.compute_key(ctx, {"x": 1}, {"a": 2, "b": {2, 3}})
    assert first == again == stable_hash({"a": 1, "b": {2, 3}})
    assert first != other
    assert isinstance(FlowParameters(), FlowParameters)


def test_flow_parameters_are_read_from_the_flow_run_when_not_given() -> None:
    keys: list[str | None] = []

    @task(cache_policy=NO_CACHE)
    def grab() -> None:
        keys.append(FLOW_PARAMETERS.compute_key(TaskRunContext.get(), {}, None))

    @flow
    def pipeline(size: int) -> None:
        grab()

    pipeline(3)
    assert keys == [stable_hash({"size": 3})]


def test_unhashable_flow_parameter_names_it() -> None:
    with pytest.raises(UnhashableParameterError, match="flow parameter 'lock'") as info:
        FLOW_PARAMETERS.compute_key(make_ctx(), {}, {"n": 1, "lock": threading.Lock()})
    assert info.value.flow_parameter is True
    assert info.value.parameter == "lock"


def test_run_id_is_the_flow_run_id_stable_within_a_run_and_new_per_run() -> None:
    seen: list[tuple[str | None, str]] = []

    @task(cache_policy=NO_CACHE)
    def grab(i: int) -> None:
        ctx = TaskRunContext.get()
        assert ctx is not None
        seen.append((RUN_ID.compute_key(ctx, {"i": i}, {}), str(ctx.task_run.flow_run_id)))

    @flow
    def pipeline() -> None:
        grab(1)
        grab(2)

    pipeline()
    pipeline()
    (a1, run_a), (a2, _), (b1, run_b), (b2, _) = seen
    assert a1 == a2 == run_a
    assert b1 == b2 == run_b
    assert a1 != b1


def test_run_id_outside_a_flow_is_the_task_run_id() -> None:
    ctx = make_ctx()
    assert RunId().compute_key(ctx, {}, {}) == str(ctx.task_run.id)
    flow_id = uuid.uuid4()
    assert RUN_ID.compute_key(make_ctx(flow_run_id=flow_id), {}, {}) == str(flow_id)
    assert RUN_ID.compute_key(None, {}, {}) is None


# -- CacheKeyFnPolicy -----------------------------------------------------------------------------


def test_cache_key_fn_policy_calls_the_function_with_context_and_inputs() -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def key_fn(ctx: Any, inputs: dict[str, Any]) -> str:
        calls.append((ctx, inputs))
        return f"k-{inputs['x']}"

    ctx = make_ctx(parameters={"x": 4})
    policy = CacheKeyFnPolicy(key_fn)
    assert policy.compute_key(ctx, {"x": 4}, {}) == "k-4"
    assert calls == [(ctx, {"x": 4})]
    assert CacheKeyFnPolicy(cache_key_fn=key_fn) == policy
    from_fn = CachePolicy.from_cache_key_fn(key_fn)
    assert isinstance(from_fn, CacheKeyFnPolicy)
    assert from_fn.compute_key(ctx, {"x": 5}, {}) == "k-5"
    assert CacheKeyFnPolicy().compute_key(ctx, {"x": 5}, {}) is None
    assert CacheKeyFnPolicy(lambda ctx, inputs: None).compute_key(ctx, {}, {}) is None


def test_cache_key_fn_returning_a_non_string_is_a_clear_error() -> None:
    policy = CacheKeyFnPolicy(lambda ctx, inputs: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="must return a str or None, got int"):
        policy.compute_key(make_ctx(), {}, {})


# -- composition -----------------------------------------------------------------------------------


def test_default_is_inputs_task_source_run_id_in_that_order() -> None:
    assert isinstance(DEFAULT, CompoundCachePolicy)
    assert [type(p) for p in DEFAULT.policies] == [Inputs, TaskSource, RunId]
    ctx = make_ctx(parameters={"x": 1}, flow_run_id=uuid.uuid4())
    expected = stable_hash(key(INPUTS, {"x": 1}), source_key(add), str(ctx.task_run.flow_run_id))
    assert DEFAULT.compute_key(ctx, {"x": 1}, {}) == expected


def test_compound_flattens_nested_compounds() -> None:
    policy = (INPUTS + TASK_SOURCE) + (RUN_ID + FLOW_PARAMETERS)
    assert isinstance(policy, CompoundCachePolicy)
    assert [type(p) for p in policy.policies] == [Inputs, TaskSource, RunId, FlowParameters]
    nested = CompoundCachePolicy([CompoundCachePolicy([RUN_ID, TASK_SOURCE]), INPUTS])
    assert [type(p) for p in nested.policies] == [RunId, TaskSource, Inputs]


def test_compound_merges_inputs_with_the_union_of_excludes() -> None:
    policy = (INPUTS - "a") + TASK_SOURCE + (INPUTS - "b") + Inputs(exclude=["a", "c"])
    assert isinstance(policy, CompoundCachePolicy)
    inputs = [p for p in policy.policies if isinstance(p, Inputs)]
    assert len(inputs) == 1
    assert sorted(inputs[0].exclude) == ["a", "b", "c"]
    assert isinstance(policy.policies[0], Inputs)  # where the first Inputs was
    values = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert key(policy, values) == stable_hash(key(INPUTS, {"d": 4}), source_key(add))


def test_compound_key_hashes_sub_keys_in_order_and_skips_none() -> None:
    ctx = make_ctx(parameters={"x": 1}, flow_run_id=uuid.uuid4())
    run_id = str(ctx.task_run.flow_run_id)
    inputs_key = key(INPUTS, {"x": 1})
    forward = (INPUTS + RUN_ID).compute_key(ctx, {"x": 1}, {})
    backward = (RUN_ID + INPUTS).compute_key(ctx, {"x": 1}, {})
    assert forward == stable_hash(inputs_key, run_id)
    assert backward == stable_hash(run_id, inputs_key)
    assert forward != backward
    # no inputs: the Inputs key is None and is left out
    assert (INPUTS + RUN_ID).compute_key(ctx, {}, {}) == stable_hash(run_id)
    # every part None: the whole key is None
    assert (INPUTS + FLOW_PARAMETERS).compute_key(ctx, {}, {}) is None
    assert CompoundCachePolicy().compute_key(ctx, {"x": 1}, {}) is None


def test_subtracting_from_a_compound_excludes_from_its_inputs() -> None:
    policy = DEFAULT - "x"
    assert isinstance(policy, CompoundCachePolicy)
    assert [type(p) for p in policy.policies] == [Inputs, TaskSource, RunId]
    first = policy.policies[0]
    assert isinstance(first, Inputs)
    assert first.exclude == ["x"]
    assert DEFAULT.policies[0] == Inputs()  # DEFAULT itself is untouched
    ctx = make_ctx(flow_run_id=uuid.uuid4())
    assert policy.compute_key(ctx, {"x": 1, "y": 2}, {}) == policy.compute_key(
        ctx, {"x": 9, "y": 2}, {}
    )
    without_inputs = TASK_SOURCE + RUN_ID
    assert without_inputs - "x" is without_inputs


def test_subtracting_from_other_policies_returns_them_unchanged() -> None:
    for policy in (TASK_SOURCE, RUN_ID, FLOW_PARAMETERS, NO_CACHE, CacheKeyFnPolicy()):
        assert policy - "x" is policy
    with pytest.raises(TypeError, match="subtract strings"):
        INPUTS - 1  # type: ignore[operator]


def test_no_cache_is_always_none_and_vanishes_when_added() -> None:
    assert NO_CACHE is NONE
    assert NO_CACHE.compute_key(make_ctx(), {"x": 1}, {"a": 1}) is None
    assert NO_CACHE + INPUTS is INPUTS
    assert INPUTS + NO_CACHE is INPUTS
    assert DEFAULT + NO_CACHE is DEFAULT


def test_adding_something_that_is_not_a_policy_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        INPUTS + "x"  # type: ignore[operator]


# -- configure and conflicting settings --------------------------------------------------------


def test_configure_returns_a_copy() -> None:
    lock_manager = object()
    configured = INPUTS.configure(
        key_storage="memory://keys", lock_manager=lock_manager, isolation_level="serializable"
    )
    assert configured is not INPUTS
    assert isinstance(configured, Inputs)
    assert configured.key_storage == "memory://keys"
    assert configured.lock_manager is lock_manager  # shared, not copied
    assert level_name(configured.isolation_level) == "SERIALIZABLE"
    assert INPUTS.key_storage is None
    assert INPUTS.lock_manager is None
    assert INPUTS.isolation_level is None
    # unset arguments keep what the policy had
    again = configured.configure(key_storage="memory://other")
    assert again.lock_manager is lock_manager
    assert level_name(again.isolation_level) == "SERIALIZABLE"
    # the copy's excludes are its own
    excluded = (INPUTS - "a").configure(key_storage="x")
    assert isinstance(excluded, Inputs)
    excluded.exclude.append("b")
    assert INPUTS.exclude == []


def test_configure_a_compound_keeps_its_parts() -> None:
    configured = DEFAULT.configure(isolation_level="READ_COMMITTED")
    assert isinstance(configured, CompoundCachePolicy)
    assert configured is not DEFAULT
    assert [type(p) for p in configured.policies] == [Inputs, TaskSource, RunId]
    assert level_name(configured.isolation_level) == "READ_COMMITTED"
    assert DEFAULT.isolation_level is None
    ctx = make_ctx(flow_run_id=uuid.uuid4())
    assert configured.compute_key(ctx, {"x": 1}, {}) == DEFAULT.compute_key(ctx, {"x": 1}, {})


def test_isolation_level_is_validated() -> None:
    with pytest.raises(ValueError, match="READ_COMMITTED"):
        INPUTS.configure(isolation_level="EVENTUAL")
    with pytest.raises(ValueError, match="SERIALIZABLE"):
        Inputs(isolation_level="sometimes")


def test_adding_policies_with_conflicting_settings_raises() -> None:
    with pytest.raises(ValueError, match="different storage locations"):
        INPUTS.configure(key_storage="a") + TASK_SOURCE.configure(key_storage="b")
    with pytest.raises(ValueError, match="different isolation levels"):
        INPUTS.configure(isolation_level="SERIALIZABLE") + RUN_ID.configure(
            isolation_level="READ_COMMITTED"
        )
    with pytest.raises(ValueError, match="different lock implementations"):
        INPUTS.configure(lock_manager=object()) + RUN_ID.configure(lock_manager=object())


def test_adding_policies_with_compatible_settings_keeps_them() -> None:
    manager = object()
    combined = INPUTS.configure(key_storage="a", lock_manager=manager) + TASK_SOURCE.configure(
        key_storage="a", isolation_level="serializable"
    )
    assert combined.key_storage == "a"
    assert combined.lock_manager is manager
    assert level_name(combined.isolation_level) == "SERIALIZABLE"
    bigger = combined + RUN_ID
    assert isinstance(bigger, CompoundCachePolicy)
    assert bigger.key_storage == "a"
    assert level_name(bigger.isolation_level) == "SERIALIZABLE"


# -- keys across interpreters ------------------------------------------------------------------

STABLE_TASK_MODULE = '''
from fluvial import task


@task
def work(items, options=None):
    """Sum the items."""
    return sum(items)
'''

_POLICY_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import policy_fixture
from fluvial._runs import TaskRun
from fluvial.cache_policies import INPUTS, TASK_SOURCE
from fluvial.context import TaskRunContext
params = {"items": {"b", "a", "c", "d", "e"}, "options": {"z": 1, "y": [1, 2]}}
ctx = TaskRunContext(policy_fixture.work, TaskRun(policy_fixture.work, params, frozenset(), None),
                     params, False)
print(json.dumps((INPUTS + TASK_SOURCE).compute_key(ctx, params, {})))
"""


def test_inputs_and_task_source_keys_match_across_interpreters(tmp_path: Path) -> None:
    (tmp_path / "policy_fixture.py").write_text(STABLE_TASK_MODULE)
    keys = []
    for seed in ("0", "1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", _POLICY_SCRIPT, str(tmp_path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        keys.append(json.loads(done.stdout))
    assert keys[0] is not None
    assert keys[0] == keys[1] == keys[2]
