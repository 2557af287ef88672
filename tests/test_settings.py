"""Settings and profiles: sources and their order, caching, context overrides, the profiles file.

Prefect's settings (reference §6) take init kwargs over environment variables over the active
profile of ``profiles.toml``; fluvial keeps that order with ``temporary_settings`` as the init
kwargs. Every test runs with ``FLUVIAL_HOME`` in a temporary directory, ``HOME`` pointed there too,
and no other ``FLUVIAL_*`` variable, so the real ``~/.fluvial`` is never read or written.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
import subprocess
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluvial.settings
from fluvial.exceptions import ConfigurationError
from fluvial.settings import (
    FluvialSettings,
    ProfilesCollection,
    _profiles,
    _state,
    create_profile,
    delete_profile,
    get_current_settings,
    load_profiles,
    reload_settings,
    save_profiles,
    set_active_profile,
    setting_sources,
    temporary_settings,
    update_profile,
    use_profile,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated FLUVIAL_HOME (not created yet), and nothing cached from earlier tests."""
    for key in list(os.environ):
        if key.upper().startswith("FLUVIAL_") and not key.startswith("FLUVIAL__"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    path = tmp_path / "fluvial-home"
    monkeypatch.setenv("FLUVIAL_HOME", str(path))
    _state.invalidate()
    yield path
    _state.invalidate()


def write_profiles(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "profiles.toml"
    path.write_text(textwrap.dedent(text))
    return path


# --- the model ------------------------------------------------------------------------------


def test_defaults_without_a_profiles_file(home: Path) -> None:
    current = get_current_settings()
    assert current.home == home
    assert current.profiles_path == home / "profiles.toml"
    assert current.results_default_storage is None
    assert current.result_storage_url == str(home / "storage")
    assert current.results_default_serializer == "pickle"
    assert current.results_persist_by_default is False
    assert current.tasks_refresh_cache is False
    assert current.tasks_unhashable_inputs == "warn"
    assert current.thread_pool_max_workers == 64
    assert current.logging_level == "INFO"
    assert current.logging_setup is True
    assert not home.exists(), "reading settings must not create anything"


def test_home_defaults_to_dot_fluvial_and_expands_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLUVIAL_HOME")
    assert reload_settings().home == tmp_path / "user" / ".fluvial"
    monkeypatch.setenv("FLUVIAL_HOME", "~/elsewhere")
    current = reload_settings()
    assert current.home == tmp_path / "user" / "elsewhere"
    assert current.profiles_file == tmp_path / "user" / "elsewhere" / "profiles.toml"


def test_profiles_path_can_be_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "conf" / "mine.toml"
    write_profiles(other.parent, "").rename(other)
    other.write_text('[profiles.default]\nFLUVIAL_LOGGING_LEVEL = "DEBUG"\n')
    monkeypatch.setenv("FLUVIAL_PROFILES_PATH", str(other))
    current = reload_settings()
    assert current.profiles_path == other
    assert current.logging_level == "DEBUG"


def test_every_field_is_documented() -> None:
    for name, field in FluvialSettings.model_fields.items():
        assert field.description, f"{name} has no description"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("logging_level", "debug", "DEBUG"),
        ("logging_level", " Warning ", "WARNING"),
        ("tasks_unhashable_inputs", "ERROR", "error"),
        ("results_persist_by_default", "yes", True),
        ("tasks_refresh_cache", "0", False),
        ("thread_pool_max_workers", "3", 3),
        ("results_default_storage", "", None),
        ("results_default_storage", "memory://x", "memory://x"),
    ],
)
def test_values_are_validated_and_normalized(field: str, value: str, expected: object) -> None:
    with temporary_settings({field: value}) as current:
        assert getattr(current, field) == expected


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("logging_level", "loud", "not a logging level name"),
        ("logging_level", 10, "string"),
        ("thread_pool_max_workers", 0, "greater than or equal to 1"),
        ("tasks_unhashable_inputs", "ignore", "'warn' or 'error'"),
        ("results_persist_by_default", "maybe", "boolean"),
        ("results_default_serializer", "", "at least 1 character"),
    ],
)
def test_bad_values_are_configuration_errors(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment) as info:
        with temporary_settings({field: value}):
            pass
    assert f"FLUVIAL_{field.upper()}" in str(info.value)
    assert "from temporary_settings" in str(info.value)


def test_result_storage_url_expands_a_home_relative_path(tmp_path: Path) -> None:
    with temporary_settings(results_default_storage="~/results") as current:
        assert current.result_storage_url == str(tmp_path / "user" / "results")
    with temporary_settings(results_default_storage="s3://bucket/prefix") as current:
        assert current.result_storage_url == "s3://bucket/prefix"


def test_settings_are_frozen() -> None:
    current = get_current_settings()
    with pytest.raises(ValueError, match="frozen"):
        current.thread_pool_max_workers = 3  # type: ignore[misc]


# --- sources and their order ----------------------------------------------------------------


def test_env_beats_profile_beats_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_profiles(
        home,
        """
        [profiles.default]
        FLUVIAL_THREAD_POOL_MAX_WORKERS = 3
        FLUVIAL_RESULTS_PERSIST_BY_DEFAULT = true
        FLUVIAL_LOGGING_LEVEL = "WARNING"
        """,
    )
    monkeypatch.setenv("FLUVIAL_THREAD_POOL_MAX_WORKERS", "5")
    monkeypatch.setenv("FLUVIAL_RESULTS_PERSIST_BY_DEFAULT", "false")
    current = reload_settings()
    assert current.thread_pool_max_workers == 5  # env over profile
    assert current.results_persist_by_default is False  # env over profile
    assert current.logging_level == "WARNING"  # profile over default
    assert current.tasks_refresh_cache is False  # default
    assert setting_sources()["thread_pool_max_workers"] == "env"
    assert setting_sources()["logging_level"] == "profile"
    assert setting_sources()["tasks_refresh_cache"] == "default"

    monkeypatch.delenv("FLUVIAL_THREAD_POOL_MAX_WORKERS")
    assert reload_settings().thread_pool_max_workers == 3
    with temporary_settings(FLUVIAL_THREAD_POOL_MAX_WORKERS=7):  # override over everything
        monkeypatch.setenv("FLUVIAL_THREAD_POOL_MAX_WORKERS", "5")
        assert reload_settings().thread_pool_max_workers == 7
        assert setting_sources()["thread_pool_max_workers"] == "override"


def test_empty_environment_variables_count_as_unset(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(home, "[profiles.default]\nFLUVIAL_THREAD_POOL_MAX_WORKERS = 3\n")
    monkeypatch.setenv("FLUVIAL_THREAD_POOL_MAX_WORKERS", "")
    assert reload_settings().thread_pool_max_workers == 3


def test_fluvial_profile_picks_the_profile(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_profiles(
        home,
        """
        active = "dev"
        [profiles.dev]
        FLUVIAL_LOGGING_LEVEL = "DEBUG"
        [profiles.ci]
        FLUVIAL_LOGGING_LEVEL = "ERROR"
        """,
    )
    assert reload_settings().logging_level == "DEBUG"
    monkeypatch.setenv("FLUVIAL_PROFILE", "ci")
    assert reload_settings().logging_level == "ERROR"
    monkeypatch.setenv("FLUVIAL_PROFILE", "prod")
    with pytest.raises(ConfigurationError, match=r"no profile named 'prod'.*'dev', 'ci'"):
        reload_settings()


def test_active_default_profile_need_not_be_written(home: Path) -> None:
    write_profiles(home, '[profiles.ci]\nFLUVIAL_LOGGING_LEVEL = "ERROR"\n')
    assert reload_settings().logging_level == "INFO"
    assert load_profiles().names == ["ci", "default"]


def test_direct_construction_reads_the_same_sources(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(home, "[profiles.default]\nFLUVIAL_TASKS_REFRESH_CACHE = true\n")
    monkeypatch.setenv("FLUVIAL_LOGGING_LEVEL", "error")
    built = FluvialSettings(thread_pool_max_workers=2)
    assert (built.tasks_refresh_cache, built.logging_level) == (True, "ERROR")
    assert built.thread_pool_max_workers == 2


# --- caching --------------------------------------------------------------------------------


def test_settings_are_cached_until_reload(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_profiles(home, "[profiles.default]\nFLUVIAL_THREAD_POOL_MAX_WORKERS = 3\n")
    reads = []
    real_read = _profiles.read_toml
    monkeypatch.setattr(_profiles, "read_toml", lambda p: reads.append(p) or real_read(p))

    first = get_current_settings()
    for _ in range(100):
        assert get_current_settings() is first
    assert len(reads) == 1, "get_current_settings() must not read the file on every call"

    path.write_text("[profiles.default]\nFLUVIAL_THREAD_POOL_MAX_WORKERS = 4\n")
    monkeypatch.setenv("FLUVIAL_LOGGING_LEVEL", "DEBUG")
    assert get_current_settings().thread_pool_max_workers == 3
    assert get_current_settings().logging_level == "INFO"
    with use_profile("default") as in_profile:
        assert in_profile.thread_pool_max_workers == 4
    assert get_current_settings().thread_pool_max_workers == 3
    reloaded = reload_settings()
    assert (reloaded.thread_pool_max_workers, reloaded.logging_level) == (4, "DEBUG")
    assert get_current_settings() is reloaded


def test_reload_inside_a_block_rebuilds_the_block(home: Path) -> None:
    path = write_profiles(home, "[profiles.default]\nFLUVIAL_THREAD_POOL_MAX_WORKERS = 3\n")
    with temporary_settings(logging_level="DEBUG"):
        path.write_text("[profiles.default]\nFLUVIAL_THREAD_POOL_MAX_WORKERS = 4\n")
        assert get_current_settings().thread_pool_max_workers == 3
        current = reload_settings()
        assert (current.thread_pool_max_workers, current.logging_level) == (4, "DEBUG")
    assert get_current_settings().logging_level == "INFO"


def test_writes_through_the_api_are_seen_at_once() -> None:
    assert get_current_settings().results_persist_by_default is False
    update_profile("default", results_persist_by_default=True)
    assert get_current_settings().results_persist_by_default is True
    create_profile("ci")
    update_profile("ci", FLUVIAL_LOGGING_LEVEL="error")
    set_active_profile("ci")
    assert get_current_settings().logging_level == "ERROR"


# --- temporary_settings and use_profile -----------------------------------------------------


def test_temporary_settings_accepts_field_and_env_names() -> None:
    with temporary_settings(
        updates={"FLUVIAL_TASKS_REFRESH_CACHE": True}, thread_pool_max_workers=2
    ) as current:
        assert current is get_current_settings()
        assert (current.tasks_refresh_cache, current.thread_pool_max_workers) == (True, 2)
    assert get_current_settings().tasks_refresh_cache is False


def test_temporary_settings_nest_and_restore() -> None:
    with temporary_settings(thread_pool_max_workers=2, logging_level="DEBUG"):
        with temporary_settings(thread_pool_max_workers=3) as inner:
            assert (inner.thread_pool_max_workers, inner.logging_level) == (3, "DEBUG")
        outer = get_current_settings()
        assert (outer.thread_pool_max_workers, outer.logging_level) == (2, "DEBUG")
    assert get_current_settings().thread_pool_max_workers == 64


def test_temporary_settings_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigurationError, match="did you mean FLUVIAL_LOGGING_LEVEL"):
        temporary_settings(loging_level="DEBUG")


def test_temporary_settings_restore_after_an_exception() -> None:
    with pytest.raises(KeyError), temporary_settings(thread_pool_max_workers=2):
        raise KeyError("boom")
    assert get_current_settings().thread_pool_max_workers == 64


def test_temporary_home_moves_the_profiles_file(tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    write_profiles(other, '[profiles.default]\nFLUVIAL_LOGGING_LEVEL = "ERROR"\n')
    with temporary_settings(home=other) as current:
        assert current.logging_level == "ERROR"
        assert load_profiles().profiles["default"] == {"FLUVIAL_LOGGING_LEVEL": "ERROR"}
    assert get_current_settings().logging_level == "INFO"


def test_use_profile(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_profiles(
        home,
        """
        [profiles.default]
        [profiles.ci]
        FLUVIAL_LOGGING_LEVEL = "ERROR"
        FLUVIAL_THREAD_POOL_MAX_WORKERS = 2
        """,
    )
    monkeypatch.setenv("FLUVIAL_THREAD_POOL_MAX_WORKERS", "9")
    reload_settings()
    with temporary_settings(tasks_refresh_cache=True), use_profile("ci") as current:
        assert current.logging_level == "ERROR"
        assert current.thread_pool_max_workers == 9, "the environment still wins"
        assert current.tasks_refresh_cache is True, "outer overrides still win"
        with temporary_settings(logging_level="DEBUG") as inner:
            assert setting_sources()["thread_pool_max_workers"] == "env"
            assert inner.logging_level == "DEBUG"
        assert get_current_settings().logging_level == "ERROR"
    assert get_current_settings().logging_level == "INFO"
    with pytest.raises(ConfigurationError, match=r"no profile named 'prod'.*'default', 'ci'"):
        with use_profile("prod"):
            pass


def test_temporary_settings_are_per_thread() -> None:
    barrier = threading.Barrier(4)
    seen: dict[int, int] = {}

    def worker(index: int) -> None:
        with temporary_settings(thread_pool_max_workers=index + 1):
            barrier.wait()
            seen[index] = get_current_settings().thread_pool_max_workers
            barrier.wait()

    with temporary_settings(thread_pool_max_workers=50):
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert get_current_settings().thread_pool_max_workers == 50
    assert seen == {0: 1, 1: 2, 2: 3, 3: 4}

    outside: list[int] = []
    with temporary_settings(thread_pool_max_workers=50):
        thread = threading.Thread(
            target=lambda: outside.append(get_current_settings().thread_pool_max_workers)
        )
        thread.start()
        thread.join()
    assert outside == [64], "a new thread starts from the process-wide settings"


@pytest.mark.anyio
async def test_temporary_settings_are_per_asyncio_task() -> None:
    async def worker(level: str) -> str:
        with temporary_settings(logging_level=level):
            await asyncio.sleep(0.01)
            return get_current_settings().logging_level

    levels = await asyncio.gather(worker("DEBUG"), worker("ERROR"), worker("WARNING"))
    assert levels == ["DEBUG", "ERROR", "WARNING"]
    assert get_current_settings().logging_level == "INFO"


# --- errors in the profiles file ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("active = [\n", "is not valid TOML"),
        (
            '[profiles.default]\nFLUVIAL_LOGING_LEVEL = "DEBUG"\n',
            "did you mean FLUVIAL_LOGGING_LEVEL",
        ),
        ('[profiles.default]\nlogging_level = "DEBUG"\n', "must be written FLUVIAL_LOGGING_LEVEL"),
        ('[profiles.default]\nFLUVIAL_HOME = "/x"\n', "FLUVIAL_HOME cannot be set"),
        ("[profiles.default]\nFLUVIAL_PROFILE = 'x'\n", "FLUVIAL_PROFILE picks a profile"),
        ("[profiles.default]\nFLUVIAL_THREAD_POOL_MAX_WORKERS = [1]\n", "got list"),
        ("[profiles.default.nested]\nx = 1\n", "got dict"),
        ("active = 3\n", "'active' in"),
        ("colour = 'blue'\n", "unknown top-level key 'colour'"),
        ("profiles = 3\n", "'profiles' is not a table"),
        ("[profiles]\ndefault = 3\n", "profiles.default in"),
    ],
)
def test_broken_profiles_files_name_the_file(home: Path, text: str, fragment: str) -> None:
    path = write_profiles(home, text)
    with pytest.raises(ConfigurationError, match=fragment) as info:
        reload_settings()
    assert str(path) in str(info.value)


def test_a_bad_value_in_a_profile_names_its_source(home: Path) -> None:
    path = write_profiles(home, "[profiles.default]\nFLUVIAL_THREAD_POOL_MAX_WORKERS = 0\n")
    with pytest.raises(ConfigurationError) as info:
        reload_settings()
    message = str(info.value)
    assert "FLUVIAL_THREAD_POOL_MAX_WORKERS=0" in message
    assert f"from profile 'default' of {path}" in message


def test_a_bad_environment_value_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUVIAL_LOGGING_SETUP", "sometimes")
    with pytest.raises(ConfigurationError, match="FLUVIAL_LOGGING_SETUP='sometimes' .from the env"):
        reload_settings()


def test_other_profiles_may_be_broken(home: Path) -> None:
    write_profiles(home, "[profiles.default]\n[profiles.typo]\nFLUVIAL_NOPE = 1\n")
    assert reload_settings().thread_pool_max_workers == 64
    with pytest.raises(ConfigurationError, match="FLUVIAL_NOPE"):
        with use_profile("typo"):
            pass


# --- editing profiles -----------------------------------------------------------------------


def test_load_profiles_without_a_file() -> None:
    collection = load_profiles()
    assert collection == ProfilesCollection(active="default", profiles={"default": {}})


def test_profile_editing_round_trip(home: Path) -> None:
    assert create_profile("ci") == {}
    assert update_profile("ci", logging_level="debug", FLUVIAL_TASKS_REFRESH_CACHE="true") == {
        "FLUVIAL_LOGGING_LEVEL": "DEBUG",
        "FLUVIAL_TASKS_REFRESH_CACHE": True,
    }
    assert create_profile("ci-copy", from_="ci") == load_profiles().profiles["ci"]
    set_active_profile("ci-copy")
    update_profile("ci-copy", logging_level=None)
    delete_profile("ci")

    raw = tomllib.loads((home / "profiles.toml").read_text())
    assert raw == {
        "active": "ci-copy",
        "profiles": {"default": {}, "ci-copy": {"FLUVIAL_TASKS_REFRESH_CACHE": True}},
    }


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        (lambda: create_profile("default"), "already exists"),
        (lambda: create_profile("x", from_="nope"), "no profile named 'nope'"),
        (lambda: create_profile(" padded"), "not a usable profile name"),
        (lambda: set_active_profile("nope"), "known profiles: 'default'"),
        (lambda: delete_profile("default"), "is the active profile"),
        (lambda: delete_profile("nope"), "no profile named 'nope'"),
        (lambda: update_profile("nope", logging_level="DEBUG"), "no profile named 'nope'"),
        (lambda: update_profile("default", logging_level="LOUD"), "not a logging level"),
        (lambda: update_profile("default", bogus=1), "unknown setting 'bogus'"),
        (lambda: update_profile("default", FLUVIAL_HOME="/x"), "FLUVIAL_HOME cannot be set"),
        (lambda: update_profile("default", results_default_storage=""), "empty value"),
        (lambda: update_profile("default", logging_level=None), "is not set in profile"),
    ],
)
def test_profile_editing_errors_write_nothing(home: Path, action: object, fragment: str) -> None:
    save_profiles(ProfilesCollection())
    before = (home / "profiles.toml").read_bytes()
    with pytest.raises(ConfigurationError, match=fragment):
        action()  # type: ignore[operator]
    assert (home / "profiles.toml").read_bytes() == before


def test_update_profile_validates_all_values_before_writing(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="THREAD_POOL"):
        update_profile("default", logging_level="DEBUG", thread_pool_max_workers=0)
    assert load_profiles().profiles["default"] == {}


def test_update_profile_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUVIAL_THREAD_POOL_MAX_WORKERS", "not a number")
    assert update_profile("default", logging_level="ERROR") == {"FLUVIAL_LOGGING_LEVEL": "ERROR"}


def test_an_unknown_key_can_be_removed(home: Path) -> None:
    write_profiles(home, "[profiles.default]\nFLUVIAL_NOPE = 1\n")
    with pytest.raises(ConfigurationError):
        reload_settings()
    update_profile("default", FLUVIAL_NOPE=None)
    assert reload_settings().thread_pool_max_workers == 64


def test_concurrent_edits_in_one_process_are_all_kept() -> None:
    threads = [threading.Thread(target=create_profile, args=(f"p{i}",)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(load_profiles().names) == sorted(["default", *(f"p{i}" for i in range(16))])


# --- writing the file -----------------------------------------------------------------------

_names = st.text(min_size=1).filter(
    lambda s: s == s.strip() and not any(c < " " or c == "\x7f" for c in s)
)
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
)


@settings(max_examples=200, deadline=None)
@given(
    active=_names,
    profiles=st.dictionaries(_names, st.dictionaries(st.text(), _scalars, max_size=4), max_size=4),
)
def test_written_files_read_back_equal(
    tmp_path_factory: pytest.TempPathFactory, active: str, profiles: dict[str, dict[str, object]]
) -> None:
    path = tmp_path_factory.mktemp("toml") / "profiles.toml"
    save_profiles(ProfilesCollection(active, profiles), path)  # type: ignore[arg-type]
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert (raw["active"], raw.get("profiles", {})) == (active, profiles)


def test_awkward_names_and_values_round_trip(home: Path) -> None:
    profiles = {
        "default": {},
        'with "quotes" and.dots': {"FLUVIAL_RESULTS_DEFAULT_STORAGE": 'C:\\dir\\"x"\n\t\x00'},
        "ünïcode 🌊": {"FLUVIAL_THREAD_POOL_MAX_WORKERS": 8, "key with space": 1.5e300},
    }
    save_profiles(ProfilesCollection("default", profiles))  # type: ignore[arg-type]
    assert load_profiles() == ProfilesCollection("default", profiles)  # type: ignore[arg-type]


def test_unwritable_values_are_refused(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot write"):
        save_profiles(ProfilesCollection("default", {"default": {"X": [1]}}))  # type: ignore[dict-item]
    assert not (home / "profiles.toml").exists()


def test_save_is_atomic_under_concurrent_writers(home: Path) -> None:
    path = home / "profiles.toml"
    save_profiles(ProfilesCollection())
    written = {
        f"writer{i}": {f"FLUVIAL_KEY_{j}": "x" * (i * 500 + j) for j in range(20)} for i in range(8)
    }
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for _ in range(25):
                save_profiles(ProfilesCollection(name, {name: written[name]}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in written]
    for thread in threads:
        thread.start()
    reads = 0
    while any(thread.is_alive() for thread in threads):
        data = path.read_bytes()
        assert data, "a reader saw an empty file"
        parsed = tomllib.loads(data.decode())
        assert parsed["profiles"] in ({"default": {}}, *({n: v} for n, v in written.items()))
        reads += 1
    for thread in threads:
        thread.join()
    assert not errors
    assert reads > 10, "the reader should have raced the writers"
    assert [p.name for p in home.iterdir()] == ["profiles.toml"], "temporary files were left"


def test_a_failed_write_keeps_the_old_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_profiles(ProfilesCollection())
    before = (home / "profiles.toml").read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ConfigurationError, match="cannot write profiles file .*read-only"):
        update_profile("default", logging_level="DEBUG")
    assert (home / "profiles.toml").read_bytes() == before
    assert [p.name for p in home.iterdir()] == ["profiles.toml"]


def test_file_permissions(home: Path) -> None:
    save_profiles(ProfilesCollection())
    path = home / "profiles.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a new file is private to its owner"
    path.chmod(0o644)
    update_profile("default", logging_level="DEBUG")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644, "an existing file keeps its mode"


# --- import cost ----------------------------------------------------------------------------


def test_import_fluvial_reads_no_settings(home: Path) -> None:
    write_profiles(home, "this is not toml")
    script = textwrap.dedent(
        """
        import sys
        import fluvial
        print(sorted(m for m in sys.modules
                     if m.split(".")[0] in ("pydantic", "pydantic_settings", "tomllib")
                     or m.startswith("fluvial.settings") or m == "fluvial.cli"))
        import fluvial.settings  # importable on its own, and reads nothing at import either
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "FLUVIAL_HOME": str(home)},
    )
    assert result.stdout.split("\n")[:2] == ["[]", "ok"], result.stdout + result.stderr


def test_public_names_are_documented() -> None:
    module = fluvial.settings
    assert module.__doc__
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"fluvial.settings.{name} has no docstring"
