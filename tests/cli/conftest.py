"""Fixtures for the ``fluvial`` command: run it in-process (``main``) or as a real process.

Every test has its own FLUVIAL_HOME (the autouse fixture of tests/conftest.py) and no other
``FLUVIAL_*`` setting, so the commands' default storage is ``<that home>/storage``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fluvial.cli import main
from fluvial.settings import _state

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "cli_flows.py"
ROOT = HERE.parent.parent


@dataclass(frozen=True)
class Result:
    """What one command printed and its exit status."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """stderr without fluvial's log lines."""
        return [line for line in self.err.splitlines() if " | " not in line]


def assert_user_error(result: Result, fragment: str) -> None:
    """A user error: exit 1, ``error: ...`` then at most a ``hint: ...``, no traceback."""
    assert result.code == 1, result
    assert "Traceback" not in result.err, result.err
    lines = result.error_lines
    assert lines, result
    assert lines[0].startswith("error: "), result.err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), result.err
    assert fragment in result.err, result.err


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("FLUVIAL_") and key not in ("FLUVIAL_HOME", "FLUVIAL_LOGGING_SETUP"):
            monkeypatch.delenv(key)
    _state.invalidate()
    yield
    _state.invalidate()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``fluvial ARGS...`` in this process through :func:`fluvial.cli.main`."""

    def invoke(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


def fluvial_command() -> list[str]:
    """The installed console script next to this Python, else ``python -m fluvial``."""
    script = Path(sys.executable).parent / "fluvial"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fluvial"]


@pytest.fixture
def shell(tmp_path: Path) -> Callable[..., Result]:
    """Run ``fluvial ARGS...`` as a real process (cwd: a fresh directory unless given)."""

    def invoke(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
        workdir = cwd or tmp_path / "cwd"
        workdir.mkdir(exist_ok=True)
        done = subprocess.run(
            [*fluvial_command(), *argv],
            capture_output=True,
            text=True,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            timeout=120,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return invoke
