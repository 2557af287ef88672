"""fluvial's settings and profiles (Prefect's ``prefect.settings``).

Every setting has a field on :class:`FluvialSettings` and an environment variable
``FLUVIAL_<FIELD>``. Values come from, highest first:

1. overrides of :func:`temporary_settings`,
2. environment variables (``FLUVIAL_RESULTS_PERSIST_BY_DEFAULT=true``),
3. the active profile in ``<FLUVIAL_HOME>/profiles.toml`` (``FLUVIAL_PROFILE`` or
   :func:`use_profile` pick another one than the file's ``active``),
4. the defaults.

Settings are read when a run asks for them (:func:`get_current_settings`), never when fluvial is
imported; ``import fluvial`` does not import this module. The ``fluvial profile`` and
``fluvial config`` commands show and edit profiles from a shell.
"""

from __future__ import annotations

__all__ = (
    "FluvialSettings",
    "ProfilesCollection",
    "create_profile",
    "delete_profile",
    "get_current_settings",
    "load_profiles",
    "reload_settings",
    "save_profiles",
    "set_active_profile",
    "setting_sources",
    "temporary_settings",
    "update_profile",
    "use_profile",
)

from ._current import (
    get_current_settings,
    reload_settings,
    setting_sources,
    temporary_settings,
    use_profile,
)
from ._model import FluvialSettings
from ._profiles import (
    ProfilesCollection,
    create_profile,
    delete_profile,
    load_profiles,
    save_profiles,
    set_active_profile,
    update_profile,
)
