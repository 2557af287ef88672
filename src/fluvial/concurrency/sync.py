"""Concurrency and rate limits for synchronous code (``prefect.concurrency.sync``)."""

from __future__ import annotations

__all__ = ("concurrency", "rate_limit")

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._acquire import acquire, resolve


@contextmanager
def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
    holder: Any = None,
    raise_on_lease_renewal_failure: bool | None = None,
) -> Iterator[None]:
    """Hold *occupy* slots of each named limit for the duration of the block.

    All slots are taken at once, or none: blocks asking for the same limits in different
    orders never deadlock. Waiters are served first come, first served.

    Args:
        names: the limit name, or several.
        occupy: slots to take from each limit.
        timeout_seconds: give up after this long (``None`` waits as long as it takes).
        max_retries: accepted for Prefect compatibility; waiting needs no retries here.
        lease_duration: seconds a cluster-wide lease lives without renewal; the holder renews
            it while the block runs, so it lapses only when the holder dies.
        strict: raise instead of skipping (with a warning) limits that do not exist.
        holder: accepted for Prefect compatibility; unused.
        raise_on_lease_renewal_failure: accepted for Prefect compatibility; unused.

    Raises:
        AcquireConcurrencySlotTimeoutError: *timeout_seconds* passed (also a ``TimeoutError``).
        ConcurrencySlotAcquisitionError: a limit is missing with ``strict=True``, or has fewer
            slots than *occupy*.
    """
    specs = resolve(names, occupy, "concurrency", strict)
    if not specs:
        yield
        return
    lease = acquire(specs, occupy, "concurrency", timeout_seconds, lease_duration)
    try:
        yield
    finally:
        lease.release()


def rate_limit(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Block until *occupy* slots of each named limit are free, and take them for good.

    The slots are never given back: they drain at the limits' ``slot_decay_per_second``,
    which is what turns a limit into a rate (a limit of 10 decaying at 2/s allows bursts of
    10, then 2 per second).

    Raises:
        AcquireConcurrencySlotTimeoutError: *timeout_seconds* passed (also a ``TimeoutError``).
        ConcurrencySlotAcquisitionError: a limit has no slot decay, is missing with
            ``strict=True``, or has fewer slots than *occupy*.
    """
    if not names:
        return
    specs = resolve(names, occupy, "rate_limit", strict)
    if specs:
        acquire(specs, occupy, "rate_limit", timeout_seconds, 0.0)
