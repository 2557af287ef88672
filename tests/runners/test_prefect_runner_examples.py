"""Prefect 3's own documentation examples for task runners, ported by changing only their imports.

Sources: the task-runner pages of docs.prefect.io (``ThreadPoolTaskRunner`` and
``ProcessPoolTaskRunner``, with their API reference), the prefect-dask pages (index, usage guide,
API reference of ``DaskTaskRunner`` and ``get_dask_client``) and the prefect-ray pages (index,
API reference of ``RayTaskRunner`` and ``remote_options``). Each test reproduces one example with
``prefect`` / ``prefect_dask`` / ``prefect_ray`` imports replaced by ``fluvial`` ones and asserts
what the documentation says the example does. Lines added only to observe behaviour are marked
``# observe``; changed values say what the docs have (``# docs: ...``).

Clusters: the session's Dask ``LocalCluster`` (``dask_cluster``), its separately started scheduler
and worker (``cli_cluster``) and its Ray (``ray_session``) stand in for "a cluster you already
have"; one test lets ``DaskTaskRunner`` start its default cluster as the docs do, and the examples
whose point is the cluster they configure (``cluster_kwargs``, ``cluster_class``, ``adapt_kwargs``,
resources) start small ones. Sleeps are shortened, data is small, and network calls go to local
stand-ins. Dask dataframes need pyarrow, which is not installed: the ``dask.datasets.timeseries``
examples use a ``dask.bag`` of the same shape (the docs name ``dask.Bag`` as the other case).

Left out: the prefect-ray remote-cluster example (caching with an S3 result-storage block made in
the Prefect UI: needs a Prefect server), ``dask_cloudprovider`` ``FargateCluster`` and
``dask_kubernetes.KubeCluster`` clusters (cloud and Kubernetes; a ``LocalCluster`` stands in
where the example's point is ``cluster_class``/``adapt_kwargs``). ``DaskTaskRunner``'s
``cluster=`` and ``performance_report_path`` have no example in those pages; tests/runners/
test_dask.py covers them.
"""

# The examples keep the docs' own style; these rules would rewrite them:
# ruff: noqa: F841, UP006, UP035

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    # Another Dask on this machine may hold the default dashboard port; Dask then warns and moves.
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use"),
]

# Dask and Ray workers cannot import this module: the tasks below travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SAFETY = 60.0  # seconds: only reached when something is broken


# --- local stand-ins (picklable: they travel to the workers with the tasks) ----------------------


class _ImageResponse:
    def __init__(self, url: str) -> None:
        self.content = f"PNG bytes of {url}".encode()


class _LocalHttpx:
    """Stands in for ``httpx`` in the Niño 3.4 download example: no network here."""

    @staticmethod
    def get(url: str) -> _ImageResponse:
        return _ImageResponse(url)


httpx = _LocalHttpx()


def _timeseries(start: str, end: str, partition_freq: str = "4w") -> Any:
    """Stands in for ``dask.datasets.timeseries`` (a dask dataframe needs pyarrow): a
    ``dask.bag`` of records ``{"year", "x"}``, four a year from *start* up to *end*."""
    import dask.bag

    records = [
        {"year": year, "x": float(year % 10 + quarter)}
        for year in range(int(start), int(end))
        for quarter in range(4)
    ]
    return dask.bag.from_sequence(records, npartitions=4)


def _describe(df: Any) -> Any:
    """Stands in for ``df.describe()``: count, mean, min and max of ``x``, lazily."""
    import dask

    xs = df.pluck("x")
    return dask.delayed(dict)(count=xs.count(), mean=xs.mean(), min=xs.min(), max=xs.max())


def _yearly_mean(df: Any) -> Any:
    """Stands in for ``df.groupby(df.index.year).mean()``: lazily, ``[(year, mean of x)]``."""

    def add(total: tuple[float, int], record: dict[str, Any]) -> tuple[float, int]:
        return total[0] + record["x"], total[1] + 1

    def combine(a: tuple[float, int], b: tuple[float, int]) -> tuple[float, int]:
        return a[0] + b[0], a[1] + b[1]

    return df.foldby("year", add, (0.0, 0), combine, (0.0, 0)).map(
        lambda pair: (pair[0], pair[1][0] / pair[1][1])
    )


def _expected_summary(start: int, end: int) -> dict[str, float]:
    xs = [float(year % 10 + quarter) for year in range(start, end) for quarter in range(4)]
    return {"count": len(xs), "mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)}


@contextlib.contextmanager
def _replayed_logs() -> Iterator[dict[str, int]]:
    """Collect, as message -> pid, the records of fluvial's loggers that were logged in another
    process and replayed here. (Not caplog: a LocalCluster starting during a test silences the
    StreamHandlers it finds, caplog's among them, until it closes.)"""
    replayed: dict[str, int] = {}

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.process != os.getpid():
                replayed[record.getMessage()] = record.process  # type: ignore[assignment]

    handler = Keep()
    logger = logging.getLogger("fluvial")
    logger.addHandler(handler)
    try:
        yield replayed
    finally:
        logger.removeHandler(handler)


def _gone(pid: int) -> bool:
    """Whether process *pid* has exited (a zombie waiting to be reaped counts as exited)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _run_python(code: str, env: dict[str, str] | None = None) -> Any:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=SAFETY,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# ThreadPoolTaskRunner and ProcessPoolTaskRunner
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/v3/api-ref/python/prefect-task_runners  (ThreadPoolTaskRunner: "Use a
#   thread pool task runner with a flow")
def test_thread_pool_task_runner_with_a_flow():
    import threading

    from fluvial import flow, task
    from fluvial.runners import ThreadPoolTaskRunner

    lock = threading.Lock()  # observe
    active = [0]  # observe
    peak = [0]  # observe

    @task
    def some_io_bound_task(x: int) -> int:
        with lock:  # observe
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)  # observe: a query to a database, reading a file, etc.
        with lock:  # observe
            active[0] -= 1
        # making a query to a database, reading a file, etc.
        return x * 2

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))  # use at most 3 threads at a time
    def my_io_bound_flow():
        futures = []
        for i in range(10):
            future = some_io_bound_task.submit(i * 100)
            futures.append(future)

        return [future.result() for future in futures]

    assert my_io_bound_flow() == [i * 200 for i in range(10)]
    assert 2 <= peak[0] <= 3


# https://docs.prefect.io/v3/api-ref/python/prefect-task_runners  (ThreadPoolTaskRunner: "Use a
#   thread pool task runner as a context manager")
def test_thread_pool_task_runner_as_a_context_manager():
    from fluvial import task
    from fluvial.runners import ThreadPoolTaskRunner

    @task
    def some_io_bound_task(x: int) -> int:
        # making a query to a database, reading a file, etc.
        return x * 2

    # Use the runner directly
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        future1 = runner.submit(some_io_bound_task, {"x": 1})
        future2 = runner.submit(some_io_bound_task, {"x": 2})
        result1 = future1.result()  # 2
        result2 = future2.result()  # 4

    assert (result1, result2) == (2, 4)


# https://docs.prefect.io/v3/api-ref/python/prefect-task_runners  (ThreadPoolTaskRunner: "Configure
#   max workers via settings"; fluvial's variable is FLUVIAL_THREAD_POOL_MAX_WORKERS, the docs'
#   PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS)
def test_thread_pool_max_workers_from_the_setting():
    report = _run_python(
        """
        import json, threading, time

        from fluvial import flow, task
        from fluvial.runners import ThreadPoolTaskRunner

        lock = threading.Lock()  # observe
        active, peak = [0], [0]  # observe

        @task  # observe: the docs' flow body is "..."
        def busy(i):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.2)
            with lock:
                active[0] -= 1

        @flow(task_runner=ThreadPoolTaskRunner())  # Uses 8 workers from setting
        def my_flow():
            busy.map(range(16)).wait()  # observe

        my_flow()
        print(json.dumps(peak[0]))
        """,
        env={"FLUVIAL_THREAD_POOL_MAX_WORKERS": "8"},  # docs: PREFECT_TASK_RUNNER_THREAD_POOL_...
    )
    assert report == 8


# https://docs.prefect.io/v3/api-ref/python/prefect-task_runners  (ProcessPoolTaskRunner: "Use a
#   process pool task runner with a flow")
# https://docs.prefect.io/v3/concepts/task-runners  ("The max_workers parameter of the
#   ThreadPoolTaskRunner and ProcessPoolTaskRunner controls the number of threads or processes")
def test_process_pool_task_runner_with_a_flow():
    from fluvial import flow, task
    from fluvial.runners import ProcessPoolTaskRunner

    @task
    def compute_heavy_task(n: int) -> int:
        # CPU-intensive computation that benefits from process isolation
        return sum(i**2 for i in range(n))

    @task  # observe
    def which_process(i: int) -> int:
        return os.getpid()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))  # docs: 4 (this machine has 2 CPUs)
    def my_flow():
        futures = []
        for i in range(10):
            future = compute_heavy_task.submit(i * 1000)
            futures.append(future)

        pids = which_process.map(range(6)).result()  # observe
        return [future.result() for future in futures], pids  # observe (docs: results only)

    results, pids = my_flow()
    assert results == [sum(i**2 for i in range(n * 1000)) for n in range(10)]
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2


# https://docs.prefect.io/v3/api-ref/python/prefect-task_runners  (ProcessPoolTaskRunner: "Use a
#   process pool task runner as a context manager")
def test_process_pool_task_runner_as_a_context_manager():
    from fluvial import task
    from fluvial.runners import ProcessPoolTaskRunner

    @task
    def my_task(x: int) -> int:
        return x * 2

    # Use the runner directly
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        future1 = runner.submit(my_task, {"x": 1})
        future2 = runner.submit(my_task, {"x": 2})

        result1 = future1.result()  # 2
        result2 = future2.result()  # 4

    assert (result1, result2) == (2, 4)


# ------------------------------------------------------------------------------------------------
# prefect-dask: DaskTaskRunner
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (run tasks on Dask: "By default,
#   a temporary Dask cluster is created for the duration of the flow run ... this flow counts up
#   to 10 in parallel")
# https://docs.prefect.io/integrations/prefect-dask/api-ref/prefect_dask-task_runners  ("By
#   default a temporary distributed.LocalCluster is created (and subsequently torn down)")
def test_dask_count_to_on_a_temporary_default_cluster():
    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner

    @task(log_prints=True)  # observe: log_prints (the prints happen on the workers)
    def shout(number):
        time.sleep(0.1)  # docs: 0.5
        print(f"#{number}")

    @flow(task_runner=DaskTaskRunner)
    def count_to(highest_number):
        for number in range(highest_number):
            shout.submit(number)

    with _replayed_logs() as replayed:  # observe
        count_to(10)

    shouted = {m: pid for m, pid in replayed.items() if m.startswith("#")}
    assert sorted(shouted) == sorted(f"#{n}" for n in range(10))
    # "in parallel": on more than one worker process of the temporary cluster ...
    assert len(set(shouted.values())) >= 2
    # ... which is torn down at the end of the flow run.
    for pid in set(shouted.values()):
        assert _gone(pid)


# https://docs.prefect.io/integrations/prefect-dask  (why use Dask: the Niño 3.4 plume download,
#   "Sequential" and "Parallel" with DaskTaskRunner(cluster_kwargs={"processes": False}))
def test_dask_nino_34_plumes_sequential_and_parallel(tmp_path, monkeypatch):
    from typing import List

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner

    monkeypatch.chdir(tmp_path)  # observe: the example writes to ./data

    URL_FORMAT = (
        "https://www.cpc.ncep.noaa.gov/products/NMME/archive/"
        "{year:04d}{month:02d}0800/current/images/nino34.rescaling.ENSMEAN.png"
    )

    @task
    def download_image(year: int, month: int, directory: Path) -> Path:
        # download image from URL
        url = URL_FORMAT.format(year=year, month=month)
        resp = httpx.get(url)

        # save content to directory/YYYYMM.png
        file_path = (directory / url.split("/")[-1]).with_stem(f"{year:04d}{month:02d}")
        file_path.write_bytes(resp.content)
        return file_path

    @flow
    def download_nino_34_plumes_sequentially(year: int) -> List[Path]:  # observe: renamed
        # create a directory to hold images
        directory = Path("data")
        directory.mkdir(exist_ok=True)

        # download all images
        file_paths = []
        for month in range(1, 12 + 1):
            file_path = download_image(year, month, directory)
            file_paths.append(file_path)
        return file_paths

    @flow(task_runner=DaskTaskRunner(cluster_kwargs={"processes": False}))
    def download_nino_34_plumes_from_year(year: int) -> List[Path]:
        # create a directory to hold images
        directory = Path("data")
        directory.mkdir(exist_ok=True)

        # download all images
        file_paths = []
        for month in range(1, 12 + 1):
            file_path = download_image.submit(year, month, directory)
            file_paths.append(file_path)
        return file_paths

    expected = [Path("data") / f"2022{month:02d}.png" for month in range(1, 13)]
    assert download_nino_34_plumes_sequentially(2022) == expected
    for path in expected:
        path.unlink()

    # The parallel flow returns its futures; as in Prefect 3, the flow run resolves returned
    # futures to their final states.
    states = download_nino_34_plumes_from_year(2022)
    assert all(state.is_completed() for state in states)
    assert [state.result() for state in states] == expected
    assert (Path("data") / "202207.png").read_bytes() == (
        f"PNG bytes of {URL_FORMAT.format(year=2022, month=7)}".encode()
    )


# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (connect to an existing cluster:
#   "Multiple Prefect flow runs can all use the same existing Dask cluster";
#   DaskTaskRunner(address="tcp://..."))
# https://docs.prefect.io/integrations/prefect-dask/api-ref/prefect_dask-task_runners
#   ("Connecting to an existing dask cluster: DaskTaskRunner(address="192.0.2.255:8786")")
def test_dask_connect_to_an_existing_cluster_by_address(cli_cluster):
    import threading

    import distributed

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner

    @task  # observe
    def where(i):
        return distributed.get_worker().scheduler.address

    host_and_port = cli_cluster.removeprefix("tcp://")  # docs: "192.0.2.255:8786"

    # Connect to an existing cluster running at a specified address
    runners = [DaskTaskRunner(address=cli_cluster), DaskTaskRunner(address=host_and_port)]
    results = {}  # observe

    def run(runner):  # observe: two flow runs at once, one per runner
        @flow(task_runner=runner)
        def my_flow():
            return where.map(range(4)).result()  # observe (docs: ...)

        results[runner.address] = my_flow()

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY)

    assert results == {cli_cluster: [cli_cluster] * 4, host_and_port: [cli_cluster] * 4}
    # The flow runs leave the existing cluster running.
    with distributed.Client(cli_cluster, set_as_default=False, timeout=5) as client:
        assert len(client.scheduler_info()["workers"]) == 1


# https://docs.prefect.io/integrations/prefect-dask/usage_guide  ("If you want to specify this
#   explicitly, you can pass values for n_workers or threads_per_worker to cluster_kwargs")
# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (distributing Dask collections:
#   "The context managers can be used the same way in both flow run contexts and task run
#   contexts")
def test_dask_cluster_kwargs_set_workers_and_threads():
    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner
    from fluvial.runners.dask import get_dask_client

    @task  # observe
    def which_process():
        return os.getpid()

    # Use 4 worker processes, each with 2 threads
    runner = DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 2}  # docs: "n_workers": 4
    )

    @flow(task_runner=runner)  # observe: the docs only construct the runner
    def inspect_cluster():
        with get_dask_client() as client:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            threads = sorted(worker["nthreads"] for worker in workers)
        return threads, which_process.submit().result()

    threads, pid = inspect_cluster()
    assert threads == [2, 2]
    assert pid != os.getpid()  # worker processes


# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (use a temporary cluster:
#   cluster_class is "a string specifying the import path to the cluster class", "the cluster
#   class itself", or "a function for creating a custom cluster"; FargateCluster (a cloud
#   cluster) is replaced by distributed.LocalCluster)
# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (adaptive scaling: "specify a
#   minimum and maximum number of workers to use, and the dask cluster will scale up and down")
def test_dask_cluster_class_and_adaptive_scaling():
    import distributed

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner

    made = []  # observe

    def custom_cluster(**kwargs):
        cluster = distributed.LocalCluster(**kwargs)
        made.append(cluster)  # observe
        return cluster

    @task  # observe
    def where():
        return distributed.get_worker().address

    def run_on(runner):  # observe
        @flow(task_runner=runner)
        def my_flow():
            return where.submit().result()

        return my_flow()

    # An in-process cluster (processes=False) keeps these starts cheap; its workers listen on
    # inproc:// addresses, which shows which cluster ran the task.
    for cluster_class in ("distributed.LocalCluster", distributed.LocalCluster, custom_cluster):
        runner = DaskTaskRunner(
            cluster_class=cluster_class,  # docs: "dask_cloudprovider.aws.FargateCluster"
            cluster_kwargs={"n_workers": 1, "processes": False},  # docs: 4 and "image"
        )
        assert run_on(runner).startswith("inproc://")
    assert len(made) == 1
    assert made[0].status.name == "closed"

    # Adaptive: from no worker at all, the cluster scales up to run the task.
    runner = DaskTaskRunner(
        cluster_class=custom_cluster,  # docs: "dask_cloudprovider.aws.FargateCluster"
        cluster_kwargs={"n_workers": 0, "processes": False},  # observe: start with no worker
        adapt_kwargs={"maximum": 1},  # docs: 10
    )
    assert run_on(runner).startswith("inproc://")
    assert made[1].status.name == "closed"


# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (Dask annotations: "we can set
#   the priority of tasks in the Dask scheduler"; the guide calls show(1) directly, which runs
#   the task in the flow, not on Dask: here it is show.submit(1))
def test_dask_annotate_priority(dask_cluster):
    import dask
    import distributed

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner

    @task
    def show(x):
        print(x)
        worker = distributed.get_worker()  # observe
        return worker.state.tasks[worker.get_current_task()].priority  # observe

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # docs: ()
    def my_flow():
        with dask.annotate(priority=-10):
            future = show.submit(1)  # low priority task
            low = future  # observe

        with dask.annotate(priority=10):
            future = show.submit(2)  # high priority task
        return low.result(), future.result()  # observe

    low, high = my_flow()
    # Dask orders by priority tuples, smallest first, leading with minus the user priority.
    assert low[0] == 10
    assert high[0] == -10


# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (Dask annotations: resources;
#   "these tasks each require 1 process on a worker; because we've specified that our cluster
#   has 1 process per worker and 1 worker, these tasks will run sequentially")
def test_dask_annotate_resources_run_tasks_sequentially():
    import dask
    import distributed

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner

    @task
    def show(x):
        start = time.monotonic()  # observe
        print(x)
        time.sleep(0.2)  # observe: long enough to overlap if run concurrently
        return start, time.monotonic(), distributed.get_worker().state.nthreads  # observe

    # Create a `LocalCluster` with some resource annotations
    # Annotations are abstract in dask and not inferred from your system.
    # Here, we claim that our system has 1 GPU and 1 process available per worker
    @flow(
        task_runner=DaskTaskRunner(
            cluster_kwargs={"n_workers": 1, "resources": {"GPU": 1, "process": 1}}
        )
    )
    def my_flow():
        with dask.annotate(resources={"GPU": 1}):
            future = show.submit(0)  # this task requires 1 GPU resource on a worker
            futures = [future]  # observe

        with dask.annotate(resources={"process": 1}):
            # These tasks each require 1 process on a worker; because we've
            # specified that our cluster has 1 process per worker and 1 worker,
            # these tasks will run sequentially
            future = show.submit(1)
            futures.append(future)  # observe
            future = show.submit(2)
            futures.append(future)  # observe
            future = show.submit(3)
            futures.append(future)  # observe
        return [f.result() for f in futures]  # observe

    spans = my_flow()
    sequential = sorted(spans[1:])
    for (_, end, _), (start, _, _) in itertools.pairwise(sequential):
        assert start >= end  # one at a time ...
    assert {threads for _, _, threads in spans} == {2}  # ... on a worker with 2 threads


# https://docs.prefect.io/v3/develop/task-runners  (use multiple task runners: the Dask half,
#   a nested flow with its own DaskTaskRunner)
def test_nested_flow_runs_its_tasks_on_dask(dask_cluster, capsys):
    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner

    @task
    def hello_local(name: str):
        time.sleep(0.02)  # docs: 2
        print(f"Hello {name}!")

    @flow  # implicitly uses the default task runner, ThreadPoolTaskRunner
    def concurrent_nested_flow():
        marvin = hello_local.submit("marvin")
        ford = hello_local.submit("ford")
        marvin.wait(), ford.wait()

    @task(log_prints=True)  # observe: log_prints (the print happens on a Dask worker)
    def hello_dask():
        print("Hello from Dask!")

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # docs: ()
    def dask_nested_flow():
        hello_dask.submit().wait()

    @flow  # implicitly uses the default task runner, ThreadPoolTaskRunner
    def parent_flow():
        concurrent_nested_flow()
        dask_nested_flow()

    with _replayed_logs() as replayed:  # observe
        assert parent_flow(return_state=True).is_completed()
    assert sorted(capsys.readouterr().out.splitlines()) == ["Hello ford!", "Hello marvin!"]
    assert "Hello from Dask!" in replayed  # printed on a Dask worker


# ------------------------------------------------------------------------------------------------
# prefect-dask: get_dask_client
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (distributing Dask collections
#   across workers: get_dask_client in a task, then dask_collection.compute(); the warning's
#   client.compute(..., sync=True) and client.compute(...).result())
def test_get_dask_client_distributes_a_collection_from_a_task(dask_cluster):
    import distributed

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner
    from fluvial.runners.dask import get_dask_client

    @task
    def compute_task():
        with get_dask_client() as client:
            df = _timeseries("2000", "2001", partition_freq="4w")  # docs: dask.datasets...
            summary_df = _describe(df).compute()  # docs: df.describe().compute()
        return summary_df

    @task
    def compute_task_sync():
        with get_dask_client() as client:
            df = _timeseries("2000", "2001", partition_freq="4w")  # docs: dask.datasets...
            summary_df = client.compute(_describe(df), sync=True)  # docs: df.describe()
        return summary_df

    @task
    def compute_task_result():
        with get_dask_client() as client:
            df = _timeseries("2000", "2001", partition_freq="4w")  # docs: dask.datasets...
            summary_df = client.compute(_describe(df)).result()  # docs: df.describe()
        return summary_df

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # docs: ()
    def dask_flow():
        prefect_future = compute_task.submit()
        return prefect_future.result()

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # observe
    def dask_flow_with_client_compute():
        return compute_task_sync.submit().result(), compute_task_result.submit().result()

    expected = _expected_summary(2000, 2001)
    with distributed.Client(dask_cluster, set_as_default=False) as observer:  # observe
        with distributed.get_task_stream(client=observer) as stream:  # observe
            assert dask_flow() == expected
    # The collection's own tasks ran on the cluster's workers, not inside compute_task.
    assert any("pluck" in str(entry["key"]) for entry in stream.data)
    assert dask_flow_with_client_compute() == (expected, expected)


# https://docs.prefect.io/integrations/prefect-dask/api-ref/prefect_dask-utils  (get_dask_client:
#   "Use get_dask_client to distribute work across workers", with timeout="120s")
# https://docs.prefect.io/integrations/prefect-dask/usage_guide  (the context managers work the
#   same way in flow run contexts)
def test_get_dask_client_api_reference_example(dask_cluster):
    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner
    from fluvial.runners.dask import get_dask_client

    @task
    def compute_task():
        with get_dask_client(timeout="120s") as client:
            df = _timeseries("2000", "2001", partition_freq="4w")  # docs: dask.datasets...
            summary_df = client.compute(_describe(df)).result()  # docs: df.describe()
        return summary_df

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # docs: ()
    def dask_flow():
        prefect_future = compute_task.submit()
        return prefect_future.result()

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # observe
    def dask_flow_computing_itself():
        with get_dask_client(timeout="120s") as client:
            df = _timeseries("2000", "2001", partition_freq="4w")
            return client.compute(_describe(df)).result()

    assert dask_flow() == _expected_summary(2000, 2001)
    assert dask_flow_computing_itself() == _expected_summary(2000, 2001)


# https://docs.prefect.io/integrations/prefect-dask  (integrate with Dask client/cluster: the
#   "Parallel" pipeline; the docs' client = dask.distributed.Client() starts a new LocalCluster,
#   here it is a client of the session's cluster)
def test_dask_pipeline_on_an_existing_client(dask_cluster):
    import dask.distributed

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner
    from fluvial.runners.dask import get_dask_client

    client = dask.distributed.Client(dask_cluster)  # docs: dask.distributed.Client()

    @task
    def read_data(start: str, end: str):  # docs: -> dask.dataframe.DataFrame
        df = _timeseries(start, end, partition_freq="4w")  # docs: dask.datasets.timeseries
        return df

    @task
    def process_data(df):  # docs: (df: dask.dataframe.DataFrame) -> dask.dataframe.DataFrame
        with get_dask_client():
            df_yearly_avg = _yearly_mean(df)  # docs: df.groupby(df.index.year).mean()
            return df_yearly_avg.compute()

    @flow(task_runner=DaskTaskRunner(address=client.scheduler.address))
    def dask_pipeline():
        df = read_data.submit("1988", "2022")
        df_yearly_average = process_data.submit(df)
        return df_yearly_average

    try:
        state = dask_pipeline()
    finally:
        client.close()  # observe: the docs' script ends here

    # The flow returns the future of process_data; as in Prefect 3, that becomes its final state.
    assert state.is_completed()
    assert dict(state.result()) == {year: year % 10 + 1.5 for year in range(1988, 2022)}


# https://docs.prefect.io/integrations/prefect-dask/api-ref/prefect_dask-utils
#   (get_async_dask_client: "Use get_async_dask_client to distribute work across workers")
def test_get_async_dask_client_api_reference_example(dask_cluster):
    import asyncio

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner
    from fluvial.runners.dask import get_async_dask_client

    @task
    async def compute_task():
        async with get_async_dask_client(timeout="120s") as client:
            df = _timeseries("2000", "2001", partition_freq="4w")  # docs: dask.datasets...
            summary_df = await client.compute(_describe(df))  # docs: df.describe()
        return summary_df

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # docs: ()
    async def dask_flow():
        # docs: "await compute_task.submit()" and "await prefect_future.result()", Prefect 2's
        # API: in Prefect 3 (and fluvial) submit() returns the future and result() is sync.
        prefect_future = compute_task.submit()
        return prefect_future.result()

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))  # observe
    async def dask_flow_computing_itself():
        async with get_async_dask_client(timeout="120s") as client:
            assert client.asynchronous
            df = _timeseries("2000", "2001", partition_freq="4w")
            return await client.compute(_describe(df))

    assert asyncio.run(dask_flow()) == _expected_summary(2000, 2001)
    assert asyncio.run(dask_flow_computing_itself()) == _expected_summary(2000, 2001)


# ------------------------------------------------------------------------------------------------
# prefect-ray: RayTaskRunner
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/integrations/prefect-ray  (run tasks on Ray: "this flow counts to three
#   in parallel", with the task runner class; the API reference's version maps and waits)
# https://docs.prefect.io/integrations/prefect-ray/api-ref/prefect_ray-task_runners  ("Using a
#   temporary local ray cluster": @flow(task_runner=RayTaskRunner()))
def test_ray_count_to(ray_session):
    from fluvial import flow, task
    from fluvial.runners import RayTaskRunner

    @task(log_prints=True)  # observe: log_prints (the prints happen on the workers)
    def shout(number):
        time.sleep(0.1)  # docs: 0.5
        print(f"#{number}")

    @flow(task_runner=RayTaskRunner)
    def count_to(highest_number):
        for number in range(highest_number):
            shout.submit(number)

    @flow(task_runner=RayTaskRunner())
    def count_to_with_map(highest_number):
        shout.map(range(highest_number)).wait()

    for run in (count_to, count_to_with_map):
        with _replayed_logs() as replayed:  # observe
            run(10)
        shouted = {m: pid for m, pid in replayed.items() if m.startswith("#")}
        assert sorted(shouted) == sorted(f"#{n}" for n in range(10))
        assert len(set(shouted.values())) >= 2  # in parallel, on Ray worker processes

    import ray

    assert ray.is_initialized()  # the runners left the session's Ray running


# https://docs.prefect.io/integrations/prefect-ray  (RayTaskRunner(address=...): "If you already
#   have a Ray instance running, you can provide the connection URL via an address argument";
#   init_kwargs: "Additional kwargs to use when calling ray.init"). The session's Ray has no Ray
#   Client server (ray://), so the flow, in a process of its own, connects by its GCS address.
def test_ray_connect_to_an_existing_instance_by_address(ray_session):
    import ray

    address = ray.get_runtime_context().gcs_address  # docs: "ray://192.0.2.255:8786"
    node = ray.get_runtime_context().get_node_id()
    report = _run_python(
        f"""
        import json, os

        import ray

        from fluvial import flow, task
        from fluvial.runners import RayTaskRunner

        @task  # observe
        def where():
            return ray.get_runtime_context().get_node_id(), os.getpid()

        @flow(
            task_runner=RayTaskRunner(
                address={address!r}, init_kwargs={{"namespace": "docs-example"}}
            )
        )
        def my_flow():
            node, pid = where.submit().result()  # observe (docs: ...)
            return node, pid != os.getpid(), ray.get_runtime_context().namespace  # observe

        node, elsewhere, namespace = my_flow()
        print(json.dumps({{"node": node, "elsewhere": elsewhere, "namespace": namespace,
            "connected_after": ray.is_initialized()}}))
        """
    )
    assert report == {
        "node": node,  # the task ran on the existing instance
        "elsewhere": True,
        "namespace": "docs-example",  # init_kwargs went to ray.init
        "connected_after": False,  # the flow's driver disconnected at the end of the run ...
    }
    assert ray.cluster_resources()["CPU"] == 2  # ... and the instance kept running


# https://docs.prefect.io/integrations/prefect-ray  (specifying remote options: "we can set the
#   number of CPUs and GPUs to use for the process task")
# https://docs.prefect.io/integrations/prefect-ray/api-ref/prefect_ray-context  ("If contexts are
#   nested, new options are merged with options in the outer context. If a key is present in
#   both, the new option will be used.")
def test_ray_remote_options(ray_session):
    import ray

    from fluvial import flow, task
    from fluvial.runners import RayTaskRunner
    from fluvial.runners.ray import remote_options

    MB = 1024 * 1024

    @task
    def process(x):
        assigned = ray.get_runtime_context().get_assigned_resources()  # observe
        return x + 1, assigned  # observe (docs: x + 1)

    @flow(task_runner=RayTaskRunner())
    def my_flow():
        # equivalent to setting @ray.remote(num_cpus=4, num_gpus=2)
        with remote_options(num_cpus=2):  # docs: num_cpus=4, num_gpus=2 (Ray here: 2 CPUs)
            future = process.submit(42)
        return future.result()  # observe

    result, assigned = my_flow()
    assert result == 43
    assert assigned == {"CPU": 2.0}

    @flow(task_runner=RayTaskRunner())  # observe: the nesting rule of the API reference
    def my_nested_flow():
        with remote_options(num_cpus=1, memory=64 * MB):
            with remote_options(num_cpus=2):
                inner = process.submit(1)
            outer = process.submit(2)
        return inner.result(), outer.result()

    (_, inner), (_, outer) = my_nested_flow()
    assert inner == {"CPU": 2.0, "memory": 64.0 * MB}
    assert outer == {"CPU": 1.0, "memory": 64.0 * MB}


# ------------------------------------------------------------------------------------------------
# Logging prints of tasks that run elsewhere
# ------------------------------------------------------------------------------------------------


# https://docs.prefect.io/v3/how-to-guides/workflows/add-logging  ("To send print statements to
#   the Prefect backend as logs, set the log_prints kwarg to True on the flow or task. The
#   log_prints kwarg is inherited by default by nested flow runs and tasks.") The task-runner
#   examples above print on Dask and Ray workers; with log_prints=True on the flow only, those
#   prints should become logs too.
@pytest.mark.parametrize("where", ["process", "dask", "ray"])
def test_flow_log_prints_is_inherited_by_tasks_on_other_processes(where, request):
    import uuid

    from fluvial import flow, task
    from fluvial.runners import DaskTaskRunner, ProcessPoolTaskRunner, RayTaskRunner
    from fluvial.runners.ray import remote_options

    # Each on a worker process that has never run a task with log_prints=True.
    fresh = contextlib.nullcontext()
    if where == "process":
        runner = ProcessPoolTaskRunner(max_workers=1)
    elif where == "dask":
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1})
    else:
        request.getfixturevalue("ray_session")
        runner = RayTaskRunner()
        # A runtime environment of its own makes Ray start a new worker process.
        fresh = remote_options(runtime_env={"env_vars": {"DOCS_FRESH": uuid.uuid4().hex}})

    @task
    def shout(number):
        print(f"#{number}")

    @flow(task_runner=runner, log_prints=True)
    def count_to(highest_number):
        with fresh:  # observe
            for number in range(highest_number):
                shout.submit(number)

    with _replayed_logs() as replayed:  # observe
        count_to(3)
    assert {m for m in replayed if m.startswith("#")} == {"#0", "#1", "#2"}
