"""The settings model: every setting, its type, default, environment variable and meaning.

Each field ``name`` is read from the environment variable ``FLUVIAL_<NAME>``, and a profile sets it
with the same key. The sources, highest first, are the explicit overrides of
:func:`~fluvial.settings.temporary_settings`, environment variables, the active profile, and the
defaults below.
"""

from __future__ import annotations

__all__ = (
    "ENV_PREFIX",
    "NOT_IN_PROFILES",
    "FluvialSettings",
    "SettingsValues",
    "default_profiles_path",
    "env_name",
    "env_value",
    "expand_path",
    "field_name",
    "not_in_profiles_error",
)

import difflib
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..exceptions import ConfigurationError

ENV_PREFIX = "FLUVIAL_"

#: Settings that decide where profiles are read from, so a profile cannot set them.
NOT_IN_PROFILES = frozenset({"home", "profiles_path"})

_DEFAULT_HOME = "~/.fluvial"


def expand_path(value: str | os.PathLike[str]) -> Path:
    """Return *value* as an absolute path with ``~`` expanded."""
    return Path(value).expanduser().absolute()


def default_profiles_path(home: str | os.PathLike[str]) -> Path:
    """Return where profiles live when ``FLUVIAL_PROFILES_PATH`` is not set."""
    return expand_path(home) / "profiles.toml"


class SettingsValues(BaseModel):
    """The fields of :class:`FluvialSettings` and their validation, without any source.

    Checking one value (for a profile) validates it with this model, which reads nothing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    home: Path = Field(
        default=Path(_DEFAULT_HOME),
        description="fluvial's directory: profiles and the default result storage live here.",
    )
    profiles_path: Path | None = Field(
        default=None,
        description="The profiles file; unset means <home>/profiles.toml.",
    )
    results_default_storage: str | None = Field(
        default=None,
        description=(
            "Where persisted results go when a flow or task names no result_storage: an fsspec "
            "URL (s3://bucket/prefix, memory://x, file:///...) or a local path. Unset means "
            "<home>/storage."
        ),
    )
    results_default_serializer: str = Field(
        default="pickle",
        min_length=1,
        description="The serializer used when none is named: pickle, json, compressed/pickle, ...",
    )
    results_persist_by_default: bool = Field(
        default=False,
        description="Persist every task and flow result unless persist_result=False says not to.",
    )
    results_journal: bool = Field(
        default=True,
        description=(
            "Record each run of a flow that persists results in the run journal next to its "
            "results (what fluvial runs and resume read); false records nothing."
        ),
    )
    tasks_default_persist_result: bool | None = Field(
        default=None,
        description=(
            "Whether tasks persist their results when the task itself does not say; unset "
            "means inherit from the flow (Prefect's PREFECT_TASKS_DEFAULT_PERSIST_RESULT)."
        ),
    )
    tasks_refresh_cache: bool = Field(
        default=False,
        description="Ignore cached results and run every cached task again, refreshing its cache.",
    )
    tasks_unhashable_inputs: Literal["warn", "error"] = Field(
        default="warn",
        description=(
            "What an input that cannot be hashed into a cache key does: 'warn' runs the task "
            "uncached with a warning, 'error' fails the task run."
        ),
    )
    thread_pool_max_workers: int = Field(
        default=64,
        ge=1,
        description="Threads a ThreadPoolTaskRunner() without max_workers runs at once.",
    )
    process_pool_max_workers: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Worker processes a ProcessPoolTaskRunner() without max_workers starts at most; "
            "unset means the number of CPUs."
        ),
    )
    logging_level: str = Field(
        default="INFO",
        description="The level of the 'fluvial' logger when a run first sets up logging.",
    )
    logging_setup: bool = Field(
        default=True,
        description=(
            "Add a console handler at the first run when the application has configured no "
            "logging; false leaves logging entirely to the application."
        ),
    )
    concurrency_limits: str = Field(
        default="",
        description=(
            "Named concurrency limits, comma-separated: 'name=slots' or "
            "'name=slots@decay_per_second' (a rate limit), e.g. 'tag:database=10,api=60@1.0'. "
            "Tag limits are named 'tag:<tag>'. Limits made with fluvial.concurrency add to these."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_profiles_path(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("profiles_path") in (None, ""):
            home = data.get("home", _DEFAULT_HOME)
            if isinstance(home, str | os.PathLike):
                data = {**data, "profiles_path": default_profiles_path(home)}
        return data

    @field_validator("home", "profiles_path", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else expand_path(value)

    @field_validator("results_default_storage", mode="after")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("tasks_unhashable_inputs", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("concurrency_limits", mode="after")
    @classmethod
    def _limits_syntax(cls, value: str) -> str:
        from ..concurrency._registry import parse_limits

        parse_limits(value)  # raises ValueError naming the bad entry
        return value.strip()

    @field_validator("logging_level", mode="after")
    @classmethod
    def _level_name(cls, value: str) -> str:
        name = value.strip().upper()
        known = logging.getLevelNamesMapping()
        if name not in known:
            raise ValueError(f"not a logging level name; use one of {', '.join(sorted(known))}")
        return name


class FluvialSettings(BaseSettings, SettingsValues):
    """fluvial's settings, read from overrides, ``FLUVIAL_*`` variables, a profile and defaults.

    Instances are frozen: they are shared by every run that reads them. Get the current one with
    :func:`~fluvial.settings.get_current_settings` rather than building your own.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    @property
    def result_storage_url(self) -> str:
        """The effective default result storage: the setting, else ``<home>/storage``."""
        value = self.results_default_storage
        if value is None:
            return str(self.home / "storage")
        if value.startswith("~"):
            return str(Path(value).expanduser())
        return value

    @property
    def profiles_file(self) -> Path:
        """The profiles file, typed as a ``Path`` (``profiles_path`` is always filled in)."""
        return self.profiles_path or default_profiles_path(self.home)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Use overrides, then the environment, then the active profile (no .env, no secrets)."""
        from ._profiles import ProfileSettingsSource

        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        return init_settings, env_settings, ProfileSettingsSource(settings_cls, init_kwargs)


def env_name(field: str) -> str:
    """Return the environment variable (and profile key) of the field called *field*."""
    return ENV_PREFIX + field.upper()


def field_name(key: str, where: str = "") -> str:
    """Return the field that *key* names: an env name (``FLUVIAL_X``) or a field name (``x``).

    Raises:
        ConfigurationError: *key* names no setting; *where* says where it was found.
    """
    stripped = key.strip()
    upper = stripped.upper()
    name = upper[len(ENV_PREFIX) :].lower() if upper.startswith(ENV_PREFIX) else stripped.lower()
    if name in FluvialSettings.model_fields:
        return name
    raise ConfigurationError(f"unknown setting {key!r}{where}{_suggestion(upper)}")


def env_value(field: str) -> str | None:
    """Return the environment's non-empty value for the field *field*, as pydantic-settings reads it.

    Variable names match case-insensitively, as they do for :class:`FluvialSettings`.
    """
    name = env_name(field)
    value = os.environ.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in os.environ.items() if k.lower() == lowered), None)
    return value or None


def not_in_profiles_error(field: str, where: str = "") -> ConfigurationError:
    """Return the error for a profile that sets ``home`` or ``profiles_path``."""
    return ConfigurationError(
        f"{env_name(field)} cannot be set{where or ' in a profile'}: it decides where profiles "
        "are read from; set the environment variable instead"
    )


def _suggestion(key: str) -> str:
    if key == "FLUVIAL_PROFILE":
        return "; FLUVIAL_PROFILE picks a profile: use 'fluvial profile use NAME' or use_profile()"
    # Compare without the prefix, which every candidate shares and would make all look alike.
    wanted = key.removeprefix(ENV_PREFIX).lower()
    close = difflib.get_close_matches(wanted, list(FluvialSettings.model_fields), n=1)
    if close:
        return f"; did you mean {env_name(close[0])}?"
    known = ", ".join(env_name(name) for name in FluvialSettings.model_fields)
    return f"; known settings: {known}"
