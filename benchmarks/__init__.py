"""A shim: the benchmark suite lives in :mod:`fluvial.bench`, so ``fluvial bench`` works for pip
users too; ``python -m benchmarks`` from a checkout runs the same command."""

from __future__ import annotations
