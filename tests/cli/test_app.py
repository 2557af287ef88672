"""The ``fluvial`` command as a whole: help everywhere, version, errors, and a light start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from .conftest import Result, assert_user_error

GROUPS = ("run", "runs", "cache", "config", "profile", "bench")


def test_help_lists_every_command(cli: Callable[..., Result]) -> None:
    result = cli("--help")
    assert result.code == 0
    for name in GROUPS:
        assert f" {name} " in result.out, name
    # No command at all prints the same help, successfully.
    assert cli().out.rstrip() == result.out.rstrip()


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["runs"],
        ["runs", "ls"],
        ["runs", "show"],
        ["runs", "resume"],
        ["runs", "rm"],
        ["cache"],
        ["cache", "ls"],
        ["cache", "clear"],
        ["config", "show"],
        ["config", "profiles"],
        ["config", "use"],
        ["profile", "ls"],
    ],
)
def test_every_command_has_help(cli: Callable[..., Result], argv: list[str]) -> None:
    result = cli(*argv, "--help")
    assert result.code == 0, result
    assert f"Usage: fluvial {' '.join(argv)}" in result.out


def test_a_group_alone_prints_its_help(cli: Callable[..., Result]) -> None:
    for group in ("runs", "cache", "config"):
        result = cli(group)
        assert result.code == 0
        assert f"Usage: fluvial {group}" in result.out
        assert "Commands" in result.out


def test_version(cli: Callable[..., Result], shell: Callable[..., Result]) -> None:
    from fluvial import __version__

    assert cli("--version") == Result(0, f"fluvial {__version__}\n", "")
    assert shell("--version") == Result(0, f"fluvial {__version__}\n", "")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["nope"], "No such command 'nope'"),
        (["runs", "nope"], "hint: see 'fluvial runs --help'"),
        (["runs", "show"], "Missing argument 'ID'"),
        (["cache", "ls", "--bogus"], "No such option: --bogus"),
        (["run", "x.py:f", "--runner", "cluster"], "'cluster' is not one of"),
        (["runs", "ls", "--limit", "0"], "--limit"),
        (["cache", "clear", "--storage", " "], "not an empty string"),
    ],
)
def test_usage_errors_are_one_line_and_a_hint(
    cli: Callable[..., Result], argv: list[str], fragment: str
) -> None:
    result = cli(*argv)
    assert_user_error(result, fragment)
    assert result.out == ""
    assert result.error_lines[1].startswith("hint: see 'fluvial")


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fluvial", "runs", "show", "not-an-id", "--storage", "memory://x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "error: no flow run id starts with 'not-an-id' in memory:///x"
    )
    assert "Traceback" not in done.stderr


def test_help_imports_neither_settings_nor_backends() -> None:
    script = textwrap.dedent(
        """
        import contextlib, io, sys
        from fluvial.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--help"]) == 0
            assert main(["run", "--help"]) == 0
        heavy = ("dask", "distributed", "ray", "s3fs", "fsspec", "pydantic_settings")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_import_fluvial_imports_no_cli_library() -> None:
    script = "import sys, fluvial; print(sorted({'typer', 'rich', 'click'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_formatting_helpers() -> None:
    from fluvial.cli._output import format_bytes, format_duration, one_line

    assert [format_bytes(n) for n in (None, 0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "-",
        "0 B",
        "1023 B",
        "1.5 KB",
        "5.0 MB",
        "3.0 GB",
    ]
    assert [format_duration(s) for s in (None, 0.85, 12.34, 245, 7380)] == [
        "-",
        "850ms",
        "12.3s",
        "4m05s",
        "2h03m",
    ]
    assert one_line(ValueError("invalid parameters:\n - n: bad\n - m: worse")) == (
        "invalid parameters: - n: bad; - m: worse"
    )
    assert one_line(KeyError()) == "KeyError"
