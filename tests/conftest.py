"""Shared fixtures: an isolated FLUVIAL_HOME per test, quiet logging, the anyio backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests read log records through caplog; fluvial's own console handler would only add noise.
os.environ.setdefault("FLUVIAL_LOGGING_SETUP", "false")


@pytest.fixture(autouse=True)
def isolated_fluvial_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point FLUVIAL_HOME at a fresh directory so no test reads or writes ~/.fluvial."""
    from fluvial.settings import reload_settings

    home = tmp_path / "fluvial-home"
    monkeypatch.setenv("FLUVIAL_HOME", str(home))
    reload_settings()
    return home


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (fluvial's async flows are asyncio-native)."""
    return "asyncio"
