"""Retry delays: pure functions that say how long to wait, never sleeping themselves."""

from __future__ import annotations

__all__ = ("exponential_backoff", "jittered", "normalize_retry_delays", "retry_delay")

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

from ..exceptions import DefinitionError

#: Prefect's limit on an explicit list of delays.
MAX_DELAYS = 50

RetryDelay = float | int | Sequence[float] | Callable[[int], list[float]] | None


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Return a ``retry_delay_seconds`` value giving delays of ``factor * 2**n`` seconds.

    Example: ``@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))``
    waits 10, 20 and 40 seconds.
    """

    def delays(retries: int) -> list[float]:
        return [float(backoff_factor * 2**n) for n in range(min(retries, MAX_DELAYS))]

    return delays


def normalize_retry_delays(value: RetryDelay, retries: int) -> float | tuple[float, ...]:
    """Turn a ``retry_delay_seconds`` argument into a number or a tuple of numbers.

    A callable is evaluated here, at decoration, with the number of retries (as Prefect does).

    Raises:
        DefinitionError: a negative delay, a list longer than 50, or a callable that does not
            return a list of numbers.
    """
    if value is None:
        return 0.0
    if callable(value):
        value = value(retries)
        if not isinstance(value, list | tuple):
            raise DefinitionError(
                "a callable retry_delay_seconds must return a list of delays in seconds, "
                f"got {type(value).__name__}"
            )
    if isinstance(value, int | float):
        return _checked(float(value))
    delays = tuple(_checked(float(item)) for item in value)
    if len(delays) > MAX_DELAYS:
        raise DefinitionError(
            f"retry_delay_seconds may list at most {MAX_DELAYS} delays, got {len(delays)}"
        )
    return delays


def _checked(delay: float) -> float:
    if delay < 0:
        raise DefinitionError(f"retry delays must be zero or more seconds, got {delay:g}")
    return delay


def retry_delay(delays: float | tuple[float, ...], retry_number: int) -> float:
    """Return the base delay before retry number *retry_number* (1 for the first retry)."""
    if isinstance(delays, tuple):
        if not delays:
            return 0.0
        return delays[min(retry_number, len(delays)) - 1]
    return delays


def jittered(delay: float, jitter_factor: float | None, rng: random.Random | None = None) -> float:
    """Spread *delay* by up to ``jitter_factor`` of itself either way, never below zero.

    The upper bound, ``delay * (1 + factor)``, is the one Prefect documents; drawing uniformly
    around the delay keeps the mean equal to the delay for factors up to 1. Prefect's task
    engine ignores the factor; fluvial applies it so retries from many tasks spread out.
    """
    if not jitter_factor or delay <= 0:
        return delay
    import random

    draw = (rng or random).uniform(max(0.0, 1.0 - jitter_factor), 1.0 + jitter_factor)
    return delay * draw
