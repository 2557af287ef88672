"""Conformance suites shipped with fluvial, for its own tests and for third-party backends.

``StorageConformance`` is a pytest suite: subclass it and override its ``store`` fixture to
hold a result storage to the behaviour fluvial relies on. The suites live in their own
modules and are imported on first access, so ``import fluvial.testing`` does not import
pytest.
"""

from __future__ import annotations

__all__ = ("StorageConformance",)

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .storage_suite import StorageConformance


def __getattr__(name: str) -> Any:
    if name == "StorageConformance":
        from .storage_suite import StorageConformance

        return StorageConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
