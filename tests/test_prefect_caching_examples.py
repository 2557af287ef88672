"""Prefect 3's own documentation examples for caching and results, ported by changing imports.

Each test reproduces one example from docs.prefect.io (the caching and results how-to pages, the
caching concepts page, the cache_policies API reference) with ``prefect`` imports replaced by
``fluvial`` ones, and asserts what the documentation says the example does. Sleeps are shortened,
network calls go to a local stand-in (``FakeHttpx``) and S3 to the moto server of the ``s3_server``
fixture; otherwise example bodies are kept as written. Lines added only to observe behaviour (a
recorder list, a barrier, a marker file) are marked ``# observe``.

Import map used below: ``prefect`` -> ``fluvial``; ``prefect.cache_policies`` ->
``fluvial.cache_policies``; ``prefect.results``/``prefect.filesystems``/``prefect.locking.*`` ->
``fluvial.storage``; ``prefect.transactions.IsolationLevel`` -> ``fluvial.storage.IsolationLevel``
(``fluvial.transactions`` does not exist yet); ``prefect.settings`` -> ``fluvial.settings``.

Prefect needs a saved block for ``result_storage``/``key_storage`` (``S3Bucket(...).save(...)``,
``S3Bucket.load(...)``, ``"s3-bucket/my-dev-block"``); fluvial has no server and takes the storage
itself (a path, an fsspec URL, a ``LocalFileSystem``/``RemoteFileSystem`` object), so block
saves and loads are replaced by the object or a path, with a comment where that happens.

Left out on purpose:
* "Coordinate caching across multiple tasks" / "Multi-task caching" (``prefect.transactions``,
  not available in fluvial yet).
* The ``CompoundCachePolicy`` API reference's "hashing a sorted tuple of all computed keys":
  Prefect's own code hashes the keys in policy order (``hash_objects(*keys)``), so the docstring
  is wrong; fluvial follows the code.
* "Read a result from a file directly" (``json.load`` of a result file): that describes Prefect's
  on-disk JSON layout, not an API; fluvial's record format is its own (a magic line, a JSON
  metadata line, the payload), and the page marks the example ``notest``.
* ``prefect result-storage set`` / ``PREFECT_DEFAULT_RESULT_STORAGE_BLOCK`` (server-side defaults)
  and the block string references (``"local-file-system/my-storage"``): they need the API.
"""

# The examples keep the docs' own style; these rules would rewrite them:
# ruff: noqa: C403, F811, PERF401, UP045

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

try:
    from _doc_helpers import FakeHttpx
except ImportError:  # tests/ became a package
    from tests._doc_helpers import FakeHttpx


def _records(directory):
    """The names of the record files under *directory* (recursively), relative to it; the run
    journal (``runs/``) holds no records."""
    if not directory.exists():
        return set()
    files = (p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    return {str(p) for p in files if p.parts[0] != "runs"}


# ------------------------------------------------------------------------------------------------
# How to cache workflow step outputs
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps
# ("The simplest way ... set persist_result=True ... implicitly use the DEFAULT cache policy ...
#  subsequent calls of a task with identical inputs from within the same parent run will return
#  cached results")
def test_persist_result_caches_identical_calls_within_one_flow_run(isolated_fluvial_home):
    from fluvial import flow, task
    from fluvial.cache_policies import DEFAULT, INPUTS, RUN_ID, TASK_SOURCE

    calls = []  # observe
    states = []  # observe

    @task(persist_result=True)
    def add_one(x: int):
        calls.append(x)  # observe
        return x + 1

    @flow
    def my_flow():
        add_one(1)  # will not be cached
        add_one(1)  # will be cached
        add_one(2)  # will not be cached
        states.append(add_one(1, return_state=True).name)  # observe

    my_flow()
    assert calls == [1, 2]
    assert states == ["Cached"]
    # "DEFAULT = INPUTS + TASK_SOURCE + RUN_ID": a new flow run is a new parent run.
    assert add_one.cache_policy == DEFAULT == INPUTS + TASK_SOURCE + RUN_ID
    my_flow()
    assert calls == [1, 2, 1, 2]
    # Cache records go to the default storage (Prefect: ~/.prefect/storage).
    assert _records(isolated_fluvial_home / "storage")


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps  (cache based on inputs)
def test_inputs_policy_sleeps_only_for_new_inputs(capsys):
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def my_stateful_task(x: int):
        print("sleeping")
        time.sleep(0.01)
        return x + 1

    assert my_stateful_task(x=1) == 2  # sleeps
    assert my_stateful_task(x=1) == 2  # does not sleep
    assert my_stateful_task(x=2) == 3  # sleeps
    assert capsys.readouterr().out.split() == ["sleeping", "sleeping"]
    assert my_stateful_task(x=1, return_state=True).name == "Cached"  # observe


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps
#   (cache based on a subset of inputs)
def test_inputs_minus_debug_ignores_that_input(capsys):
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    @task(cache_policy=INPUTS - "debug")
    def my_stateful_task(x: int, debug: bool = False):
        print("sleeping")
        time.sleep(0.01)
        return x + 1

    my_stateful_task(x=1)  # sleeps
    my_stateful_task(x=1, debug=True)  # does not sleep
    my_stateful_task(x=1, debug=False)  # does not sleep
    assert capsys.readouterr().out.split() == ["sleeping"]


# https://docs.prefect.io/v3/concepts/caching  (INPUTS - 'debug': "still uses the cache")
def test_custom_policy_inputs_minus_debug(capsys):
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    my_custom_policy = INPUTS - "debug"

    @task(cache_policy=my_custom_policy)
    def my_cached_task(x: int, debug: bool = False):
        print("running...")
        return x + 42

    my_cached_task(1)
    state = my_cached_task(1, debug=True, return_state=True)  # still uses the cache
    assert state.name == "Cached"
    assert state.result() == 43
    assert capsys.readouterr().out.split() == ["running..."]


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps  (cache with an
#   expiration; 10 seconds shortened to 1)
def test_cache_expiration_runs_again_once_expired(capsys):
    from datetime import timedelta

    from fluvial import task
    from fluvial.cache_policies import INPUTS

    @task(cache_policy=INPUTS, cache_expiration=timedelta(seconds=1))
    def my_stateful_task(x: int):
        print("sleeping")
        time.sleep(0.01)
        return x + 1

    my_stateful_task(x=1)  # sleeps
    my_stateful_task(x=1)  # does not sleep
    assert capsys.readouterr().out.split() == ["sleeping"]
    # ... 1 second passes ...
    time.sleep(1.1)
    my_stateful_task(x=1)  # sleeps again
    assert capsys.readouterr().out.split() == ["sleeping"]


# https://docs.prefect.io/v3/concepts/caching  (cache expiration: "Prefect persist[s] an expiration
#   timestamp alongside the result record ... This expiration is then applied to _all_ other tasks
#   that may share this cache key.")
def test_cache_expiration_applies_to_every_task_sharing_the_key():
    from datetime import timedelta

    from fluvial import task

    def static_cache_key(context, parameters):
        return "shared key"

    @task(cache_key_fn=static_cache_key, cache_expiration=timedelta(seconds=1))
    def writer():
        return "written"

    @task(cache_key_fn=static_cache_key)  # no expiration of its own
    def reader():
        return "read"

    assert writer() == "written"
    state = reader(return_state=True)
    assert state.name == "Cached"
    assert state.result() == "written"
    time.sleep(1.1)
    assert reader() == "read"


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps  (ignore the cache)
def test_refresh_cache_true_ignores_the_cache():
    import random

    from fluvial import task
    from fluvial.cache_policies import TASK_SOURCE

    @task(cache_policy=TASK_SOURCE, refresh_cache=True)
    def never_caching_task():
        return random.random()

    first = never_caching_task(return_state=True)
    second = never_caching_task(return_state=True)
    assert [first.name, second.name] == ["Completed", "Completed"]
    assert first.result() != second.result()


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps  (PREFECT_TASKS_REFRESH_CACHE
#   "changes the default behavior of all tasks to refresh"; with refresh_cache=False "If a cache key
#   exists it will be read, not updated. If a cache key does _not_ exist yet, these tasks can still
#   write to the cache.")
def test_refresh_cache_setting_and_refresh_cache_false_opt_out():
    import random

    from fluvial import task
    from fluvial.cache_policies import TASK_SOURCE
    from fluvial.settings import temporary_settings

    @task(cache_policy=TASK_SOURCE, refresh_cache=False)
    def caching_task():
        return random.random()

    @task(cache_policy=TASK_SOURCE)
    def default_task():
        return random.random()

    with temporary_settings(tasks_refresh_cache=True):  # PREFECT_TASKS_REFRESH_CACHE=true
        written = caching_task(return_state=True)  # no key yet: it writes the cache
        read = caching_task(return_state=True)  # the key exists: it is read
        assert written.name == "Completed"
        assert read.name == "Cached"
        assert read.result() == written.result()

        a = default_task()
        b = default_task()
        assert a != b  # every run refreshes

    # Outside the setting the refreshed record is what is cached.
    assert default_task(return_state=True).result() == b


# https://docs.prefect.io/v3/develop/task-caching  (force ignore the cache: "When this task runs,
#   it _always_ updates the cache key instead of using the cached value.")
def test_refresh_cache_always_updates_a_static_key():
    import random

    from fluvial import task

    def static_cache_key(context, parameters):
        # return a constant
        return "static cache key"

    @task(cache_key_fn=static_cache_key, refresh_cache=True)
    def caching_task():
        return random.random()

    first = caching_task()
    latest = caching_task()
    assert first != latest

    @task(cache_key_fn=static_cache_key, refresh_cache=False)
    def caching_task():
        return random.random()

    state = caching_task(return_state=True)
    assert state.name == "Cached"
    assert state.result() == latest


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps  (cache on multiple
#   criteria: "will use a cached result as long as the same inputs and task source are used")
# https://docs.prefect.io/v3/concepts/caching  (TASK_SOURCE + INPUTS: "This task will rerun anytime
#   you provide new values for x, _or_ anytime you change the underlying code.")
def test_inputs_plus_task_source():
    from fluvial import task
    from fluvial.cache_policies import INPUTS, TASK_SOURCE

    calls = []  # observe

    @task(cache_policy=INPUTS + TASK_SOURCE)
    def my_task(x: int):
        calls.append(x)  # observe
        return x + 1

    assert [my_task(1), my_task(1), my_task(2)] == [2, 2, 3]
    assert calls == [1, 2]

    @task(cache_policy=TASK_SOURCE + INPUTS)
    def my_cached_task(x: int):
        calls.append(("v1", x))  # observe
        return x + 42

    assert [my_cached_task(1), my_cached_task(1)] == [43, 43]

    @task(cache_policy=TASK_SOURCE + INPUTS)
    def my_cached_task(x: int):  # the underlying code changed
        calls.append(("v2", x))  # observe
        return x + 43

    assert my_cached_task(1) == 44
    assert calls[2:] == [("v1", 1), ("v2", 1)]


# https://docs.prefect.io/v3/develop/task-caching  (TASK_SOURCE: "No matter how many flows call it,
#   this task will run once and only once until its underlying code is altered")
def test_task_source_runs_once_until_the_code_changes(capsys):
    from fluvial import flow, task
    from fluvial.cache_policies import TASK_SOURCE

    @task(cache_policy=TASK_SOURCE)
    def my_stateful_task():
        print("sleeping")
        time.sleep(0.01)
        return 42

    assert my_stateful_task() == 42  # sleeps
    assert my_stateful_task() == 42  # does not sleep

    @flow
    def flow_one():  # observe
        return my_stateful_task()

    @flow
    def flow_two():  # observe
        return my_stateful_task()

    assert flow_one() == flow_two() == 42
    assert capsys.readouterr().out.split() == ["sleeping"]

    @task(cache_policy=TASK_SOURCE)
    def my_stateful_task():
        print("sleeping")
        time.sleep(0.01)

        # change the return value, for example
        return 43

    assert my_stateful_task() == 43  # sleeps again
    assert capsys.readouterr().out.split() == ["sleeping"]


# https://docs.prefect.io/v3/concepts/caching  (cache key functions; "The filenames in this
#   directory will correspond exactly to computed cache keys from your task runs.")
def test_cache_key_fn_static_key_names_the_result_file(isolated_fluvial_home):
    from fluvial import task

    seen = []  # observe

    def static_cache_key(context, parameters):
        # observe: the page names task_run_id and flow_run_id attributes (Prefect 2 names);
        # Prefect 3's TaskRunContext has them as task_run.id and task_run.flow_run_id.
        seen.append((context.task.name, context.task_run.id, context.task_run.flow_run_id))
        seen.append(parameters)  # observe
        # return a constant
        return "static cache key"

    @task(cache_key_fn=static_cache_key)
    def my_cached_task(x: int):
        return x + 1

    assert my_cached_task(1) == 2
    state = my_cached_task(2, return_state=True)
    assert state.name == "Cached"
    assert state.result() == 2  # the constant key maps every call to the first result
    assert [entry[0] for entry in seen[0::2]] == ["my_cached_task", "my_cached_task"]
    assert all(entry[1] is not None and entry[2] is None for entry in seen[0::2])  # no flow
    assert seen[1::2] == [{"x": 1}, {"x": 2}]
    assert _records(isolated_fluvial_home / "storage") == {"static cache key"}


# https://docs.prefect.io/v3/api-ref/python/prefect-cache_policies  (CachePolicy.from_cache_key_fn:
#   "Given a function generates a key policy.")
def test_cache_policy_from_cache_key_fn():
    from fluvial import task
    from fluvial.cache_policies import CacheKeyFnPolicy, CachePolicy

    policy = CachePolicy.from_cache_key_fn(lambda context, parameters: f"x={parameters['x']}")
    assert isinstance(policy, CacheKeyFnPolicy)

    @task(cache_policy=policy)
    def double(x: int):
        return 2 * x

    assert double(3) == 6
    assert double(3, return_state=True).name == "Cached"


# ------------------------------------------------------------------------------------------------
# Caching concepts: persistence, built-in policies
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/v3/concepts/caching  ("Caching requires result persistence, which is off
#   by default. To turn on result persistence for all of your tasks use the
#   PREFECT_RESULTS_PERSIST_BY_DEFAULT setting")
def test_caching_requires_result_persistence(isolated_fluvial_home):
    from fluvial import flow, task
    from fluvial.settings import temporary_settings

    @task
    def add_one(x: int):
        return x + 1

    @flow
    def my_flow():
        return [add_one(1, return_state=True).name for _ in range(2)]  # observe

    assert my_flow() == ["Completed", "Completed"]
    assert not _records(isolated_fluvial_home / "storage")

    # prefect config set PREFECT_RESULTS_PERSIST_BY_DEFAULT=true
    with temporary_settings(results_persist_by_default=True):
        assert my_flow() == ["Completed", "Cached"]
    assert _records(isolated_fluvial_home / "storage")


# https://docs.prefect.io/v3/concepts/caching  ("any configuration which explicitly avoids result
#   persistence will result in your task never using a cache, for example setting
#   persist_result=False")
def test_persist_result_false_never_uses_a_cache(isolated_fluvial_home):
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    @task(cache_policy=INPUTS, persist_result=False)
    def my_task(x: int):
        return x + 1

    assert [my_task(1, return_state=True).name for _ in range(2)] == ["Completed", "Completed"]
    assert not _records(isolated_fluvial_home / "storage")


# https://docs.prefect.io/v3/concepts/caching  ("NO_CACHE: this cache policy always returns None and
#   therefore avoids caching and result persistence altogether")
def test_no_cache_policy_neither_caches_nor_persists(isolated_fluvial_home):
    from fluvial import task
    from fluvial.cache_policies import NO_CACHE

    calls = []  # observe

    @task(cache_policy=NO_CACHE)
    def my_task(x: int):
        calls.append(x)  # observe
        return x + 1

    assert NO_CACHE.compute_key(None, {"x": 1}, {}) is None
    assert [my_task(1, return_state=True).name for _ in range(2)] == ["Completed", "Completed"]
    assert calls == [1, 1]
    assert not _records(isolated_fluvial_home / "storage")


# https://docs.prefect.io/v3/concepts/caching  ("FLOW_PARAMETERS: this cache policy uses _only_ the
#   parameter values provided to the parent flow run to compute the cache key")
def test_flow_parameters_policy_keys_on_the_parent_flow_parameters():
    from fluvial import flow, task
    from fluvial.cache_policies import FLOW_PARAMETERS

    calls = []  # observe

    @task(cache_policy=FLOW_PARAMETERS)
    def load(part: int):
        calls.append(part)  # observe
        return part

    @flow
    def pipeline(day: str):
        return [load(1), load(2)]  # task inputs differ, the flow parameters do not

    assert pipeline("monday") == [1, 1]
    assert pipeline("monday") == [1, 1]  # another run with the same parameters
    assert pipeline("tuesday") == [1, 1]
    assert calls == [1, 1]


# https://docs.prefect.io/v3/api-ref/python/prefect-cache_policies  (RunId: "Returns either the
#   prevailing flow run ID, or if not found, the prevailing task run ID.")
# https://docs.prefect.io/v3/concepts/caching  (the default key uses "the prevailing flow run ID,
#   or if executed autonomously, the prevailing task run ID")
def test_run_id_policy_flow_run_or_task_run():
    from fluvial import flow, task
    from fluvial.cache_policies import RUN_ID

    @task(cache_policy=RUN_ID)
    def once_per_run(x: int):
        return x

    @flow
    def my_flow():
        return [once_per_run(1), once_per_run(2)]

    assert my_flow() == [1, 1]  # one key per flow run, whatever the inputs
    assert my_flow() == [1, 1]
    # Called autonomously, each call is its own task run: nothing is shared.
    assert [once_per_run(1, return_state=True).name for _ in range(2)] == [
        "Completed",
        "Completed",
    ]

    @task(persist_result=True)  # DEFAULT
    def add_one(x: int):
        return x + 1

    assert [add_one(1, return_state=True).name for _ in range(2)] == ["Completed", "Completed"]


# https://docs.prefect.io/v3/develop/task-caching  (caching example: INPUTS with a one-day
#   expiration, then INPUTS + RUN_ID "so only repeated calls in the same flow run are cached")
def test_caching_example_hello_task(caplog):
    import logging
    from datetime import timedelta

    from fluvial import flow, task
    from fluvial.cache_policies import INPUTS, RUN_ID

    caplog.set_level(logging.INFO)

    @task(cache_policy=INPUTS, cache_expiration=timedelta(days=1))
    def hello_task(name_input):
        # Doing some work
        print("Saying hello")
        return "hello " + name_input

    @flow(log_prints=True)
    def hello_flow(name_input):
        hello_task(name_input)
        hello_task(name_input)  # does not rerun

    hello_flow("marvin")
    hello_flow("marvin")  # observe: INPUTS alone is shared across flow runs
    assert caplog.messages.count("Saying hello") == 1
    hello_flow("arthur")  # observe: a new input runs again
    assert caplog.messages.count("Saying hello") == 2
    caplog.clear()

    @task(cache_policy=INPUTS + RUN_ID, cache_expiration=timedelta(days=1))
    def hello_task(name_input):
        # Doing some work
        print("Saying hello")
        return "hello " + name_input

    @flow(log_prints=True)
    def hello_flow(name_input):
        # reruns each time the flow is run
        hello_task(name_input)

        # but the same call within the same flow run is Cached
        hello_task(name_input)

    hello_flow("marvin")
    hello_flow("marvin")
    assert caplog.messages.count("Saying hello") == 2


# https://docs.prefect.io/v3/develop/write-tasks  (concurrency: get_url cached with task_input_hash
#   for an hour; httpx replaced by FakeHttpx)
# https://docs.prefect.io/v3/api-ref/python/prefect-tasks  ("Define a task that is cached for a day
#   based on its inputs")
def test_task_input_hash_cache_key_fn():
    from datetime import timedelta
    from typing import Optional

    from fluvial import flow, task
    from fluvial.tasks import task_input_hash

    def responder(url, params):
        if url.endswith("/issues"):
            page = params["page"]
            return 200, [{"user": {"id": page * 10 + i % 3}} for i in range(100 if page < 3 else 5)]
        return 200, {"stargazers_count": 12157, "forks_count": 1251, "open_issues_count": 205}

    httpx = FakeHttpx(responder)

    @task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
    def get_url(url: str, params: Optional[dict[str, any]] = None):
        response = httpx.get(url, params=params)
        response.raise_for_status()
        return response.json()

    def get_open_issues(repo_name: str, open_issues_count: int, per_page: int = 100):
        issues = []
        pages = range(1, -(open_issues_count // -per_page) + 1)
        for page in pages:
            issues.append(
                get_url.submit(
                    f"https://api.github.com/repos/{repo_name}/issues",
                    params={"page": page, "per_page": per_page, "state": "open"},
                )
            )
        return [i for p in issues for i in p.result()]

    @flow(retries=3, retry_delay_seconds=0, log_prints=True)
    def get_repo_info(repo_name: str = "PrefectHQ/prefect"):
        repo_stats = get_url(f"https://api.github.com/repos/{repo_name}")
        issues = get_open_issues(repo_name, repo_stats["open_issues_count"])
        issues_per_user = len(issues) / len(set([i["user"]["id"] for i in issues]))
        print(f"{repo_name} repository statistics 🤓:")
        print(f"Stars 🌠 : {repo_stats['stargazers_count']}")
        print(f"Forks 🍴 : {repo_stats['forks_count']}")
        print(f"Average open issues per user 💌 : {issues_per_user:.2f}")
        return issues_per_user  # observe

    first = get_repo_info()
    assert httpx.total_calls == 4  # the repo, then three pages of issues
    assert get_repo_info() == first  # a second flow run is served from the cache
    assert httpx.total_calls == 4

    @task(cache_key_fn=task_input_hash, cache_expiration=timedelta(days=1))
    def my_task():
        return "hello"

    assert my_task() == "hello"
    assert my_task(return_state=True).name == "Cached"


# ------------------------------------------------------------------------------------------------
# Customize caching behavior: key storage, isolation, non-serializable inputs
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/v3/advanced/caching  (separate cache key storage from result storage)
# https://docs.prefect.io/v3/concepts/caching  (cache storage: "persisted task results will only
#   include the return value of your task")
def test_key_storage_separates_cache_records_from_results(tmp_path, isolated_fluvial_home):
    from fluvial import task
    from fluvial.cache_policies import INPUTS, TASK_SOURCE
    from fluvial.storage import get_serializer

    key_storage = tmp_path / "cache-storage"  # "/path/to/cache/storage"
    cache_policy = (TASK_SOURCE + INPUTS).configure(key_storage=str(key_storage))

    @task(cache_policy=cache_policy)
    def my_cached_task(x: int):
        return x + 42

    assert my_cached_task(1) == 43
    assert my_cached_task(1, return_state=True).name == "Cached"

    # Cache records in the specified directory, results in the default storage, same key.
    cache_records = _records(key_storage)
    results = _records(isolated_fluvial_home / "storage")
    assert len(cache_records) == 1
    assert cache_records == results
    (key,) = results
    payload = (isolated_fluvial_home / "storage" / key).read_bytes()
    assert get_serializer("pickle").loads(payload) == 43


# https://docs.prefect.io/v3/how-to-guides/workflows/cache-workflow-steps  (cache in a distributed
#   environment: result_storage on S3)
# https://docs.prefect.io/v3/advanced/caching  (cache records in a remote object store)
def test_result_storage_and_key_storage_on_s3(s3_server, isolated_fluvial_home):
    import fsspec

    from fluvial import task
    from fluvial.cache_policies import INPUTS, TASK_SOURCE
    from fluvial.storage import RemoteFileSystem

    # Prefect: S3Bucket(credentials=AwsCredentials(...), bucket_name="my-bucket") then
    # s3_bucket.save("my-cache-bucket"); fluvial takes the storage object itself (moto's endpoint).
    s3_bucket = RemoteFileSystem(basepath=s3_server.url(), settings=s3_server.storage_options())

    @task(cache_policy=INPUTS, result_storage=s3_bucket)
    def my_cached_task(x: int):
        return x + 42

    assert my_cached_task(1) == 43
    assert my_cached_task(1, return_state=True).name == "Cached"
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    assert len(fs.find(s3_bucket.basepath)) == 1
    assert not _records(isolated_fluvial_home / "storage")

    key_bucket = RemoteFileSystem(basepath=s3_server.url(), settings=s3_server.storage_options())
    cache_policy = (TASK_SOURCE + INPUTS).configure(key_storage=key_bucket)

    @task(cache_policy=cache_policy)
    def my_other_cached_task(x: int):
        return x + 42

    assert my_other_cached_task(2) == 44
    assert my_other_cached_task(2, return_state=True).name == "Cached"
    assert len(fs.find(key_bucket.basepath)) == 1  # the cache record, on S3
    assert len(_records(isolated_fluvial_home / "storage")) == 1  # the result, locally


# https://docs.prefect.io/v3/advanced/caching  (isolate cache access: "both tasks will execute in
#   parallel and perform work despite both tasks using the same cache key")
def test_read_committed_lets_both_tasks_run(capsys):
    from fluvial import task
    from fluvial.cache_policies import INPUTS

    both_running = threading.Barrier(2, timeout=10)  # observe

    cache_policy = INPUTS

    @task(cache_policy=cache_policy)
    def my_task_version_1(x: int):
        print("my_task_version_1 running")
        both_running.wait()  # observe: returns only while the other task runs too
        return x + 42

    @task(cache_policy=cache_policy)
    def my_task_version_2(x: int):
        print("my_task_version_2 running")
        both_running.wait()  # observe
        return x + 43

    thread_1 = threading.Thread(target=my_task_version_1, args=(1,))
    thread_2 = threading.Thread(target=my_task_version_2, args=(1,))

    thread_1.start()
    thread_2.start()

    thread_1.join()
    thread_2.join()

    out = capsys.readouterr().out
    assert "my_task_version_1 running" in out
    assert "my_task_version_2 running" in out
    assert not both_running.broken


# https://docs.prefect.io/v3/advanced/caching  (SERIALIZABLE with MemoryLockManager: "only one of
#   the tasks will run and the other will use the cached value")
def test_serializable_with_memory_lock_manager_runs_one_task(capsys):
    from fluvial import task
    from fluvial.cache_policies import INPUTS
    from fluvial.storage import IsolationLevel, MemoryLockManager

    results = []  # observe

    cache_policy = INPUTS.configure(
        isolation_level=IsolationLevel.SERIALIZABLE,
        lock_manager=MemoryLockManager(),
    )

    @task(cache_policy=cache_policy)
    def my_task_version_1(x: int):
        print("my_task_version_1 running")
        time.sleep(0.2)  # observe: hold the lock while the other thread arrives
        return x + 42

    @task(cache_policy=cache_policy)
    def my_task_version_2(x: int):
        print("my_task_version_2 running")
        time.sleep(0.2)  # observe
        return x + 43

    def call(t, x):  # observe
        results.append(t(x, return_state=True))

    thread_1 = threading.Thread(target=call, args=(my_task_version_1, 2))
    thread_2 = threading.Thread(target=call, args=(my_task_version_2, 2))

    thread_1.start()
    thread_2.start()

    thread_1.join()
    thread_2.join()

    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith("running")]
    assert len(lines) == 1
    assert sorted(s.name for s in results) == ["Cached", "Completed"]
    assert len({s.result() for s in results}) == 1


# https://docs.prefect.io/v3/advanced/caching  ("Locking in a distributed setting": the doc uses
#   prefect-redis's RedisLockManager, which needs a Redis server; the recommended lock manager for
#   processes on one machine, FileSystemLockManager, stands in for it)
# https://docs.prefect.io/v3/concepts/caching  (recommended lock managers by execution context)
def test_serializable_with_file_lock_manager_across_processes(tmp_path):
    script = tmp_path / "cached.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, sys, time, uuid

            from fluvial import task
            from fluvial.cache_policies import TASK_SOURCE, INPUTS
            from fluvial.storage import FileSystemLockManager, IsolationLevel

            storage, markers = sys.argv[1], sys.argv[2]

            cache_policy = (INPUTS + TASK_SOURCE).configure(
                isolation_level=IsolationLevel.SERIALIZABLE,
                lock_manager=FileSystemLockManager(os.path.join(markers, "locks")),
            )

            @task(cache_policy=cache_policy, result_storage=storage)
            def my_cached_task(x: int):
                open(os.path.join(markers, uuid.uuid4().hex), "w").close()  # observe
                time.sleep(0.3)  # observe
                return x + 42

            state = my_cached_task(1, return_state=True)
            print(json.dumps([state.name, state.result()]))
            """
        )
    )
    markers = tmp_path / "markers"
    markers.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "results"), str(markers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), [err for _, err in outputs]
    states = sorted(json.loads(out.strip().splitlines()[-1])[0] for out, _ in outputs)
    values = {json.loads(out.strip().splitlines()[-1])[1] for out, _ in outputs}
    assert states == ["Cached", "Cached", "Completed"]
    assert values == {43}
    assert len([p for p in markers.iterdir() if p.is_file()]) == 1


# https://docs.prefect.io/v3/advanced/caching  (handling non-serializable objects: 1. a custom cache
#   key function)
def test_non_serializable_input_with_a_cache_key_fn_policy():
    from pydantic import BaseModel, ConfigDict

    from fluvial import flow, task
    from fluvial.cache_policies import RUN_ID, CacheKeyFnPolicy
    from fluvial.context import TaskRunContext

    class NotSerializable:
        def __getstate__(self):
            raise TypeError("NooOoOOo! I will not be serialized!")

    class ContainsNonSerializableObject(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)

        name: str
        bad_object: NotSerializable

    def custom_cache_key_fn(context: TaskRunContext, parameters: dict) -> str:
        return parameters["some_object"].name

    @task(cache_policy=CacheKeyFnPolicy(cache_key_fn=custom_cache_key_fn) + RUN_ID)
    def use_object(some_object: ContainsNonSerializableObject) -> str:
        return f"Used {some_object.name}"

    @flow
    def demo_flow():
        obj = ContainsNonSerializableObject(name="test", bad_object=NotSerializable())
        state = use_object(obj, return_state=True)  # Not cached!
        assert state.name == "Completed"
        other_state = use_object(obj, return_state=True)  # Cached!
        assert other_state.name == "Cached"
        assert state.result() == other_state.result()
        return other_state.result()  # observe

    assert demo_flow() == "Used test"


# https://docs.prefect.io/v3/advanced/caching  (handling non-serializable objects: 2. pydantic's
#   custom serialization on the input type)
def test_non_serializable_input_with_a_pydantic_model_serializer():
    from pydantic import BaseModel, ConfigDict, model_serializer

    from fluvial import flow, task
    from fluvial.cache_policies import INPUTS, RUN_ID

    class NotSerializable:
        def __getstate__(self):
            raise TypeError("NooOoOOo! I will not be serialized!")

    class ContainsNonSerializableObject(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)

        name: str
        bad_object: NotSerializable

        @model_serializer
        def ser_model(self) -> dict:
            """Only serialize the name, not the problematic object"""
            return {"name": self.name}

    @task(cache_policy=INPUTS + RUN_ID)
    def use_object(some_object: ContainsNonSerializableObject) -> str:
        return f"Used {some_object.name}"

    @flow
    def demo_flow():
        some_object = ContainsNonSerializableObject(name="test", bad_object=NotSerializable())
        state = use_object(some_object, return_state=True)  # Not cached!
        assert state.name == "Completed"
        other_state = use_object(some_object, return_state=True)  # Cached!
        assert other_state.name == "Cached"
        assert state.result() == other_state.result()
        return other_state.result()  # observe

    assert demo_flow() == "Used test"


# ------------------------------------------------------------------------------------------------
# Persist and retrieve workflow results
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/v3/advanced/results  (result storage: three tasks with different result
#   persistence configuration; S3 blocks replaced by LocalFileSystem objects)
# https://docs.prefect.io/v3/advanced/results  ("Using result storage with decorators", option 1:
#   a LocalFileSystem block; fluvial needs no .save())
def test_result_storage_on_flows_and_tasks(tmp_path):
    from fluvial import flow, task
    from fluvial.storage import LocalFileSystem

    calls = []  # observe

    # Prefect: test_block = S3Bucket(bucket_name='test-bucket'); test_block.save('test-block')
    test_block = LocalFileSystem(basepath=tmp_path / "test-bucket")
    # Prefect: @flow(result_storage='s3-bucket/my-dev-block'), a saved block's slug
    my_dev_block = LocalFileSystem(basepath=tmp_path / "my-dev-bucket")

    # define three tasks
    # with different result persistence configuration

    @task
    def my_task():
        calls.append("ran")  # observe
        return 42

    unpersisted_task = my_task.with_options(persist_result=False)
    other_storage_task = my_task.with_options(result_storage=test_block)

    @flow(result_storage=my_dev_block)
    def my_flow():

        # this task will use the flow's result storage
        my_task()

        # this task will not persist results at all
        unpersisted_task()

        # this task will persist results to its own bucket using a different S3 block
        other_storage_task()

    my_flow()
    assert calls == ["ran"] * 3
    # my_task's record and the flow's own result; nothing from unpersisted_task
    assert len(_records(tmp_path / "my-dev-bucket")) == 2
    assert len(_records(tmp_path / "test-bucket")) == 1

    # Option 1: save block first (fluvial: no save, no server)
    storage = LocalFileSystem(basepath=tmp_path / "results")

    @flow(result_storage=storage)  # Works because block is saved
    def my_flow():
        return "result"

    state = my_flow(return_state=True)  # observe
    assert state.result() == "result"
    assert len(_records(tmp_path / "results")) == 1


# https://docs.prefect.io/v3/advanced/results  (result filenames: "writes three different result
#   files based on the name parameter ... If a result exists at a given storage key in the storage
#   location, the task will load it without running.")
def test_result_storage_key_template(isolated_fluvial_home):
    from fluvial import flow, task

    calls = []  # observe

    @task(result_storage_key="hello-{parameters[name]}.pickle")
    def hello_world(name: str = "world"):
        calls.append(name)  # observe
        return f"hello {name}"

    @flow
    def my_flow():
        hello_world()
        hello_world(name="foo")
        hello_world(name="bar")

    my_flow()
    assert _records(isolated_fluvial_home / "storage") == {
        "hello-world.pickle",
        "hello-foo.pickle",
        "hello-bar.pickle",
    }
    my_flow()
    assert calls == ["world", "foo", "bar"]
    assert hello_world(name="foo", return_state=True).name == "Cached"  # observe


# https://docs.prefect.io/v3/advanced/results  ("If both result_storage_key and cache_key_fn are
#   provided, only the result_storage_key will be used.")
def test_result_storage_key_wins_over_cache_key_fn(isolated_fluvial_home):
    from fluvial import task

    @task(result_storage_key="by-storage-key", cache_key_fn=lambda *args, **kwargs: "by-key-fn")
    def my_task():
        return 1

    assert my_task() == 1
    assert _records(isolated_fluvial_home / "storage") == {"by-storage-key"}


# https://docs.prefect.io/v3/advanced/results  (end-to-end example: persist and then read a result;
#   inspect result metadata)
def test_persist_then_read_with_result_store(isolated_fluvial_home):
    from fluvial import flow, task
    from fluvial.storage import LocalFileSystem, ResultStore

    @task(persist_result=True, result_storage_key="my-result")
    def compute_value():
        return {"answer": 42}

    @flow
    def my_flow():
        compute_value()

    # Run the flow to persist the result
    my_flow()

    # Prefect: LocalFileSystem(basepath="~/.prefect/storage"); fluvial's default is
    # <FLUVIAL_HOME>/storage.
    storage = LocalFileSystem(basepath=isolated_fluvial_home / "storage")
    store = ResultStore(result_storage=storage)

    record = store.read(key="my-result")
    assert record.result == {"answer": 42}

    assert "pickle" in str(record.metadata.serializer)  # PickleSerializer(type='pickle', ...)
    assert record.metadata.storage_key == "my-result"
    assert record.metadata.expiration is None  # None or a datetime
    assert record.metadata.fluvial_version  # Prefect: prefect_version, e.g. "3.4.0"


# https://docs.prefect.io/v3/advanced/results  (result serialization: "pickle", "json",
#   "compressed/pickle" and "compressed/json"; a string identifier or a serializer instance)
# https://docs.prefect.io/v3/develop/big-data  (compress results written to disk "to save space")
@pytest.mark.parametrize("serializer", ["pickle", "json", "compressed/pickle", "compressed/json"])
def test_result_serializers(serializer, tmp_path):
    from fluvial import task
    from fluvial.storage import ResultStore

    value = {"rows": [{"city": "Springfield", "population": 30720}] * 200}

    @task(result_serializer=serializer, result_storage=tmp_path, result_storage_key="data")
    def produce():
        return value

    assert produce() == value
    record = ResultStore(result_storage=tmp_path).read(key="data")
    assert record.metadata.serializer == serializer
    assert record.result == value
    size = (tmp_path / "data").stat().st_size
    if serializer.startswith("compressed/"):

        @task(
            result_serializer=serializer.split("/")[1],  # observe: the same, uncompressed
            result_storage=tmp_path,
            result_storage_key="plain",
        )
        def produce_plain():
            return value

        produce_plain()
        assert size < (tmp_path / "plain").stat().st_size


# https://docs.prefect.io/v3/advanced/results  (result_serializer "accepts both a string identifier
#   or an instance"; PREFECT_RESULTS_DEFAULT_SERIALIZER "defaults to pickle";
#   PREFECT_LOCAL_STORAGE_PATH sets where results are stored by default)
def test_serializer_instance_and_results_settings(tmp_path, isolated_fluvial_home):
    from fluvial import task
    from fluvial.settings import temporary_settings
    from fluvial.storage import JSONSerializer, ResultStore

    @task(result_serializer=JSONSerializer(), result_storage_key="as-json")
    def as_json():
        return [1, 2, 3]

    @task(persist_result=True, result_storage_key="by-default")
    def by_default():
        return [1, 2, 3]

    assert as_json() == [1, 2, 3]
    assert by_default() == [1, 2, 3]
    store = ResultStore(result_storage=isolated_fluvial_home / "storage")
    assert store.read(key="as-json").metadata.serializer == "json"
    assert store.read(key="by-default").metadata.serializer == "pickle"

    my_results = tmp_path / "my-results"
    # PREFECT_RESULTS_DEFAULT_SERIALIZER=json, PREFECT_LOCAL_STORAGE_PATH='~/.my-results/'
    with temporary_settings(
        results_default_serializer="json", results_default_storage=str(my_results)
    ):
        by_default.with_options(result_storage_key="elsewhere")()
    assert _records(my_results) == {"elsewhere"}
    assert ResultStore(result_storage=my_results).read("elsewhere").metadata.serializer == "json"


# https://docs.prefect.io/v3/advanced/results  ("Enabling persistence on a flow enables persistence
#   by default for its tasks ... Any settings _explicitly_ set on a task take precedence")
def test_flow_persistence_enables_task_persistence(isolated_fluvial_home):
    from fluvial import flow, task

    @task
    def my_task(x: int):
        return x

    unpersisted_task = my_task.with_options(persist_result=False)

    @flow(persist_result=True)
    def my_flow():
        return [
            my_task(1, return_state=True).name,
            my_task(1, return_state=True).name,
            unpersisted_task(2, return_state=True).name,
            unpersisted_task(2, return_state=True).name,
        ]

    assert my_flow() == ["Completed", "Cached", "Completed", "Completed"]


# https://docs.prefect.io/v3/advanced/results  ("the PREFECT_TASKS_DEFAULT_PERSIST_RESULT
#   environment variable can be used to globally control the default persistence behavior for
#   tasks, overriding the default behavior set by a parent flow")
def test_tasks_default_persist_result_setting_overrides_the_flow(isolated_fluvial_home):
    from fluvial import flow, task
    from fluvial.settings import temporary_settings

    @task
    def my_task(x: int):
        return x

    @flow(persist_result=True)
    def my_flow():
        return [my_task(1, return_state=True).name for _ in range(2)]

    # PREFECT_TASKS_DEFAULT_PERSIST_RESULT=false
    with temporary_settings(tasks_default_persist_result=False):
        assert my_flow() == ["Completed", "Completed"]


# https://docs.prefect.io/v3/advanced/results  (caching results in memory: drop the result from
#   memory once it has been committed with cache_result_in_memory=False)
def test_cache_result_in_memory_false(tmp_path):
    from fluvial import flow, task

    @flow(cache_result_in_memory=False)
    def foo():
        return "pretend this is large data"

    @task(cache_result_in_memory=False)
    def bar():
        return "pretend this is biiiig data"

    assert foo() == "pretend this is large data"
    assert bar() == "pretend this is biiiig data"

    # observe: once persisted, the value is read back from storage when asked for
    persisted = bar.with_options(result_storage=tmp_path, result_storage_key="big")
    state = persisted(return_state=True)
    assert (tmp_path / "big").exists()
    assert state.result() == "pretend this is biiiig data"
