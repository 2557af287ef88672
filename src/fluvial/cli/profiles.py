"""``fluvial profile ls|create|use|delete|inspect``: the profiles in ``profiles.toml``."""

from __future__ import annotations

__all__ = ("app", "list_profiles", "register", "switch_profile")

import os
from typing import TYPE_CHECKING, Annotated

import typer

from ..exceptions import FluvialError
from ._app import group
from ._output import note, out

if TYPE_CHECKING:
    from ..settings._profiles import ProfilesCollection

app = group("profile", "List, create, switch and remove profiles.")


def register(root: typer.Typer) -> None:
    """Add the ``profile`` group to *root*."""
    root.add_typer(app)


def collection() -> tuple[ProfilesCollection, str]:
    """Return the profiles and the name of the active one."""
    from ..settings._profiles import effective_profile_name, load_profiles

    profiles = load_profiles()
    return profiles, effective_profile_name(profiles)


def list_profiles() -> int:
    """Print every profile, marking the active one with ``*``."""
    profiles, active = collection()
    for name in profiles.names:
        out(f"* {name}" if name == active else f"  {name}")
    if active not in profiles.profiles:
        note(f"the active profile {active!r} does not exist")
    return 0


def switch_profile(name: str) -> int:
    """Make *name* the active profile and say what still overrides it."""
    from ..settings import set_active_profile, use_profile

    set_active_profile(name)
    out(f"Active profile is now {name!r}.")
    chosen = os.environ.get("FLUVIAL_PROFILE")
    if chosen and chosen != name:
        note(f"FLUVIAL_PROFILE={chosen} is set and overrides the active profile in this shell")
    try:
        with use_profile(name):
            pass
    except FluvialError as exc:
        note(f"settings cannot be read from it yet: {exc}")
    return 0


@app.command("ls")
def _ls() -> int:
    """List profiles; '*' marks the active one."""
    return list_profiles()


@app.command("create")
def _create(
    name: Annotated[str, typer.Argument(help="The new profile's name.")],
    from_: Annotated[
        str | None, typer.Option("--from", metavar="OTHER", help="Copy OTHER's settings.")
    ] = None,
) -> int:
    """Create a profile."""
    from ..settings import create_profile

    create_profile(name, from_=from_)
    origin = f" from {from_!r}" if from_ else ""
    out(f"Created profile {name!r}{origin}. Switch to it with: fluvial profile use {name}")
    return 0


@app.command("use")
def _use(name: Annotated[str, typer.Argument(help="The profile to make active.")]) -> int:
    """Make a profile the active one."""
    return switch_profile(name)


@app.command("delete")
def _delete(name: Annotated[str, typer.Argument(help="The profile to remove.")]) -> int:
    """Remove a profile (not the active one)."""
    from ..settings import delete_profile

    delete_profile(name)
    out(f"Removed profile {name!r}.")
    return 0


@app.command("inspect")
def _inspect(
    name: Annotated[str | None, typer.Argument(help="Default: the active profile.")] = None,
) -> int:
    """Show a profile's settings."""
    from ..settings._profiles import resolve_profiles_path
    from ..settings._toml import format_key, format_value

    profiles, active = collection()
    name = name or active
    table = profiles.profile(name, resolve_profiles_path())
    if not table:
        out(f"Profile {name!r} is empty.")
    for key, value in table.items():
        out(f"{format_key(key)} = {format_value(value)}")
    return 0
