"""Caching and result persistence through the engine: policies, storage, faults, processes.

The storage layer itself has its own suite (tests/storage); these tests check what a task or
flow run does with it.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from _s3 import S3Server
from fluvial import flow, task
from fluvial.cache_policies import DEFAULT, INPUTS, NO_CACHE, TASK_SOURCE
from fluvial.exceptions import StorageError
from fluvial.settings import temporary_settings
from fluvial.states import State
from fluvial.storage import FileSystemLockManager, MemoryLockManager, ResultStore


class Counter:
    """Counts calls, thread-safely."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.lock = threading.Lock()

    def add(self, value: Any) -> None:
        with self.lock:
            self.calls.append(value)


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return str(tmp_path / "results")


def test_inputs_policy_hits_for_equal_inputs(storage: str) -> None:
    seen = Counter()

    @task(cache_policy=INPUTS, result_storage=storage)
    def double(x: int, tags: dict[str, int]) -> int:
        seen.add(x)
        return 2 * x

    assert double(2, {"a": 1, "b": 2}) == 4
    state = double(2, {"b": 2, "a": 1}, return_state=True)  # same dict, other order
    assert state.name == "Cached"
    assert state.result() == 4
    assert double(3, {}) == 6
    assert seen.calls == [2, 3]


def test_default_policy_caches_within_one_flow_run_only(storage: str) -> None:
    seen = Counter()

    @task(persist_result=True, result_storage=storage)
    def work(x: int) -> int:
        seen.add(x)
        return x

    @flow
    def twice() -> list[str]:
        return [work(1, return_state=True).name, work(1, return_state=True).name]

    assert twice() == ["Completed", "Cached"]
    assert twice() == ["Completed", "Cached"]  # RUN_ID differs between flow runs
    assert seen.calls == [1, 1]


def test_nothing_is_written_without_persistence(isolated_fluvial_home: Path) -> None:
    @task
    def plain(x: int) -> int:
        return x

    @flow
    def my_flow() -> int:
        return plain(1) + plain(1)

    assert my_flow() == 2
    assert not (isolated_fluvial_home / "storage").exists()


def test_persist_by_default_setting_uses_fluvial_home(isolated_fluvial_home: Path) -> None:
    @task
    def plain(x: int) -> int:
        return x

    with temporary_settings(results_persist_by_default=True):
        state = plain(5, return_state=True)
    assert state.result() == 5
    assert any((isolated_fluvial_home / "storage").iterdir())


def test_explicit_options_imply_persistence() -> None:
    assert task(cache_policy=INPUTS)(lambda: 1).persist_result is True
    assert task(result_storage="memory://x")(lambda: 1).persist_result is True
    assert task(result_serializer="json")(lambda: 1).persist_result is True
    assert task(cache_key_fn=lambda ctx, inputs: "k")(lambda: 1).persist_result is True
    assert task(lambda: 1).persist_result is None
    assert task(cache_policy=NO_CACHE)(lambda: 1).persist_result is None
    off = task(persist_result=False, cache_policy=INPUTS)(lambda: 1)
    assert off.cache_policy is NO_CACHE


def test_cache_key_fn_and_expiration(storage: str) -> None:
    seen = Counter()

    def by_first_letter(ctx: Any, inputs: dict[str, Any]) -> str:
        return str(inputs["word"][0])

    @task(
        cache_key_fn=by_first_letter,
        cache_expiration=timedelta(seconds=0.3),
        result_storage=storage,
    )
    def shout(word: str) -> str:
        seen.add(word)
        return word.upper()

    assert shout("apple") == "APPLE"
    assert shout("avocado") == "APPLE"  # same key: the first letter
    time.sleep(0.5)
    assert shout("avocado") == "AVOCADO"  # expired: runs and overwrites
    assert seen.calls == ["apple", "avocado"]


def test_refresh_cache_reruns_and_overwrites(storage: str) -> None:
    values = iter([1, 2, 3])

    @task(cache_policy=TASK_SOURCE, result_storage=storage)
    def draw() -> int:
        return next(values)

    assert draw() == 1
    assert draw() == 1
    assert draw.with_options(refresh_cache=True)() == 2
    assert draw() == 2
    with temporary_settings(tasks_refresh_cache=True):
        assert draw() == 3


def test_result_storage_key_template(tmp_path: Path) -> None:
    @task(
        result_storage=str(tmp_path),
        result_storage_key="reports/{parameters[city]}-{flow_run.name}.bin",
    )
    def report(city: str) -> str:
        return f"report for {city}"

    @flow(flow_run_name="nightly")
    def my_flow() -> str:
        return report("lyon")

    assert my_flow() == "report for lyon"
    assert (tmp_path / "reports" / "lyon-nightly.bin").exists()
    assert my_flow() == "report for lyon"


def test_unhashable_input_warns_naming_task_and_parameter_and_runs_uncached(
    storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Counter()

    @task(cache_policy=INPUTS, result_storage=storage)
    def uses_lock(lock: Any, x: int) -> int:
        seen.add(x)
        return x

    lock = threading.Lock()
    assert uses_lock(lock, 1) == 1
    assert uses_lock(lock, 1) == 1
    assert seen.calls == [1, 1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("uses_lock" in w and "lock" in w for w in warnings), warnings


def test_unhashable_input_can_be_an_error(storage: str) -> None:
    @task(cache_policy=INPUTS, result_storage=storage)
    def uses_lock(lock: Any) -> None:
        return None

    with temporary_settings(tasks_unhashable_inputs="error"):
        state = uses_lock(threading.Lock(), return_state=True)
    assert state.is_failed()
    assert "lock" in (state.message or "")


def test_corrupt_record_is_a_miss_and_is_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Counter()

    @task(result_storage=str(tmp_path), result_storage_key="value.bin")
    def compute() -> int:
        seen.add(1)
        return 42

    assert compute() == 42
    record = tmp_path / "value.bin"
    record.write_bytes(record.read_bytes()[:20])  # torn
    from fluvial.storage import clear_memory_cache

    clear_memory_cache()
    assert compute() == 42
    assert len(seen.calls) == 2
    assert "unreadable" in caplog.text
    clear_memory_cache()
    assert compute() == 42  # the record was rewritten whole
    assert len(seen.calls) == 2


def test_unreachable_storage_fails_the_task_with_storage_error() -> None:
    @task(cache_policy=INPUTS, result_storage="/etc/passwd/not-a-directory")
    def compute(x: int) -> int:
        return x

    state = compute(1, return_state=True)
    assert state.is_failed()
    with pytest.raises(StorageError, match="/etc/passwd/not-a-directory"):
        state.result()


def test_cache_result_in_memory_false_reads_back_from_storage(storage: str) -> None:
    @task(persist_result=True, result_storage=storage, cache_result_in_memory=False)
    def big() -> list[int]:
        return list(range(1000))

    @flow
    def returns_direct() -> list[int]:
        return big()

    assert returns_direct() == list(range(1000))
    future_state = _submitted_state(big)
    assert "value" not in repr(future_state.data)
    assert future_state.result() == list(range(1000))


def _submitted_state(a_task: Any) -> State[Any]:
    holder: list[State[Any]] = []

    @flow
    def my_flow() -> None:
        future = a_task.submit()
        future.wait()
        holder.append(future.state)

    my_flow()
    return holder[0]


def test_flow_results_are_persisted_and_survive_pickling(storage: str) -> None:
    @flow(persist_result=True, result_storage=storage)
    def answer() -> dict[str, int]:
        return {"answer": 42}

    state = answer(return_state=True)
    assert state.result() == {"answer": 42}
    restored = pickle.loads(pickle.dumps(state))
    assert restored.result() == {"answer": 42}  # read back from storage, not memory


@pytest.mark.anyio
async def test_async_tasks_cache_too(storage: str) -> None:
    seen = Counter()

    @task(cache_policy=INPUTS, result_storage=storage)
    async def slow_double(x: int) -> int:
        seen.add(x)
        await asyncio.sleep(0)
        return 2 * x

    assert await slow_double(4) == 8
    state = await slow_double(4, return_state=True)
    assert state.name == "Cached"
    assert seen.calls == [4]


def test_flow_retry_replays_persisted_tasks(storage: str) -> None:
    seen = Counter()
    attempts = Counter()

    @task(persist_result=True, result_storage=storage)
    def expensive(x: int) -> int:
        seen.add(x)
        return x * 10

    @flow(retries=1)
    def pipeline() -> int:
        value = expensive(3)
        attempts.add(1)
        if len(attempts.calls) == 1:
            raise ConnectionError("flaky downstream")
        return value

    assert pipeline() == 30
    assert seen.calls == [3]


def test_serializable_isolation_runs_once_under_threads(storage: str) -> None:
    seen = Counter()
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=MemoryLockManager())

    @task(cache_policy=policy, result_storage=storage)
    def slow(x: int) -> int:
        seen.add(x)
        time.sleep(0.1)
        return x + 1

    @flow
    def many() -> list[int]:
        return [f.result() for f in [slow.submit(7) for _ in range(6)]]

    assert many() == [8] * 6
    assert seen.calls == [7]


def test_s3_storage_end_to_end(s3_server: S3Server) -> None:
    store = ResultStore.from_url(s3_server.url(), **s3_server.storage_options())
    seen = Counter()

    @task(cache_policy=INPUTS, result_storage=store)
    def double(x: int) -> int:
        seen.add(x)
        return 2 * x

    assert double(21) == 42
    state = double(21, return_state=True)
    assert state.name == "Cached"
    assert seen.calls == [21]


CROSS_PROCESS = textwrap.dedent(
    """
    import json, sys
    from fluvial import flow, task
    from fluvial.cache_policies import INPUTS, TASK_SOURCE
    from fluvial.storage import FileSystemLockManager

    storage, marker_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    policy = INPUTS + TASK_SOURCE
    if mode == "serializable":
        policy = policy.configure(
            isolation_level="SERIALIZABLE", lock_manager=FileSystemLockManager(marker_dir + "/locks")
        )

    @task(cache_policy=policy, result_storage=storage)
    def expensive(params: dict) -> dict:
        import os, time, uuid
        open(os.path.join(marker_dir, uuid.uuid4().hex), "w").close()
        time.sleep(0.3 if mode == "serializable" else 0)
        return {"total": sum(params["values"]), "name": params["name"]}

    state = expensive({"values": [1, 2, 3], "name": "run", "extra": {"b": 1, "a": 2}},
                      return_state=True)
    print(json.dumps([state.name, state.result()]))
    """
)


def _run_child(script: Path, *args: str, seed: str) -> Any:
    import json
    import os

    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_keys_are_stable_across_interpreters(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CROSS_PROCESS)
    markers = tmp_path / "markers"
    markers.mkdir()
    storage = str(tmp_path / "results")
    first = _run_child(script, storage, str(markers), "plain", seed="1")
    second = _run_child(script, storage, str(markers), "plain", seed="2")
    assert first == ["Completed", {"total": 6, "name": "run"}]
    assert second == ["Cached", {"total": 6, "name": "run"}]
    assert len(list(markers.iterdir())) == 1


def test_serializable_isolation_runs_once_across_processes(tmp_path: Path) -> None:
    import os

    script = tmp_path / "child.py"
    script.write_text(CROSS_PROCESS)
    markers = tmp_path / "markers"
    markers.mkdir()
    storage = str(tmp_path / "results")
    env = {**os.environ}
    children = [
        subprocess.Popen(
            [sys.executable, str(script), storage, str(markers), "serializable"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), [o[1] for o in outputs]
    executed = [p for p in markers.iterdir() if p.is_file()]
    assert len(executed) == 1


def test_persisted_result_is_read_back_in_a_new_process(tmp_path: Path) -> None:
    storage = str(tmp_path / "results")

    @flow(persist_result=True, result_storage=storage)
    def produce() -> list[str]:
        return ["a", "b"]

    state = produce(return_state=True)
    state_file = tmp_path / "state.pkl"
    state_file.write_bytes(pickle.dumps(state))
    reader = (
        "import pickle, sys, json; "
        "state = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(json.dumps(state.result()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", reader, str(state_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == '["a", "b"]'


def test_default_policy_object_is_used_when_nothing_is_given() -> None:
    assert task(lambda: 1).cache_policy is DEFAULT


def test_serializable_without_a_lock_manager_fails_clearly(storage: str) -> None:
    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"), result_storage=storage)
    def locked(x: int) -> int:
        return x

    state = locked(1, return_state=True)
    assert state.is_failed()
    assert "lock manager" in (state.message or "")


def test_cached_state_from_another_store_instance(tmp_path: Path) -> None:
    """A record written through one store is a hit through another store on the same place."""
    seen = Counter()
    first = ResultStore(str(tmp_path))
    second = ResultStore(str(tmp_path))

    def make(store: ResultStore) -> Any:
        @task(
            name="shared", cache_key_fn=lambda ctx, inputs: f"k{inputs['x']}", result_storage=store
        )
        def shared(x: int) -> int:
            seen.add(x)
            return x

        return shared

    assert make(first)(1) == 1
    assert make(second)(1, return_state=True).name == "Cached"
    assert seen.calls == [1]


def test_file_lock_manager_with_threads(tmp_path: Path) -> None:
    seen = Counter()
    policy = INPUTS.configure(
        isolation_level="SERIALIZABLE", lock_manager=FileSystemLockManager(tmp_path / "locks")
    )

    @task(cache_policy=policy, result_storage=str(tmp_path / "results"))
    def slow(x: int) -> int:
        seen.add(x)
        time.sleep(0.05)
        return x

    @flow
    def many() -> list[int]:
        return [f.result() for f in [slow.submit(1) for _ in range(4)]]

    assert many() == [1] * 4
    assert seen.calls == [1]


def test_key_storage_splits_metadata_from_payloads(tmp_path: Path) -> None:
    policy = INPUTS.configure(key_storage=str(tmp_path / "keys"))

    @task(cache_policy=policy, result_storage=str(tmp_path / "payloads"))
    def compute(x: int) -> dict[str, int]:
        return {"x": x}

    assert compute(3) == {"x": 3}
    keys = [p for p in (tmp_path / "keys").rglob("*") if p.is_file()]
    payloads = [p for p in (tmp_path / "payloads").rglob("*") if p.is_file()]
    assert len(keys) == 1
    assert len(payloads) == 1
    assert keys[0].name == payloads[0].name
    assert b'"serializer"' in keys[0].read_bytes()  # metadata, readable as JSON
    assert compute(3, return_state=True).name == "Cached"


def test_json_serializer_on_a_flow_and_its_tasks(tmp_path: Path) -> None:
    import datetime
    import uuid

    @task(persist_result=True)
    def make() -> dict[str, Any]:
        return {"when": datetime.date(2026, 11, 22), "id": uuid.UUID(int=7), "tags": {"a"}}

    @flow(result_storage=str(tmp_path), result_serializer="json")
    def my_flow() -> dict[str, Any]:
        return make()

    state = my_flow(return_state=True)
    restored = pickle.loads(pickle.dumps(state)).result()
    assert restored == {"when": datetime.date(2026, 11, 22), "id": uuid.UUID(int=7), "tags": {"a"}}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    stored = [p.read_bytes() for p in files if p.relative_to(tmp_path).parts[0] != "runs"]
    assert len(stored) == 2  # the task's result and the flow's (runs/ is the run journal)
    assert all(b'"serializer":"json"' in data.replace(b" ", b"") for data in stored)


def test_a_result_store_keeps_its_own_serializer(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path), serializer="json")

    @task(result_storage=store, result_storage_key="value.json")
    def compute() -> dict[str, int]:
        return {"a": 1}

    assert compute() == {"a": 1}
    assert b'"serializer":"json"' in (tmp_path / "value.json").read_bytes().replace(b" ", b"")


def test_default_storage_follows_temporary_settings(tmp_path: Path) -> None:
    @task(persist_result=True, result_storage_key="here.bin")
    def compute() -> int:
        return 1

    with temporary_settings(results_default_storage=str(tmp_path / "elsewhere")):
        assert compute() == 1
    assert (tmp_path / "elsewhere" / "here.bin").exists()
