"""Defining limits, and what concurrency() and rate_limit() do in one process."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from fluvial.concurrency import (
    ConcurrencyLimit,
    create_limit,
    create_tag_limit,
    delete_limit,
    list_limits,
    read_limit,
    read_tag_limit,
    reset_limit,
    update_limit,
)
from fluvial.concurrency import asyncio as aconcurrency
from fluvial.concurrency.sync import concurrency, rate_limit
from fluvial.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencyLimitNotFound,
    ConcurrencySlotAcquisitionError,
    ConfigurationError,
)
from fluvial.settings import temporary_settings


def test_create_read_update_delete() -> None:
    made = create_limit("db", 3, slot_decay_per_second=0.5)
    assert made == ConcurrencyLimit("db", 3, 0.5, True, 0.0, ())
    with concurrency("db", occupy=2):
        held = read_limit("db")
        assert held.active_slots == pytest.approx(2, abs=0.1)
        assert len(held.holders) == 1
    assert update_limit("db", limit=5, active=False).limit == 5
    assert not read_limit("db").active
    assert [limit.name for limit in list_limits()] == ["db"]
    delete_limit("db")
    with pytest.raises(ConcurrencyLimitNotFound, match="'db'"):
        read_limit("db")


def test_tag_limits_are_named_tag_colon() -> None:
    create_tag_limit("database", 10)
    assert read_tag_limit("database") == read_limit("tag:database")


def test_bad_definitions_are_refused() -> None:
    create_limit("db", 1)
    with pytest.raises(ConfigurationError, match="already exists"):
        create_limit("db", 2)
    with pytest.raises(ConfigurationError, match="not allowed"):
        create_limit("a/b", 1)
    with pytest.raises(ConfigurationError, match=">= 0"):
        create_limit("neg", -1)


def test_limits_come_from_settings() -> None:
    with temporary_settings(concurrency_limits="tag:db=2, api=10@2.5, ~off=1"):
        assert read_limit("tag:db").limit == 2
        assert read_limit("api").slot_decay_per_second == 2.5
        assert not read_limit("off").active
        update_limit("api", limit=20)  # the API overrides the setting in this process
        assert read_limit("api").limit == 20
    with pytest.raises(ValueError, match="name=slots"):
        temporary_settings(concurrency_limits="oops").__enter__()


def test_unknown_limit_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "fluvial.concurrency"), concurrency("nope"):
        pass
    assert "['nope'] do not exist" in caplog.text


def test_strict_names_every_missing_limit() -> None:
    create_limit("known", 1)
    with (
        pytest.raises(ConcurrencySlotAcquisitionError, match=r"\['missing'\]"),
        concurrency(["known", "missing"], strict=True),
    ):
        pass
    with pytest.raises(ConcurrencySlotAcquisitionError, match="missing"):
        rate_limit("missing", strict=True)


def test_more_slots_than_the_limit_fail_at_once() -> None:
    create_limit("small", 2)
    with (
        pytest.raises(ConcurrencySlotAcquisitionError, match="'small': it has 2"),
        concurrency("small", occupy=3),
    ):
        pass


def test_rate_limit_needs_decay() -> None:
    create_limit("flat", 5)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="slot decay"):
        rate_limit("flat")


def test_inactive_limits_are_not_enforced() -> None:
    create_limit("off", 1, active=False)
    with concurrency("off"), concurrency("off", timeout_seconds=0.1):
        pass


def test_timeout_names_the_limit_and_holds_nothing() -> None:
    create_limit("one", 1)
    with concurrency("one"):
        with pytest.raises(AcquireConcurrencySlotTimeoutError, match=r"\['one'\]") as caught:
            with concurrency("one", timeout_seconds=0.05):
                pass
        assert isinstance(caught.value, TimeoutError)
    assert read_limit("one").active_slots == 0
    with concurrency("one", timeout_seconds=0.05):
        pass


@pytest.mark.anyio
async def test_async_timeout_and_cancellation_hold_nothing() -> None:
    create_limit("one", 1)
    async with aconcurrency.concurrency("one"):
        with pytest.raises(AcquireConcurrencySlotTimeoutError, match="one"):
            async with aconcurrency.concurrency("one", timeout_seconds=0.05):
                pass
        waiter = asyncio.ensure_future(aconcurrency.concurrency("one").__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert read_limit("one").active_slots == 0
    async with aconcurrency.concurrency("one", timeout_seconds=1):
        pass


def test_opposite_orders_do_not_deadlock() -> None:
    create_limit("a", 1)
    create_limit("b", 1)
    done: list[str] = []

    def worker(names: list[str], label: str) -> None:
        for _ in range(200):
            with concurrency(names, timeout_seconds=10):
                pass
        done.append(label)

    threads = [
        threading.Thread(target=worker, args=(["a", "b"], "ab")),
        threading.Thread(target=worker, args=(["b", "a"], "ba")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(done) == ["ab", "ba"]


def test_a_big_waiter_is_not_starved_by_small_ones() -> None:
    create_limit("pool", 2)
    stop = threading.Event()
    got_big = threading.Event()

    def small() -> None:
        while not stop.is_set():
            with concurrency("pool"):
                time.sleep(0.002)

    smalls = [threading.Thread(target=small) for _ in range(4)]
    for thread in smalls:
        thread.start()
    try:
        time.sleep(0.05)
        with concurrency("pool", occupy=2, timeout_seconds=20):
            got_big.set()
    finally:
        stop.set()
        for thread in smalls:
            thread.join(timeout=10)
    assert got_big.is_set()


def test_raising_a_limit_lets_waiters_in() -> None:
    create_limit("grow", 1)
    entered = threading.Event()

    def waiter() -> None:
        with concurrency("grow", timeout_seconds=10):
            entered.set()

    with concurrency("grow"):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not entered.wait(0.1)
        update_limit("grow", limit=2)
        assert entered.wait(5)
    thread.join()


def test_reset_frees_held_slots() -> None:
    create_limit("stuck", 1)
    manager = concurrency("stuck")
    manager.__enter__()  # never exited, like a leaked holder
    reset_limit("stuck")
    with concurrency("stuck", timeout_seconds=1):
        pass


def test_rate_limit_holds_the_rate_over_a_window() -> None:
    create_limit("api", 2, slot_decay_per_second=20)
    started = time.monotonic()
    for _ in range(22):
        rate_limit("api", timeout_seconds=30)
    elapsed = time.monotonic() - started
    # A burst of 2, then 20 more at 20/s: about 1 s. Generous bounds on a loaded machine.
    assert 0.9 <= elapsed < 10


@pytest.mark.anyio
async def test_async_rate_limit_holds_the_rate() -> None:
    create_limit("api", 1, slot_decay_per_second=20)
    started = time.monotonic()
    for _ in range(11):
        await aconcurrency.rate_limit("api")
    assert 0.45 <= time.monotonic() - started < 10


class _Interrupted(BaseException):
    pass


def _interrupt(*_: object) -> None:
    raise _Interrupted


@pytest.mark.parametrize("backend", ["local", "file"])
def test_an_interrupted_waiter_leaves_nothing_queued(backend: str) -> None:
    import signal

    from fluvial.concurrency._select import file_backend, local_backend, use_backend

    create_limit("one", 1)
    chosen = local_backend() if backend == "local" else file_backend()
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        with use_backend(chosen):
            held = concurrency("one")
            held.__enter__()
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(_Interrupted), concurrency("one"):
                pass
            held.__exit__(None, None, None)
            # Had the interrupted request stayed queued, this would wait behind it forever.
            with concurrency("one", timeout_seconds=2):
                assert read_limit("one").active_slots == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
