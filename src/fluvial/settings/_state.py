"""The state behind ``get_current_settings()``: a context layer per ``with`` block and a generation.

A :class:`Layer` is what ``temporary_settings`` or ``use_profile`` put in place for their block:
the overrides and profile in effect, and the settings built from them. Layers live in a
``ContextVar``, so each thread and each asyncio task sees its own. Every cached settings object is
stamped with the generation it was built in; ``reload_settings()`` and writes to the profiles file
bump the generation, and a stale object is rebuilt on the next read.
"""

from __future__ import annotations

__all__ = ("Built", "Layer", "Source", "current_generation", "current_layer", "invalidate")

import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._model import FluvialSettings

#: Where a setting's value came from, highest priority first.
Source = Literal["override", "env", "profile", "default"]


@dataclass(frozen=True)
class Built:
    """Settings built at one generation, and where each value came from."""

    settings: FluvialSettings
    generation: int
    profile: str
    profiles_path: Path
    sources: Mapping[str, Source]


@dataclass(eq=False)
class Layer:
    """The overrides and profile of one ``temporary_settings``/``use_profile`` block."""

    overrides: Mapping[str, Any] = field(default_factory=dict)
    profile: str | None = None
    built: Built | None = None


current_layer: ContextVar[Layer | None] = ContextVar("fluvial.settings.layer", default=None)

_generation = 0
_generation_lock = threading.Lock()


def current_generation() -> int:
    """Return the generation that cached settings must match to be current."""
    return _generation


def invalidate() -> None:
    """Make every cached settings object stale, in every context."""
    global _generation
    with _generation_lock:
        _generation += 1
