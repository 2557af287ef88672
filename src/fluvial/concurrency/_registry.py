"""Where limit definitions come from: settings, then the Python API, as one snapshot.

The ``concurrency_limits`` setting (environment or profile) gives the base definitions; limits
made with :func:`fluvial.concurrency.create_limit` and friends override them in this process.
The merged :class:`Limits` snapshot is part of the run config, so it travels with every task to
process, Dask and Ray workers: a worker sees the limits of the flow process that sent the task,
and each slot request carries the definitions it uses, so the shared slot tables never need to be
seeded or kept in sync separately.

This module is imported by :mod:`fluvial._config` at the first run; it stays cheap.
"""

from __future__ import annotations

__all__ = (
    "Limits",
    "clear_overlay",
    "define",
    "format_limits",
    "limits_snapshot",
    "make_spec",
    "parse_limits",
    "undefine",
    "validate_name",
)

import re
import threading
from typing import Any

from ._table import LimitSpec

_BAD_CHARS = re.compile(r"[/%&<>,=@~\s]")
_lock = threading.Lock()
# name -> LimitSpec (made or changed here) or None (deleted here); applied over the settings.
_overlay: dict[str, LimitSpec | None] = {}
_snapshots: dict[str, Limits] = {}


class Limits:
    """An immutable view of every defined limit, with tag limits indexed by tag."""

    __slots__ = ("by_name", "by_tag")

    def __init__(self, specs: dict[str, LimitSpec]) -> None:
        self.by_name = specs
        # The engine looks tags up here: one dict lookup per tag, no string building.
        self.by_tag = {n[4:]: s for n, s in specs.items() if n.startswith("tag:") and s.active}

    def __repr__(self) -> str:
        return f"Limits({sorted(self.by_name)!r})"


def validate_name(name: str) -> str:
    """Return *name* if it can name a limit, else raise ``ValueError`` saying why."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a concurrency limit needs a non-empty name, got {name!r}")
    if _BAD_CHARS.search(name):
        raise ValueError(
            f"concurrency limit name {name!r} has a character that is not allowed "
            "(whitespace or any of / % & < > , = @ ~)"
        )
    return name


def make_spec(name: str, limit: Any, decay: Any = 0.0, active: bool = True) -> LimitSpec:
    """Return a checked definition, or raise ``ValueError`` saying what is wrong."""
    validate_name(name)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit {name!r}: slots must be an integer >= 0, got {limit!r}")
    decay = float(decay)
    if decay < 0.0:
        raise ValueError(f"limit {name!r}: slot_decay_per_second must be >= 0, got {decay!r}")
    return LimitSpec(name, limit, decay, bool(active))


def parse_limits(text: str) -> dict[str, LimitSpec]:
    """Parse the ``concurrency_limits`` setting: ``[~]name=slots[@decay],...``.

    A leading ``~`` marks a limit inactive (defined, not enforced).
    """
    specs: dict[str, LimitSpec] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = entry.partition("=")
        slots, _, decay = value.partition("@")
        name = name.strip()
        active = not name.startswith("~")
        name = name.removeprefix("~").strip()
        try:
            if not sep:
                raise ValueError("expected name=slots")
            specs[name] = make_spec(name, _slots(slots), _decay(decay or "0"), active)
        except ValueError as exc:
            raise ValueError(
                f"bad concurrency limit {entry!r}: {exc} "
                "(write name=slots or name=slots@decay_per_second, e.g. 'api=60@1.0')"
            ) from None
    return specs


def _slots(text: str) -> int:
    # int("x") says "invalid literal for int() with base 10"; say what was expected instead.
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a whole number of slots") from None


def _decay(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a decay rate in slots per second") from None


def format_limits(specs: dict[str, LimitSpec]) -> str:
    """Write *specs* in the syntax :func:`parse_limits` reads."""
    parts = []
    for name, spec in sorted(specs.items()):
        text = f"{'' if spec.active else '~'}{name}={spec.limit}"
        if spec.slot_decay_per_second:
            text += f"@{spec.slot_decay_per_second:g}"
        parts.append(text)
    return ",".join(parts)


def limits_snapshot(settings_text: str) -> Limits:
    """Return the merged limits for this settings text and the current overlay."""
    with _lock:
        snapshot = _snapshots.get(settings_text)
        if snapshot is None:
            specs = parse_limits(settings_text)
            for name, spec in _overlay.items():
                if spec is None:
                    specs.pop(name, None)
                else:
                    specs[name] = spec
            snapshot = _snapshots[settings_text] = Limits(specs)
        return snapshot


def define(name: str, limit: int, slot_decay_per_second: float, active: bool) -> LimitSpec:
    """Make or replace a limit in this process (over the settings)."""
    spec = make_spec(name, limit, slot_decay_per_second, active)
    _change(name, spec)
    return spec


def undefine(name: str) -> None:
    """Delete a limit in this process (also one that came from the settings)."""
    _change(name, None)


def _change(name: str, spec: LimitSpec | None) -> None:
    from .._config import forget_converted

    with _lock:
        _overlay[name] = spec
        _snapshots.clear()
    forget_converted()


def clear_overlay() -> None:
    """Forget every limit made through the API in this process (tests start from settings)."""
    with _lock:
        _overlay.clear()
        _snapshots.clear()
    from .._config import forget_converted

    forget_converted()
