"""``fluvial config view|show|set|unset|profiles|use``: the settings in effect, and edits to them.

``show`` is ``view``, ``profiles`` is ``fluvial profile ls`` and ``use NAME`` is
``fluvial profile use NAME``: the issue's names beside Prefect's.
"""

from __future__ import annotations

__all__ = ("app", "register")

from collections.abc import Sequence
from typing import Annotated

import typer

from ..exceptions import FluvialError
from ._app import group
from ._output import CommandError, note, out
from .profiles import collection, list_profiles, switch_profile

app = group("config", "Show settings, or change them in the active profile.")

_DEFAULTS = typer.Option("--show-defaults", help="Also show settings left at their default.")
_SOURCES = typer.Option("--show-sources", help="Say where each value came from.")


def register(root: typer.Typer) -> None:
    """Add the ``config`` group to *root*."""
    root.add_typer(app)


def _view(show_defaults: bool, show_sources: bool) -> int:
    from ..settings._current import current_built
    from ..settings._model import env_name
    from ..settings._toml import format_value

    built = current_built()
    values = built.settings.model_dump(mode="json")
    values["results_default_storage"] = built.settings.result_storage_url
    out(f"FLUVIAL_PROFILE = {format_value(built.profile)}")
    for field, value in values.items():
        source = built.sources[field]
        if source == "default" and not show_defaults:
            continue
        suffix = f"  (from {source})" if show_sources else ""
        # TOML has no null: an unset optional setting is shown as a comment.
        shown = "# unset" if value is None else format_value(value)
        out(f"{env_name(field)} = {shown}{suffix}")
    return 0


@app.command("view")
def _view_command(
    show_defaults: Annotated[bool, _DEFAULTS] = False,
    show_sources: Annotated[bool, _SOURCES] = False,
) -> int:
    """Show the settings in effect."""
    return _view(show_defaults, show_sources)


@app.command("show")
def _show_command(
    show_defaults: Annotated[bool, _DEFAULTS] = False,
    show_sources: Annotated[bool, _SOURCES] = False,
) -> int:
    """Show the settings in effect (same as 'view')."""
    return _view(show_defaults, show_sources)


def _env_notes(keys: Sequence[str]) -> None:
    from ..settings._model import env_value, field_name

    for key in keys:
        try:
            name = field_name(key)
        except FluvialError:
            continue
        if env_value(name) is not None:
            note(f"{key} is also set in the environment, which wins over the profile")


def _parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    updates: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(
                f"expected KEY=VALUE, got {pair!r}",
                hint="write each setting as NAME=VALUE, e.g. logging_level=DEBUG",
            )
        updates[key.strip()] = value
    return updates


@app.command("set")
def _set(
    pairs: Annotated[
        list[str],
        typer.Argument(metavar="KEY=VALUE...", help="KEY is FLUVIAL_NAME or the field name."),
    ],
) -> int:
    """Set settings in the active profile."""
    from ..settings import update_profile
    from ..settings._model import env_name, field_name
    from ..settings._toml import format_value

    updates = _parse_pairs(pairs)
    _, name = collection()
    table = update_profile(name, **updates)
    keys = [env_name(field_name(key)) for key in updates]
    for key in keys:
        out(f"Set {key} = {format_value(table[key])}")
    out(f"Updated profile {name!r}.")
    _env_notes(keys)
    return 0


@app.command("unset")
def _unset(
    keys: Annotated[list[str], typer.Argument(metavar="KEY...", help="Settings to remove.")],
) -> int:
    """Remove settings from the active profile."""
    from ..settings import update_profile
    from ..settings._model import env_name, field_name

    profiles, name = collection()
    table = profiles.profile(name)
    update_profile(name, **dict.fromkeys(keys))
    for key in keys:
        # A key written as in the file is removed as is, even an unknown one.
        out(f"Unset {key if key in table else env_name(field_name(key))}")
    out(f"Updated profile {name!r}.")
    return 0


@app.command("profiles")
def _profiles() -> int:
    """List profiles; '*' marks the active one (same as 'fluvial profile ls')."""
    return list_profiles()


@app.command("use")
def _use(name: Annotated[str, typer.Argument(help="The profile to make active.")]) -> int:
    """Make a profile the active one (same as 'fluvial profile use')."""
    return switch_profile(name)
