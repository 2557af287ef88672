"""The ``fluvial`` command: ``profile`` and ``config`` end to end, through ``main([...])``.

Like ``prefect profile ...`` and ``prefect config ...`` (reference §6), with one difference in
form: every error is one ``error: ...`` line on stderr, at most followed by one ``hint: ...``
line, and exit status 1. Each test has its own FLUVIAL_HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluvial.cli import main
from fluvial.settings import _state, load_profiles
from fluvial.settings._model import SettingsValues

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated FLUVIAL_HOME, no other FLUVIAL_* variable, and nothing cached."""
    for key in list(os.environ):
        if key.upper().startswith("FLUVIAL_") and not key.startswith("FLUVIAL__"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    path = tmp_path / "fluvial-home"
    monkeypatch.setenv("FLUVIAL_HOME", str(path))
    _state.invalidate()
    yield path
    _state.invalidate()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail and return its error line (and hint line, if any)."""
    code, out, err = run(capsys, *argv)
    assert code == 1, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert err.endswith("\n"), f"expected an error line, got {err!r}"
    assert lines[0].startswith("error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err
    return err


def profiles_file(home: Path) -> dict[str, object]:
    return tomllib.loads((home / "profiles.toml").read_text())


# --- help and usage -------------------------------------------------------------------------


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "profile" in out
    assert "config" in out
    for group in ("profile", "config"):
        code, out, _ = run(capsys, group, "--help")
        assert code == 0
        assert "COMMAND" in out
    code, out, _ = run(capsys, "config", "set", "--help")
    assert code == 0
    assert "KEY=VALUE" in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 0
    assert "Usage: fluvial" in out
    code, out, _ = run(capsys, "profile")
    assert code == 0
    assert "Usage: fluvial profile" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("fluvial ")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["nope"], "No such command 'nope'"),
        (["profile", "nope"], "hint: see 'fluvial profile --help'"),
        (["profile", "create"], "Missing argument 'name'"),
        (["config", "set"], "Missing argument 'KEY=VALUE...'"),
        (["config", "set", "novalue"], "expected KEY=VALUE, got 'novalue'"),
        (["config", "view", "--bogus"], "No such option: --bogus"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    assert fragment in fails(capsys, *argv)


# --- fluvial profile ------------------------------------------------------------------------


def test_profile_ls_without_a_file(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    assert run(capsys, "profile", "ls") == (0, "* default\n", "")
    assert not home.exists(), "listing must not write anything"


def test_profile_lifecycle(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = run(capsys, "profile", "create", "dev")
    assert code == 0
    assert "Created profile 'dev'" in out
    assert run(capsys, "config", "set", "logging_level=debug")[0] == 0
    assert run(capsys, "profile", "create", "ci", "--from", "default")[0] == 0
    assert run(capsys, "profile", "ls")[1] == "* default\n  dev\n  ci\n"

    code, out, _ = run(capsys, "profile", "use", "ci")
    assert (code, out) == (0, "Active profile is now 'ci'.\n")
    assert run(capsys, "profile", "ls")[1] == "  default\n  dev\n* ci\n"
    assert run(capsys, "profile", "inspect")[1] == 'FLUVIAL_LOGGING_LEVEL = "DEBUG"\n'
    assert run(capsys, "profile", "inspect", "dev")[1] == "Profile 'dev' is empty.\n"

    assert run(capsys, "profile", "delete", "dev") == (0, "Removed profile 'dev'.\n", "")
    assert profiles_file(home) == {
        "active": "ci",
        "profiles": {
            "default": {"FLUVIAL_LOGGING_LEVEL": "DEBUG"},
            "ci": {"FLUVIAL_LOGGING_LEVEL": "DEBUG"},
        },
    }


def test_fluvial_profile_marks_and_targets_another_profile(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "profile", "create", "ci")
    monkeypatch.setenv("FLUVIAL_PROFILE", "ci")
    assert run(capsys, "profile", "ls")[1] == "  default\n* ci\n"
    run(capsys, "config", "set", "FLUVIAL_TASKS_REFRESH_CACHE=true")
    assert load_profiles().profiles == {
        "default": {},
        "ci": {"FLUVIAL_TASKS_REFRESH_CACHE": True},
    }
    code, _, err = run(capsys, "profile", "use", "default")
    assert code == 0
    assert "FLUVIAL_PROFILE=ci is set" in err
    monkeypatch.setenv("FLUVIAL_PROFILE", "gone")
    code, out, err = run(capsys, "profile", "ls")
    assert (code, out) == (0, "  default\n  ci\n")
    assert "'gone' does not exist" in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["profile", "create", "default"], "profile 'default' already exists in"),
        (["profile", "create", "x", "--from", "nope"], "no profile named 'nope'"),
        (["profile", "use", "nope"], "known profiles: 'default'"),
        (["profile", "delete", "default"], "is the active profile"),
        (["profile", "delete", "nope"], "no profile named 'nope'"),
        (["profile", "inspect", "nope"], "no profile named 'nope'"),
    ],
)
def test_profile_errors(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    err = fails(capsys, *argv)
    assert err.startswith("error: ")
    assert fragment in err


def test_using_a_broken_profile_warns(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    home.mkdir()
    (home / "profiles.toml").write_text("[profiles.default]\n[profiles.odd]\nFLUVIAL_NOPE = 1\n")
    code, out, err = run(capsys, "profile", "use", "odd")
    assert code == 0
    assert "Active profile is now 'odd'" in out
    assert "unknown setting 'FLUVIAL_NOPE'" in err


def test_malformed_file_is_one_line(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    home.mkdir()
    (home / "profiles.toml").write_text("active = [\n")
    for argv in (["profile", "ls"], ["config", "view"], ["config", "set", "logging_level=INFO"]):
        err = fails(capsys, *argv)
        assert "is not valid TOML" in err
        assert str(home / "profiles.toml") in err


# --- fluvial config -------------------------------------------------------------------------


def test_config_set_and_view(
    capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(
        capsys,
        "config",
        "set",
        "FLUVIAL_THREAD_POOL_MAX_WORKERS=8",
        "results_persist_by_default=yes",
        "results_default_storage=s3://bucket/my prefix",
    )
    assert code == 0
    assert err == ""
    assert out.splitlines() == [
        "Set FLUVIAL_THREAD_POOL_MAX_WORKERS = 8",
        "Set FLUVIAL_RESULTS_PERSIST_BY_DEFAULT = true",
        'Set FLUVIAL_RESULTS_DEFAULT_STORAGE = "s3://bucket/my prefix"',
        "Updated profile 'default'.",
    ]
    assert profiles_file(home)["profiles"] == {
        "default": {
            "FLUVIAL_THREAD_POOL_MAX_WORKERS": 8,
            "FLUVIAL_RESULTS_PERSIST_BY_DEFAULT": True,
            "FLUVIAL_RESULTS_DEFAULT_STORAGE": "s3://bucket/my prefix",
        }
    }

    monkeypatch.setenv("FLUVIAL_LOGGING_LEVEL", "warning")
    code, out, _ = run(capsys, "config", "view")
    assert code == 0
    assert out.splitlines() == [
        'FLUVIAL_PROFILE = "default"',
        f'FLUVIAL_HOME = "{home}"',
        'FLUVIAL_RESULTS_DEFAULT_STORAGE = "s3://bucket/my prefix"',
        "FLUVIAL_RESULTS_PERSIST_BY_DEFAULT = true",
        "FLUVIAL_THREAD_POOL_MAX_WORKERS = 8",
        'FLUVIAL_LOGGING_LEVEL = "WARNING"',
    ]

    code, out, _ = run(capsys, "config", "view", "--show-defaults", "--show-sources")
    lines = out.splitlines()
    assert len(lines) == 1 + len(SettingsValues.model_fields), "the profile line, every setting"
    assert f'FLUVIAL_PROFILES_PATH = "{home / "profiles.toml"}"  (from default)' in lines
    assert "FLUVIAL_THREAD_POOL_MAX_WORKERS = 8  (from profile)" in lines
    assert 'FLUVIAL_LOGGING_LEVEL = "WARNING"  (from env)' in lines
    assert "FLUVIAL_TASKS_REFRESH_CACHE = false  (from default)" in lines


def test_config_view_shows_the_effective_storage(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    out = run(capsys, "config", "view", "--show-defaults")[1]
    assert f'FLUVIAL_RESULTS_DEFAULT_STORAGE = "{home / "storage"}"' in out.splitlines()


def test_config_set_notes_an_environment_override(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUVIAL_LOGGING_LEVEL", "ERROR")
    code, _, err = run(capsys, "config", "set", "logging_level=DEBUG")
    assert code == 0
    assert "FLUVIAL_LOGGING_LEVEL is also set in the environment" in err


def test_config_unset(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    run(capsys, "config", "set", "logging_level=DEBUG", "tasks_refresh_cache=true")
    code, out, _ = run(capsys, "config", "unset", "FLUVIAL_LOGGING_LEVEL", "tasks_refresh_cache")
    assert code == 0
    assert out.splitlines() == [
        "Unset FLUVIAL_LOGGING_LEVEL",
        "Unset FLUVIAL_TASKS_REFRESH_CACHE",
        "Updated profile 'default'.",
    ]
    assert profiles_file(home)["profiles"] == {"default": {}}


def test_config_unset_repairs_an_unknown_key(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    home.mkdir()
    (home / "profiles.toml").write_text("[profiles.default]\nFLUVIAL_NOPE = 1\n")
    assert "unknown setting 'FLUVIAL_NOPE'" in fails(capsys, "config", "view")
    assert run(capsys, "config", "unset", "FLUVIAL_NOPE")[0] == 0
    assert run(capsys, "config", "view")[0] == 0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["config", "set", "thread_pool_max_workers=0"], "greater than or equal to 1"),
        (["config", "set", "logging_level=LOUD"], "not a logging level name"),
        (["config", "set", "FLUVIAL_LOGING_LEVEL=INFO"], "did you mean FLUVIAL_LOGGING_LEVEL?"),
        (["config", "set", "FLUVIAL_HOME=/x"], "FLUVIAL_HOME cannot be set"),
        (["config", "set", "FLUVIAL_PROFILE=x"], "fluvial profile use"),
        (["config", "unset", "logging_level"], "FLUVIAL_LOGGING_LEVEL is not set in profile"),
        (["config", "unset", "bogus"], "unknown setting 'bogus'"),
    ],
)
def test_config_errors_change_nothing(
    capsys: pytest.CaptureFixture[str], home: Path, argv: list[str], fragment: str
) -> None:
    run(capsys, "config", "set", "tasks_refresh_cache=true")
    before = (home / "profiles.toml").read_bytes()
    err = fails(capsys, *argv)
    assert err.startswith("error: ")
    assert fragment in err
    assert (home / "profiles.toml").read_bytes() == before


def test_config_set_is_all_or_nothing(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    fails(capsys, "config", "set", "logging_level=DEBUG", "thread_pool_max_workers=zero")
    assert load_profiles().profiles == {"default": {}}
    assert not home.exists()


def test_bad_environment_value_is_reported_by_config_view(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUVIAL_THREAD_POOL_MAX_WORKERS", "many")
    err = fails(capsys, "config", "view")
    assert "FLUVIAL_THREAD_POOL_MAX_WORKERS='many' (from the environment)" in err


# --- as a real process ----------------------------------------------------------------------


def test_python_dash_m_fluvial(home: Path) -> None:
    env = {**os.environ, "FLUVIAL_HOME": str(home)}
    listed = subprocess.run(
        [sys.executable, "-m", "fluvial", "profile", "ls"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "* default\n", "")
    failed = subprocess.run(
        [sys.executable, "-m", "fluvial", "profile", "use", "nope"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith("error: no profile named 'nope'")
    assert failed.stderr.count("\n") == 1


def test_config_show_profiles_and_use_are_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "profile", "create", "ci")
    run(capsys, "config", "set", "logging_level=DEBUG")
    assert run(capsys, "config", "show", "--show-sources") == run(
        capsys, "config", "view", "--show-sources"
    )
    assert run(capsys, "config", "profiles") == (0, "* default\n  ci\n", "")
    assert run(capsys, "config", "use", "ci") == (0, "Active profile is now 'ci'.\n", "")
    assert run(capsys, "profile", "ls")[1] == "  default\n* ci\n"
    assert "known profiles: 'default', 'ci'" in fails(capsys, "config", "use", "nope")
