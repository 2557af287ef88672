"""Every concurrency test starts with no limits made through the API and empty in-process tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fluvial.concurrency._registry import clear_overlay
from fluvial.concurrency._select import reset_backends


@pytest.fixture(autouse=True)
def fresh_limits() -> Iterator[None]:
    """Forget limits and slots left by another test."""
    clear_overlay()
    reset_backends()
    yield
    clear_overlay()
    reset_backends()


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """Return the largest number of (start, end) spans open at one instant."""
    # At equal times an end sorts before a start: touching spans do not overlap.
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak
