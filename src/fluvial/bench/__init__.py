"""fluvial's benchmark suite: ``fluvial bench`` (or ``python -m benchmarks`` in a checkout).

Every scenario times fluvial and the raw executor or library call it wraps alternately, in the
same run, and reports both medians, their ratio and DESIGN.md's budget. See docs/benchmarks.md.
Needs the ``bench`` extra (rich for the table, matplotlib for ``--plot``).
"""

from __future__ import annotations

__all__ = ("main",)

from .cli import main
