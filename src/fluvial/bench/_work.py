"""The units of work every side of a runner scenario runs, importable by name on any worker.

They live in the installed package (not in a script) so that spawned processes, Dask workers
and Ray workers import them the same way wherever ``fluvial bench`` is run from.
"""

from __future__ import annotations

__all__ = ("noop", "step", "total", "total_args")


def noop(i: int = 0) -> None:
    """Do nothing: the unit of work of a fan-out or a map."""


def step(x: int) -> int:
    """Return ``x + 1``: one link of a chain, or one arm of a diamond."""
    return x + 1


def total(xs: list[int]) -> int:
    """Return the sum of *xs*: the fan-in task of a diamond."""
    return sum(xs)


def total_args(*xs: int) -> int:
    """Return the sum of the arguments: a diamond's fan-in where refs must be top-level (Ray)."""
    return sum(xs)
