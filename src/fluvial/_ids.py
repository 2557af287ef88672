"""Run identifiers: UUIDv7-shaped, time-ordered, and cheap to make.

Ids sort by creation time, which keeps run journals and storage listings in run order.
``uuid.uuid4()`` reads the OS entropy pool on every call; a per-process generator seeded from it
is several times faster and is reseeded after ``fork`` so parent and child never share ids.
"""

from __future__ import annotations

__all__ = ("new_id",)

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    import uuid

_random: random.Random | None = None


def _generator() -> random.Random:
    global _random
    if _random is None:
        import random

        _random = random.Random(os.urandom(16))
    return _random


def _reseed() -> None:
    if _random is not None:
        _random.seed(os.urandom(16))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)

_VERSION_7 = 0x7 << 76
_VARIANT = 0x2 << 62
_RANDOM_MASK = (1 << 74) - 1


def new_id() -> uuid.UUID:
    """Return a new time-ordered UUID (version 7 layout: 48-bit ms timestamp, then random)."""
    import uuid  # cached after the first call; keeps `import fluvial` from importing platform

    millis = time.time_ns() // 1_000_000
    rand = (_random or _generator()).getrandbits(74)
    value = (millis << 80) | _VERSION_7 | ((rand >> 62) << 64) | _VARIANT | (rand & ((1 << 62) - 1))
    # Built without UUID.__init__'s argument parsing, which costs more than the rest.
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", uuid.SafeUUID.unknown)
    return made
