"""The settings in effect here and now: built once, cached, and overridden per context."""

from __future__ import annotations

__all__ = (
    "current_built",
    "get_current_settings",
    "reload_settings",
    "setting_sources",
    "temporary_settings",
    "use_profile",
)

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from pydantic import ValidationError

from ..exceptions import ConfigurationError
from . import _state
from ._model import FluvialSettings, env_name, env_value, field_name
from ._profiles import ProfileSelection, building, select_profile
from ._state import Source

# The settings of code outside any temporary_settings/use_profile block.
_base: _state.Built | None = None


def _source(field: str, overrides: Mapping[str, Any], selection: ProfileSelection) -> Source:
    if field in overrides:
        return "override"
    if env_value(field) is not None:
        return "env"
    if field in selection.values:
        return "profile"
    return "default"


def _describe(exc: ValidationError, overrides: Mapping[str, Any], sel: ProfileSelection) -> str:
    labels = {
        "override": "from temporary_settings",
        "env": "from the environment",
        "profile": f"from profile {sel.name!r} of {sel.path}",
        "default": "the default",
    }
    parts = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        message = str(err["msg"]).removeprefix("Value error, ")
        if field in FluvialSettings.model_fields:
            label = labels[_source(field, overrides, sel)]
            parts.append(f"invalid {env_name(field)}={err['input']!r} ({label}): {message}")
        else:
            parts.append(f"invalid settings: {message}")
    return "; ".join(parts)


def _build(overrides: Mapping[str, Any], profile: str | None) -> _state.Built:
    generation = _state.current_generation()  # taken first: a reload during the build wins
    selection = select_profile(overrides, profile)
    token = building.set(selection)
    try:
        settings = FluvialSettings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, overrides, selection)) from None
    finally:
        building.reset(token)
    sources = {name: _source(name, overrides, selection) for name in FluvialSettings.model_fields}
    return _state.Built(settings, generation, selection.name, selection.path, sources)


def current_built() -> _state.Built:
    """Return the current settings together with their profile and sources."""
    global _base
    generation = _state.current_generation()
    layer = _state.current_layer.get()
    if layer is None:
        built = _base
        if built is None or built.generation != generation:
            built = _base = _build({}, None)
        return built
    built = layer.built
    if built is None or built.generation != generation:
        built = layer.built = _build(layer.overrides, layer.profile)
    return built


def get_current_settings() -> FluvialSettings:
    """Return the settings in effect in this context.

    The first call reads the environment and the profiles file; later calls return the same
    object until :func:`reload_settings`, a write to the profiles file through this module, or
    a :func:`temporary_settings`/:func:`use_profile` block changes what applies. A change made to
    the environment or the file by other means is seen after :func:`reload_settings`.

    Raises:
        ConfigurationError: the profiles file or a setting's value is not usable; the message
            names the setting and where its value came from.
    """
    layer = _state.current_layer.get()
    built = _base if layer is None else layer.built
    if built is not None and built.generation == _state.current_generation():
        return built.settings
    return current_built().settings


def reload_settings() -> FluvialSettings:
    """Forget every cached settings object, then read the settings again and return them."""
    _state.invalidate()
    return get_current_settings()


def setting_sources() -> dict[str, Source]:
    """Return where each current setting came from: override, env, profile or default."""
    return dict(current_built().sources)


@contextmanager
def _layer(layer: _state.Layer) -> Iterator[FluvialSettings]:
    layer.built = _build(layer.overrides, layer.profile)
    token = _state.current_layer.set(layer)
    try:
        yield layer.built.settings
    finally:
        _state.current_layer.reset(token)


def temporary_settings(
    updates: Mapping[str, Any] | None = None, **settings: Any
) -> AbstractContextManager[FluvialSettings]:
    """Override settings for the block, in this thread or asyncio task only.

    Keys are field names (``results_persist_by_default``) or env-var names
    (``FLUVIAL_RESULTS_PERSIST_BY_DEFAULT``); they win over the environment and profiles. Blocks
    nest: an inner block keeps the outer block's overrides it does not change.

    Example::

        with temporary_settings(results_persist_by_default=True):
            my_flow()

    Raises:
        ConfigurationError: a key names no setting or a value is not valid.
    """
    changes = {field_name(key): value for key, value in {**(updates or {}), **settings}.items()}
    parent = _state.current_layer.get()
    overrides = {**(parent.overrides if parent else {}), **changes}
    return _layer(_state.Layer(overrides, parent.profile if parent else None))


def use_profile(name: str) -> AbstractContextManager[FluvialSettings]:
    """Read settings from the profile *name* for the block, in this thread or task only.

    Environment variables and ``temporary_settings`` overrides still win over the profile.

    Raises:
        ConfigurationError: there is no such profile (the message lists the known ones), or it
            holds an unknown setting or a bad value.
    """
    parent = _state.current_layer.get()
    return _layer(_state.Layer(parent.overrides if parent else {}, name))
