"""Overhead benchmarks for fluvial, run as ``python -m benchmarks``.

They live outside the test suite because DESIGN.md keeps speed out of tests: a benchmark reports
a median against a raw baseline measured in the same run, and never fails a build.
"""

from __future__ import annotations
