"""Shared fixtures: quiet logging per test and the anyio backend for async tests."""

from __future__ import annotations

import os

import pytest

# Tests read log records through caplog; fluvial's own console handler would only add noise.
os.environ.setdefault("FLUVIAL_LOGGING_SETUP", "false")


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (fluvial's async flows are asyncio-native)."""
    return "asyncio"
