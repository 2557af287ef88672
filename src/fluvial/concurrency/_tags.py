"""Tag limits in the task engine: one slot of ``tag:<tag>`` per tag, for each attempt.

The engine asks :func:`tag_slots` once per task run; a run without tags never gets here, and a
run whose tags have no limits costs one dict lookup per tag. A :class:`TagSlots` is taken
before the run turns Running (so waiting for a slot never counts as running, and never happens
while the task waits on upstream futures) and given back when the attempt ends, including
before a retry delay.
"""

from __future__ import annotations

__all__ = ("TAG_LEASE_SECONDS", "TagSlots", "any_tag_limited", "tag_slots")

from collections.abc import Iterable
from typing import Any

from .._config import run_config
from ..engine.effects import Effect
from ._acquire import Lease, aacquire, acquire, check
from ._table import LimitSpec

#: Lease of a tag slot on cluster backends; renewed while the attempt runs (Prefect uses 60 s).
TAG_LEASE_SECONDS = 60.0


class TagSlots(Effect):
    """The tag-limit slots of one task run: an effect that takes them, and their release."""

    __slots__ = ("lease", "specs")

    def __init__(self, specs: tuple[LimitSpec, ...]) -> None:
        self.specs = specs
        self.lease: Lease | None = None

    def run_sync(self) -> Any:
        """Wait in this thread until every tag has a free slot."""
        self.lease = acquire(self.specs, 1, "concurrency", None, TAG_LEASE_SECONDS)

    async def run_async(self) -> Any:
        """Wait on the event loop until every tag has a free slot."""
        self.lease = await aacquire(self.specs, 1, "concurrency", None, TAG_LEASE_SECONDS)

    def release(self) -> None:
        """Give the slots back (nothing if not held)."""
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()


def any_tag_limited(tags: Iterable[str]) -> bool:
    """Return whether any of *tags* has a concurrency limit (of any size, 0 included)."""
    by_tag = run_config().concurrency_limits.by_tag
    return bool(by_tag) and any(tag in by_tag for tag in tags)


def tag_slots(tags: Iterable[str]) -> TagSlots | None:
    """Return the slots to take for a run with *tags*, or None when no tag has a limit.

    Raises:
        ConcurrencySlotAcquisitionError: a tag's limit is 0 (such runs fail at once, as in
            Prefect, instead of waiting forever).
    """
    by_tag = run_config().concurrency_limits.by_tag
    if not by_tag:
        return None
    specs = [by_tag[tag] for tag in tags if tag in by_tag]
    if not specs:
        return None
    specs.sort(key=_name)
    ordered = tuple(specs)
    check(ordered, 1, "concurrency")
    return TagSlots(ordered)


def _name(spec: LimitSpec) -> str:
    return spec.name
