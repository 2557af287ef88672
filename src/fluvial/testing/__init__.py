"""Conformance suites shipped with fluvial, for its own tests and for third-party backends.

``StorageConformance`` and ``RunnerConformance`` are pytest suites: subclass one and override
its fixture (``store``, or ``runner``) to hold a result storage or a task runner to the
behaviour fluvial relies on. The suites live in their own modules and are imported on first
access, so ``import fluvial.testing`` does not import pytest.
"""

from __future__ import annotations

__all__ = ("RunnerCapabilities", "RunnerConformance", "StorageConformance")

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner_suite import RunnerCapabilities, RunnerConformance
    from .storage_suite import StorageConformance


def __getattr__(name: str) -> Any:
    if name == "StorageConformance":
        from .storage_suite import StorageConformance

        return StorageConformance
    if name in ("RunnerConformance", "RunnerCapabilities"):
        from . import runner_suite

        return getattr(runner_suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
