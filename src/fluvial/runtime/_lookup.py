"""Shared lookup for the runtime modules: context first, then environment overrides."""

from __future__ import annotations

__all__ = ("env_override",)

import os
from typing import Any

_MISSING = object()


def env_override(section: str, name: str) -> Any:
    """Return the ``FLUVIAL__RUNTIME__<SECTION>__<NAME>`` value, or a sentinel when unset."""
    value = os.environ.get(f"FLUVIAL__RUNTIME__{section.upper()}__{name.upper()}")
    return _MISSING if value is None else value


MISSING = _MISSING
