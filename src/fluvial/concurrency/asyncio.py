"""Concurrency and rate limits for async code (``prefect.concurrency.asyncio``).

The same limits and rules as :mod:`fluvial.concurrency.sync`; waiting never blocks the event
loop, and a waiter that is cancelled holds nothing.
"""

from __future__ import annotations

__all__ = ("concurrency", "rate_limit")

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._acquire import aacquire, resolve


@asynccontextmanager
async def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
    holder: Any = None,
    raise_on_lease_renewal_failure: bool | None = None,
) -> AsyncIterator[None]:
    """Hold *occupy* slots of each named limit while the block runs (see the sync twin).

    Raises:
        AcquireConcurrencySlotTimeoutError: *timeout_seconds* passed (also a ``TimeoutError``).
        ConcurrencySlotAcquisitionError: a limit is missing with ``strict=True``, or has fewer
            slots than *occupy*.
    """
    specs = resolve(names, occupy, "concurrency", strict)
    if not specs:
        yield
        return
    lease = await aacquire(specs, occupy, "concurrency", timeout_seconds, lease_duration)
    try:
        yield
    finally:
        lease.release()


async def rate_limit(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Wait until *occupy* slots of each named limit are free and take them for good.

    Raises:
        AcquireConcurrencySlotTimeoutError: *timeout_seconds* passed (also a ``TimeoutError``).
        ConcurrencySlotAcquisitionError: a limit has no slot decay, is missing with
            ``strict=True``, or has fewer slots than *occupy*.
    """
    if not names:
        return
    specs = resolve(names, occupy, "rate_limit", strict)
    if specs:
        await aacquire(specs, occupy, "rate_limit", timeout_seconds, 0.0)
