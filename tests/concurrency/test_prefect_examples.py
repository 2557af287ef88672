"""Prefect 3's documentation examples for global and tag-based concurrency, imports changed.

Sources: docs/v3/how-to-guides/workflows/global-concurrency-limits.mdx and
tag-based-concurrency-limits.mdx. Limits Prefect's examples create in the UI or with
``prefect gcl create`` are made with :func:`fluvial.concurrency.create_limit` (the CLI's
equivalent). Departures are marked ``# ported:``: the async examples call ``asyncio.run`` on a
*sync* flow, which fails in Prefect too, so the flow is called directly; the parallel-processing
example sleeps on 10 items instead of 100 to keep the suite quick.
"""

from __future__ import annotations

import threading
import time

from fluvial.concurrency import (
    create_limit,
    create_tag_limit,
    delete_tag_limit,
    list_limits,
    read_tag_limit,
)

from .conftest import max_overlap


class _Probe:
    """Counts how many callers are inside at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[float, float]] = []

    def span(self, seconds: float = 0.05) -> None:
        start = time.monotonic()
        time.sleep(seconds)
        with self.lock:
            self.spans.append((start, time.monotonic()))


def test_sync_concurrency_context_manager() -> None:
    create_limit("database", 1)
    probe = _Probe()

    from fluvial import flow, task
    from fluvial.concurrency.sync import concurrency
    from fluvial.futures import wait

    @task
    def process_data(x, y):
        with concurrency("database", occupy=1):
            probe.span()
            return x + y

    @flow
    def my_flow():
        futures = []
        for x, y in [(1, 2), (2, 3), (3, 4), (4, 5)]:
            futures.append(process_data.submit(x, y))

        wait(futures)
        return [future.result() for future in futures]

    assert my_flow() == [3, 5, 7, 9]
    assert max_overlap(probe.spans) == 1


def test_async_concurrency_context_manager() -> None:
    create_limit("database", 2)

    import asyncio

    from fluvial import flow, task
    from fluvial.concurrency.asyncio import concurrency
    from fluvial.futures import wait

    inside = 0
    peak = 0

    @task
    async def process_data(x, y):
        nonlocal inside, peak
        async with concurrency("database", occupy=1):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.05)
            inside -= 1
            return x + y

    @flow
    def my_flow():
        futures = []
        for x, y in [(1, 2), (2, 3), (3, 4), (4, 5)]:
            futures.append(process_data.submit(x, y))

        wait(futures)
        return [future.result() for future in futures]

    assert my_flow() == [3, 5, 7, 9]  # ported: asyncio.run(my_flow()) on a sync flow
    assert peak <= 2


def test_sync_rate_limit() -> None:
    create_limit("rate-limited-api", 1, slot_decay_per_second=20)
    calls: list[float] = []

    from fluvial import flow, task
    from fluvial.concurrency.sync import rate_limit

    @task
    def make_http_request():
        rate_limit("rate-limited-api")
        calls.append(time.monotonic())
        print("Making an HTTP request...")

    @flow
    def my_flow():
        for _ in range(10):
            make_http_request.submit()

    my_flow()
    calls.sort()
    assert len(calls) == 10
    assert calls[-1] - calls[0] >= 0.4  # 9 more after the first, at 20 per second


def test_async_rate_limit_in_tasks() -> None:
    create_limit("rate-limited-api", 1, slot_decay_per_second=20)
    calls: list[float] = []

    from fluvial import flow, task
    from fluvial.concurrency.asyncio import rate_limit

    @task
    async def make_http_request():
        await rate_limit("rate-limited-api")
        calls.append(time.monotonic())
        print("Making an HTTP request...")

    @flow
    def my_flow():
        for _ in range(10):
            make_http_request.submit()

    my_flow()  # ported: asyncio.run(my_flow()) on a sync flow
    calls.sort()
    assert len(calls) == 10
    assert calls[-1] - calls[0] >= 0.4


def test_rate_limit_outside_a_flow() -> None:
    create_limit("rate-limited-api", 1, slot_decay_per_second=20)

    import asyncio

    from fluvial.concurrency.asyncio import rate_limit

    async def main():
        for _ in range(10):
            await rate_limit("rate-limited-api")
            print("Making an HTTP request...")

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started >= 0.4


def test_throttling_task_submission() -> None:
    create_limit("slow-my-flow", 10, slot_decay_per_second=200)

    from fluvial import flow, task
    from fluvial.concurrency.sync import rate_limit

    @task
    def my_task(i):
        return i

    @flow
    def my_flow():
        for _ in range(100):
            rate_limit("slow-my-flow", occupy=1)
            my_task.submit(1)

    started = time.monotonic()
    my_flow()
    assert time.monotonic() - started >= 0.4  # 90 beyond the burst, at 200 per second


def test_manage_database_connections() -> None:
    create_limit("database", 2)
    probe = _Probe()

    class db:  # ported: stands in for `from myproject import db`
        @staticmethod
        def execute(query):
            probe.span()
            return query.lower()

    from fluvial import flow, task
    from fluvial.concurrency.sync import concurrency  # ported: `from prefect import concurrency`

    @task
    def database_query(query):
        # Here we request a single slot on the 'database' concurrency limit. This
        # will block in the case that all of the database connections are in use
        # ensuring that we never exceed the maximum number of database connections.
        with concurrency("database", occupy=1):
            result = db.execute(query)
            return result

    @flow
    def my_flow():
        queries = ["SELECT * FROM table1", "SELECT * FROM table2", "SELECT * FROM table3"]

        for query in queries:
            database_query.submit(query)

    my_flow()
    assert len(probe.spans) == 3
    assert max_overlap(probe.spans) <= 2


def test_parallel_data_processing(capsys) -> None:
    create_limit("data-processing", 5)

    import asyncio

    from fluvial.concurrency.sync import concurrency

    async def process_data(data):
        print(f"Processing: {data}")
        await asyncio.sleep(0.05)
        return f"Processed: {data}"

    async def main():
        data_items = list(range(10))  # ported: 100 items sleeping 1 s each
        processed_data = []

        while data_items:
            with concurrency("data-processing", occupy=5):
                chunk = [data_items.pop() for _ in range(5)]
                processed_data += await asyncio.gather(*[process_data(item) for item in chunk])

        print(processed_data)

    asyncio.run(main())
    assert "'Processed: 0'" in capsys.readouterr().out


def test_tag_limits_examples() -> None:
    create_tag_limit("database", 1)
    create_tag_limit("analytics", 1)
    probe = _Probe()

    from fluvial import flow, task

    @task(tags=["database"])
    def fetch_data():
        # This task will respect the "database" tag's concurrency limit
        return "data"

    @flow
    def my_workflow():
        return fetch_data()

    @task(tags=["database"])
    def query_database(query: str):
        # Simulate database work
        probe.span()
        return f"Results for {query}"

    @flow
    def data_pipeline():
        # These will respect the "database" tag limit
        futures = [
            query_database.submit("SELECT * FROM users"),  # ported: .submit, to run at once
            query_database.submit("SELECT * FROM orders"),
            query_database.submit("SELECT * FROM products"),
        ]
        return [future.result() for future in futures]

    @task(tags=["database", "analytics"])
    def complex_query():
        # This task needs available slots in both "database" AND "analytics" limits
        return "complex results"

    assert my_workflow() == "data"
    assert data_pipeline()[0] == "Results for SELECT * FROM users"
    assert max_overlap(probe.spans) == 1
    assert complex_query() == "complex results"


def test_tag_limits_python_client() -> None:
    # ported: the client calls of the tag-based page, as fluvial.concurrency functions
    create_tag_limit("database", 10)
    limit = read_tag_limit("database")
    assert limit.limit == 10
    assert [item.name for item in list_limits()] == ["tag:database"]
    delete_tag_limit("database")
    assert list_limits() == []
