"""A slot released in this process goes to a blocked waiter at once, not at its next poll.

The cross-process backend's naps are stretched to 5 s here, so a waiter there proceeds within
the bound only if the release woke it. The in-process backend never polls; its rounds are
repeated so that even a 100 ms poll would land inside the bound in every round only by luck
(about one chance in a thousand).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from fluvial.concurrency import _polling, create_limit
from fluvial.concurrency import asyncio as aconcurrency
from fluvial.concurrency._backend import Backend
from fluvial.concurrency._select import file_backend, local_backend, use_backend
from fluvial.concurrency.sync import concurrency, rate_limit

HELD = 0.3  # long enough that a waiter is surely blocked before the release
BOUND = 0.05  # release to proceed: far under any poll nap used here
ROUNDS = {"local": 10, "file": 3}
# The threads started here must use the backend chosen by the fixture (a context variable).


@pytest.fixture(params=["local", "file"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Use one backend, with polling naps so long that only a direct wake-up is in time."""
    monkeypatch.setattr(_polling, "_FIRST_NAP", 5.0)
    monkeypatch.setattr(_polling, "_LONGEST_NAP", 5.0)
    chosen: Backend = local_backend() if request.param == "local" else file_backend()
    create_limit("pair", 1)
    with use_backend(chosen):
        yield str(request.param)


def _one_handover_sync() -> float:
    """Hold the slot while a thread waits for it; return the release-to-proceed delay."""
    proceeded: list[float] = []
    queued = threading.Event()

    def waiter() -> None:
        queued.set()
        with concurrency("pair", timeout_seconds=10):
            proceeded.append(time.monotonic())

    with concurrency("pair"):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(waiter,))
        thread.start()
        queued.wait(5)
        time.sleep(HELD)
        released = time.monotonic()
    thread.join(10)
    assert proceeded, "the waiter never got the slot"
    return proceeded[0] - released


def test_a_release_wakes_a_blocked_thread_at_once(backend: str) -> None:
    delays = [_one_handover_sync() for _ in range(ROUNDS[backend])]
    assert max(delays) < BOUND, delays


async def _one_handover_async() -> float:
    proceeded: list[float] = []

    async def waiter() -> None:
        async with aconcurrency.concurrency("pair", timeout_seconds=10):
            proceeded.append(time.monotonic())

    async with aconcurrency.concurrency("pair"):
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(HELD)
        released = time.monotonic()
    await asyncio.wait_for(waiting, 10)
    return proceeded[0] - released


@pytest.mark.anyio
async def test_a_release_wakes_a_waiting_coroutine_at_once(backend: str) -> None:
    delays = [await _one_handover_async() for _ in range(ROUNDS[backend])]
    assert max(delays) < BOUND, delays


@pytest.mark.anyio
async def test_a_thread_release_wakes_a_coroutine_at_once(backend: str) -> None:
    # The holder is another thread: the wake-up must cross into the event loop's thread.
    ready, release = threading.Event(), threading.Event()
    released: list[float] = []

    def holder() -> None:
        with concurrency("pair"):
            ready.set()
            release.wait(10)
            time.sleep(HELD)
            released.append(time.monotonic())

    thread = threading.Thread(target=contextvars.copy_context().run, args=(holder,))
    thread.start()
    assert await asyncio.to_thread(ready.wait, 5)
    release.set()
    async with aconcurrency.concurrency("pair", timeout_seconds=10):
        proceeded = time.monotonic()
    await asyncio.to_thread(thread.join, 10)
    assert proceeded - released[0] < BOUND


def test_a_timeout_is_still_exact_with_long_naps(backend: str) -> None:
    # Naps are 5 s, yet a 0.2 s timeout ends the wait on time and holds nothing.
    from fluvial.exceptions import AcquireConcurrencySlotTimeoutError

    with concurrency("pair"):
        start = time.monotonic()
        with (
            pytest.raises(AcquireConcurrencySlotTimeoutError),
            concurrency("pair", timeout_seconds=0.2),
        ):
            pass
        assert 0.19 <= time.monotonic() - start < 2.0
    with concurrency("pair", timeout_seconds=1):
        pass


def test_a_rate_limited_waiter_wakes_when_a_slot_decays(backend: str) -> None:
    # One slot decaying at 4/s: each call after the first waits 0.25 s for the decay. With
    # 5 s naps the cross-process waiter must wake on the decay itself, not at its next look.
    create_limit("paced", 1, slot_decay_per_second=4)
    start = time.monotonic()
    for _ in range(3):
        rate_limit("paced", timeout_seconds=10)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 2.0, elapsed
