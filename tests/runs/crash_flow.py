"""A flow the crash tests run as a script, kill with SIGKILL, and resume from another process.

Configured by environment variables, read at import (so a resuming process that imports this
file by its path sees its own values):

- ``CRASH_STORE``: result storage URL; ``CRASH_MARKS``: folder of side-effect files, one per
  execution of a task, named ``run-<i>-<random>``;
- ``CRASH_N``: number of tasks; ``CRASH_HOLD_FROM``: tasks ``i >= this`` hold (after writing
  their mark) until the file ``release`` appears in the marks folder, then fail, so a held task
  never persists a result; unset, nothing holds;
- ``CRASH_RUNNER``: ``thread`` (default), ``process`` or ``dask`` (with ``CRASH_DASK_ADDRESS``);
- ``CRASH_S3_ENDPOINT``: the S3 endpoint, for ``s3://`` storage.

Run as a script it prints the flow's result as JSON on its last line.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from fluvial import flow, task
from fluvial.storage import ResultStore

MARKS = Path(os.environ["CRASH_MARKS"])
N = int(os.environ.get("CRASH_N", "6"))
HOLD_FROM = int(os.environ.get("CRASH_HOLD_FROM", "-1"))
RUNNER = os.environ.get("CRASH_RUNNER", "thread")


def _storage() -> Any:
    url = os.environ["CRASH_STORE"]
    endpoint = os.environ.get("CRASH_S3_ENDPOINT")
    if not url.startswith("s3://"):
        return url
    return ResultStore.from_url(
        url,
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
    )


def _runner() -> Any:
    if RUNNER == "process":
        from fluvial.runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=2)
    if RUNNER == "dask":
        from fluvial.runners import DaskTaskRunner

        return DaskTaskRunner(address=os.environ["CRASH_DASK_ADDRESS"])
    from fluvial.runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=N)


@task
def square(i: int) -> int:
    """Leave a mark for this execution; hold if told to; return i squared."""
    (MARKS / f"run-{i}-{uuid.uuid4().hex}").touch()
    if 0 <= HOLD_FROM <= i:
        while not (MARKS / "release").exists():
            time.sleep(0.05)
        raise RuntimeError("released after the flow process was killed")
    return i * i


@flow(result_storage=_storage(), task_runner=_runner())
def squares(n: int) -> list[int]:
    """Square 0..n-1, one task each."""
    futures = [square.submit(i) for i in range(n)]
    return [future.result() for future in futures]


if __name__ == "__main__":
    print(json.dumps(squares(N)))
