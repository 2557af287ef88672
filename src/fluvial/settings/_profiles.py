"""Named profiles in ``<home>/profiles.toml``: reading, choosing, validating and editing them.

The file looks like Prefect's::

    active = "default"

    [profiles.default]
    FLUVIAL_RESULTS_PERSIST_BY_DEFAULT = true

    [profiles.ci]
    FLUVIAL_LOGGING_LEVEL = "DEBUG"

A missing file reads as one empty ``default`` profile, and an ``active = "default"`` with no such
table means an empty one. Loading a file checks its shape only, so a profile with a mistake can
still be listed and repaired; the keys and values of a profile are checked when settings are read
from it (and when they are written through :func:`update_profile`).
"""

from __future__ import annotations

__all__ = (
    "ProfileSelection",
    "ProfileSettingsSource",
    "ProfilesCollection",
    "create_profile",
    "delete_profile",
    "effective_profile_name",
    "load_profiles",
    "resolve_profiles_path",
    "save_profiles",
    "select_profile",
    "set_active_profile",
    "update_profile",
    "validate_profile_values",
)

import copy
import os
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_settings import PydanticBaseSettingsSource

from ..exceptions import ConfigurationError
from . import _state
from ._model import (
    NOT_IN_PROFILES,
    SettingsValues,
    default_profiles_path,
    env_name,
    env_value,
    expand_path,
    field_name,
    not_in_profiles_error,
)
from ._toml import Scalar, dump_profiles, read_toml, write_atomic

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

DEFAULT_PROFILE = "default"
PROFILE_ENV = "FLUVIAL_PROFILE"

# Serializes read-modify-write of the profiles file within this process.
_write_lock = threading.RLock()


@dataclass
class ProfilesCollection:
    """The profiles file's content: the active profile's name and each profile's settings.

    ``profiles`` maps a profile name to ``{env-var name: value}``, as written in the file.
    """

    active: str = DEFAULT_PROFILE
    profiles: dict[str, dict[str, Scalar]] = field(default_factory=lambda: {DEFAULT_PROFILE: {}})

    @property
    def names(self) -> list[str]:
        """The profile names, in file order."""
        return list(self.profiles)

    def profile(self, name: str, path: Path | None = None) -> dict[str, Scalar]:
        """Return the settings of the profile *name*.

        Raises:
            ConfigurationError: there is no such profile; the message lists the known ones.
        """
        try:
            return self.profiles[name]
        except KeyError:
            where = f" in {path}" if path is not None else ""
            known = ", ".join(repr(n) for n in self.profiles) or "none"
            raise ConfigurationError(
                f"no profile named {name!r}{where}; known profiles: {known}"
            ) from None


def resolve_profiles_path(overrides: Mapping[str, Any] | None = None) -> Path:
    """Return the profiles file for *overrides* (default: the current context's) and the env.

    Only ``profiles_path`` and ``home`` matter, so this never needs the rest of the settings and
    works while a profile holds a mistake.
    """
    if overrides is None:
        layer = _state.current_layer.get()
        overrides = layer.overrides if layer is not None else {}
    explicit = overrides.get("profiles_path") or env_value("profiles_path")
    if explicit:
        return expand_path(explicit)
    return default_profiles_path(overrides.get("home") or env_value("home") or "~/.fluvial")


def _parse(path: Path, data: dict[str, Any]) -> ProfilesCollection:
    active = data.get("active", DEFAULT_PROFILE)
    if not isinstance(active, str) or not active:
        raise ConfigurationError(f"'active' in {path} must be a profile name, got {active!r}")
    tables = data.get("profiles", {})
    unknown = sorted(set(data) - {"active", "profiles"})
    if unknown or not isinstance(tables, dict):
        what = f"unknown top-level key {unknown[0]!r}" if unknown else "'profiles' is not a table"
        raise ConfigurationError(
            f"{what} in {path}; the file holds 'active = \"<name>\"' and [profiles.<name>] tables"
        )
    profiles: dict[str, dict[str, Scalar]] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigurationError(f"profiles.{name} in {path} must be a table")
        for key, value in table.items():
            if not isinstance(value, str | int | float):
                raise ConfigurationError(
                    f"{key} in profile {name!r} of {path} must be a string, boolean or number, "
                    f"got {type(value).__name__}"
                )
        profiles[name] = dict(table)
    if active == DEFAULT_PROFILE:
        profiles.setdefault(DEFAULT_PROFILE, {})
    return ProfilesCollection(active=active, profiles=profiles)


def load_profiles(path: Path | None = None) -> ProfilesCollection:
    """Read the profiles file (default: the current profiles path).

    A missing file gives one empty ``default`` profile.

    Raises:
        ConfigurationError: the file is not valid TOML or not shaped like a profiles file.
    """
    path = path if path is not None else resolve_profiles_path()
    data = read_toml(path)
    return ProfilesCollection() if data is None else _parse(path, data)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ConfigurationError(f"{name!r} is not a usable profile name")
    if any(char < " " or char == "\x7f" for char in name):
        raise ConfigurationError(
            f"{name!r} is not a usable profile name: it has control characters"
        )


def save_profiles(collection: ProfilesCollection, path: Path | None = None) -> None:
    """Write *collection* to the profiles file atomically and make current settings re-read it.

    Raises:
        ConfigurationError: a name or value cannot be written, or the file cannot be written.
    """
    path = path if path is not None else resolve_profiles_path()
    for name in (collection.active, *collection.profiles):
        _check_name(name)
    text = dump_profiles(collection.active, collection.profiles)
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ConfigurationError(f"cannot write profiles file {path}: {exc}") from None
    _state.invalidate()


def effective_profile_name(collection: ProfilesCollection) -> str:
    """Return the profile in effect here: ``use_profile``'s, else ``FLUVIAL_PROFILE``, else active."""
    layer = _state.current_layer.get()
    if layer is not None and layer.profile is not None:
        return layer.profile
    return os.environ.get(PROFILE_ENV) or collection.active


def _error_text(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    return "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in errors)


def validate_profile_values(values: Mapping[str, Any], where: str = "") -> dict[str, Scalar]:
    """Return *values* keyed by env-var name, each validated and in the form a profile stores.

    Keys may be env-var names or field names; *where* names the profile in messages.

    Raises:
        ConfigurationError: a key names no setting, names one a profile cannot set, or its value
            is not valid for the setting.
    """
    out: dict[str, Scalar] = {}
    for key, value in values.items():
        name = field_name(key, where)
        if name in NOT_IN_PROFILES:
            raise not_in_profiles_error(name, where)
        try:
            model = SettingsValues.model_validate({name: value})
        except ValidationError as exc:
            raise ConfigurationError(
                f"invalid value {value!r} for {env_name(name)}{where}: {_error_text(exc)}"
            ) from None
        stored = model.model_dump(mode="json")[name]
        if stored is None:
            raise ConfigurationError(
                f"empty value for {env_name(name)}{where}; to remove it from the profile, "
                f"use 'fluvial config unset {env_name(name)}'"
            )
        out[env_name(name)] = stored
    return out


@dataclass(frozen=True)
class ProfileSelection:
    """The profile that settings are read from, and its values keyed by field name."""

    path: Path
    name: str
    values: Mapping[str, Any]


def select_profile(overrides: Mapping[str, Any], profile: str | None) -> ProfileSelection:
    """Read the profile that applies to *overrides* and *profile* and check its keys.

    Raises:
        ConfigurationError: the file is broken, the profile does not exist, or it sets an unknown
            setting.
    """
    path = resolve_profiles_path(overrides)
    collection = load_profiles(path)
    name = profile or os.environ.get(PROFILE_ENV) or collection.active
    table = collection.profile(name, path)
    where = f" in profile {name!r} of {path}"
    values: dict[str, Any] = {}
    for key, value in table.items():
        field = field_name(key, where)
        if key != env_name(field):
            raise ConfigurationError(f"{key!r}{where} must be written {env_name(field)}")
        if field in NOT_IN_PROFILES:
            raise not_in_profiles_error(field, where)
        values[field] = value
    return ProfileSelection(path=path, name=name, values=values)


# Set by the builder in _current for the duration of one FluvialSettings(...) call, so that the
# source uses the selection the builder already read rather than reading the file again.
building: ContextVar[ProfileSelection | None] = ContextVar(
    "fluvial.settings.building", default=None
)


class ProfileSettingsSource(PydanticBaseSettingsSource):
    """The settings source of the active profile, below environment variables."""

    def __init__(self, settings_cls: type[Any], init_kwargs: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._init_kwargs = init_kwargs

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads the whole profile at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Return the active profile's values, keyed by field name."""
        selection = building.get()
        if selection is None:
            layer = _state.current_layer.get()
            selection = select_profile(self._init_kwargs, layer.profile if layer else None)
        return dict(selection.values)


def _edit(path: Path | None = None) -> tuple[Path, ProfilesCollection]:
    path = path if path is not None else resolve_profiles_path()
    return path, load_profiles(path)


def set_active_profile(name: str) -> None:
    """Make *name* the active profile in the profiles file.

    Raises:
        ConfigurationError: there is no such profile.
    """
    with _write_lock:
        path, collection = _edit()
        collection.profile(name, path)
        collection.active = name
        save_profiles(collection, path)


def create_profile(name: str, from_: str | None = None) -> dict[str, Scalar]:
    """Add the profile *name*, empty or with a copy of *from_*'s settings, and return them.

    Raises:
        ConfigurationError: *name* exists already or *from_* does not exist.
    """
    _check_name(name)
    with _write_lock:
        path, collection = _edit()
        if name in collection.profiles:
            raise ConfigurationError(f"profile {name!r} already exists in {path}")
        values = copy.deepcopy(collection.profile(from_, path)) if from_ is not None else {}
        collection.profiles[name] = values
        save_profiles(collection, path)
        return dict(values)


def update_profile(name: str, **settings: Any) -> dict[str, Scalar]:
    """Set (or, with ``None``, remove) settings of profile *name* and return its settings.

    Keys are env-var names (``FLUVIAL_LOGGING_LEVEL``) or field names (``logging_level``);
    values are validated first, and nothing is written if one is invalid.

    Raises:
        ConfigurationError: no such profile, an unknown setting, or an invalid value.
    """
    with _write_lock:
        path, collection = _edit()
        table = collection.profile(name, path)
        where = f" in profile {name!r}"
        removals = [k for k, v in settings.items() if v is None]
        updates = validate_profile_values(
            {k: v for k, v in settings.items() if v is not None}, where
        )
        for key in removals:
            _remove_key(table, key, name)
        table.update(updates)
        save_profiles(collection, path)
        return dict(table)


def _remove_key(table: dict[str, Scalar], key: str, profile: str) -> None:
    # A key the profile holds is removed as written, even an unknown one: that is how a mistake
    # in the file gets repaired.
    if key in table:
        del table[key]
        return
    name = env_name(field_name(key))
    if name not in table:
        raise ConfigurationError(f"{name} is not set in profile {profile!r}")
    del table[name]


def delete_profile(name: str) -> None:
    """Remove the profile *name*; the active profile cannot be removed.

    Raises:
        ConfigurationError: no such profile, or it is the active one.
    """
    with _write_lock:
        path, collection = _edit()
        collection.profile(name, path)
        if name == collection.active:
            raise ConfigurationError(
                f"profile {name!r} is the active profile; make another one active first "
                "('fluvial profile use OTHER')"
            )
        del collection.profiles[name]
        save_profiles(collection, path)
