"""Flows the CLI tests run by file path (``cli_flows.py:add``) or by module (``cli_flows:add``).

Side effects are counted in files under ``$CLI_MARKS`` so a test can tell which tasks executed,
even across processes; ``$CLI_KILL_AT`` makes ``chain`` SIGKILL its own process at that step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path
from typing import Any

from fluvial import flow, task
from fluvial.cache_policies import INPUTS, TASK_SOURCE


def _mark(name: str) -> None:
    marks = os.environ.get("CLI_MARKS")
    if marks:
        Path(marks).mkdir(parents=True, exist_ok=True)
        with open(Path(marks) / name, "a") as file:
            file.write("x")


@task
def double(x: int) -> int:
    return 2 * x


@task
def step(i: int) -> int:
    _mark(f"step-{i}")
    if i == int(os.environ.get("CLI_KILL_AT", "-1")):
        os.kill(os.getpid(), signal.SIGKILL)
    return i * 10


@task(retries=1, retry_delay_seconds=0)
def broken(x: int) -> int:
    raise ValueError(f"broken on {x}")


@task(cache_policy=INPUTS + TASK_SOURCE, cache_expiration=dt.timedelta(milliseconds=1))
def short_lived(x: int) -> int:
    return x + 1000


@task(cache_policy=INPUTS + TASK_SOURCE)
def kept(x: int) -> int:
    return x + 2000


@flow
def add(a: int, b: int = 0, label: str = "sum") -> dict[str, int]:
    """Add two numbers through tasks."""
    return {label: double(a) // 2 + double(b) // 2}


@flow
def echo(items: list[int], options: dict[str, Any] | None = None, text: str = "") -> list[Any]:
    """Return what it was given, to check how parameters are parsed."""
    return [items, options, text]


@flow
def fan_out(n: int) -> int:
    return sum(double.map(range(n)).result())


@flow
def chain(n: int) -> int:
    return sum(step(i) for i in range(n))


@flow
def failing(x: int = 1) -> int:
    step(0)
    return broken(x)


@flow
def caching(n: int) -> list[int]:
    return [short_lived(i) + kept(i) for i in range(n)]


@flow
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def plain_function() -> None:
    """Not a flow."""


@task
def nap(seconds: float) -> float:
    _mark("nap-started")
    import time

    time.sleep(seconds)
    return seconds


@flow
def sleepy(seconds: float = 60) -> float:
    return nap(seconds)
