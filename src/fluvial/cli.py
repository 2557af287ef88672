"""The ``fluvial`` command line: ``fluvial profile ...`` and ``fluvial config ...``.

Each command group is added by one function in :data:`COMMAND_GROUPS`, which receives the
top-level subparsers and gives each command parser a ``handler(args) -> exit code`` default; a
new group (``flow-run``, ...) is one more function in that list. Handlers import what they need
when they run, so ``fluvial --help`` stays fast.

Every error is one line on stderr and exit status 1.
"""

from __future__ import annotations

__all__ = ("COMMAND_GROUPS", "build_parser", "main")

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from .exceptions import FluvialError

if TYPE_CHECKING:
    from .settings._profiles import ProfilesCollection


class _UsageError(Exception):
    """The command line could not be parsed."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line and exit status 1."""

    def error(self, message: str) -> NoReturn:
        """Raise the usage error for :func:`main` to report."""
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _note(line: str) -> None:
    sys.stderr.write(f"note: {line}\n")


def _group(subparsers: Any, name: str, help_text: str) -> Any:
    """Add the command group *name* and return the subparsers for its commands."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=lambda _args: _print_help(parser))
    return parser.add_subparsers(title="commands", metavar="COMMAND")


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


# --- fluvial profile ------------------------------------------------------------------------


def _collection() -> tuple[ProfilesCollection, str]:
    from .settings._profiles import effective_profile_name, load_profiles

    collection = load_profiles()
    return collection, effective_profile_name(collection)


def _profile_ls(args: argparse.Namespace) -> int:
    collection, active = _collection()
    for name in collection.names:
        _out(f"* {name}" if name == active else f"  {name}")
    if active not in collection.profiles:
        _note(f"the active profile {active!r} does not exist")
    return 0


def _profile_create(args: argparse.Namespace) -> int:
    from .settings import create_profile

    create_profile(args.name, from_=args.from_)
    origin = f" from {args.from_!r}" if args.from_ else ""
    _out(
        f"Created profile {args.name!r}{origin}. Switch to it with: fluvial profile use {args.name}"
    )
    return 0


def _profile_use(args: argparse.Namespace) -> int:
    from .settings import set_active_profile, use_profile

    set_active_profile(args.name)
    _out(f"Active profile is now {args.name!r}.")
    chosen = os.environ.get("FLUVIAL_PROFILE")
    if chosen and chosen != args.name:
        _note(f"FLUVIAL_PROFILE={chosen} is set and overrides the active profile in this shell")
    try:
        with use_profile(args.name):
            pass
    except FluvialError as exc:
        _note(f"settings cannot be read from it yet: {exc}")
    return 0


def _profile_delete(args: argparse.Namespace) -> int:
    from .settings import delete_profile

    delete_profile(args.name)
    _out(f"Removed profile {args.name!r}.")
    return 0


def _profile_inspect(args: argparse.Namespace) -> int:
    from .settings._profiles import resolve_profiles_path
    from .settings._toml import format_key, format_value

    collection, active = _collection()
    name = args.name or active
    table = collection.profile(name, resolve_profiles_path())
    if not table:
        _out(f"Profile {name!r} is empty.")
    for key, value in table.items():
        _out(f"{format_key(key)} = {format_value(value)}")
    return 0


def _add_profile_commands(subparsers: Any) -> None:
    commands = _group(subparsers, "profile", "List, create, switch and remove profiles.")
    ls = commands.add_parser("ls", help="List profiles; '*' marks the active one.")
    ls.set_defaults(handler=_profile_ls)
    create = commands.add_parser("create", help="Create a profile.")
    create.add_argument("name")
    create.add_argument("--from", dest="from_", metavar="OTHER", help="copy OTHER's settings")
    create.set_defaults(handler=_profile_create)
    use = commands.add_parser("use", help="Make a profile the active one.")
    use.add_argument("name")
    use.set_defaults(handler=_profile_use)
    delete = commands.add_parser("delete", help="Remove a profile (not the active one).")
    delete.add_argument("name")
    delete.set_defaults(handler=_profile_delete)
    inspect = commands.add_parser("inspect", help="Show a profile's settings.")
    inspect.add_argument("name", nargs="?", help="default: the active profile")
    inspect.set_defaults(handler=_profile_inspect)


# --- fluvial config -------------------------------------------------------------------------


def _config_view(args: argparse.Namespace) -> int:
    from .settings._current import current_built
    from .settings._model import env_name
    from .settings._toml import format_value

    built = current_built()
    values = built.settings.model_dump(mode="json")
    values["results_default_storage"] = built.settings.result_storage_url
    _out(f"FLUVIAL_PROFILE = {format_value(built.profile)}")
    for field, value in values.items():
        source = built.sources[field]
        if source == "default" and not args.show_defaults:
            continue
        suffix = f"  (from {source})" if args.show_sources else ""
        # TOML has no null: an unset optional setting is shown as a comment.
        shown = "# unset" if value is None else format_value(value)
        _out(f"{env_name(field)} = {shown}{suffix}")
    return 0


def _env_notes(keys: Sequence[str]) -> None:
    from .settings._model import env_value, field_name

    for key in keys:
        try:
            name = field_name(key)
        except FluvialError:
            continue
        if env_value(name) is not None:
            _note(f"{key} is also set in the environment, which wins over the profile")


def _config_set(args: argparse.Namespace) -> int:
    from .settings import update_profile
    from .settings._model import env_name, field_name
    from .settings._toml import format_value

    updates: dict[str, str] = {}
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _UsageError(f"expected KEY=VALUE, got {pair!r}")
        updates[key.strip()] = value
    _, name = _collection()
    table = update_profile(name, **updates)
    keys = [env_name(field_name(key)) for key in updates]
    for key in keys:
        _out(f"Set {key} = {format_value(table[key])}")
    _out(f"Updated profile {name!r}.")
    _env_notes(keys)
    return 0


def _config_unset(args: argparse.Namespace) -> int:
    from .settings import update_profile
    from .settings._model import env_name, field_name

    collection, name = _collection()
    table = collection.profile(name)
    update_profile(name, **dict.fromkeys(args.keys))
    for key in args.keys:
        # A key written as in the file is removed as is, even an unknown one.
        _out(f"Unset {key if key in table else env_name(field_name(key))}")
    _out(f"Updated profile {name!r}.")
    return 0


def _add_config_commands(subparsers: Any) -> None:
    commands = _group(subparsers, "config", "Show settings, or change them in the active profile.")
    view = commands.add_parser("view", help="Show the settings in effect.")
    view.add_argument(
        "--show-defaults", action="store_true", help="also show settings left at their default"
    )
    view.add_argument("--show-sources", action="store_true", help="say where each value came from")
    view.set_defaults(handler=_config_view)
    set_ = commands.add_parser("set", help="Set settings in the active profile.")
    set_.add_argument(
        "pairs", nargs="+", metavar="KEY=VALUE", help="KEY is FLUVIAL_NAME or the field name"
    )
    set_.set_defaults(handler=_config_set)
    unset = commands.add_parser("unset", help="Remove settings from the active profile.")
    unset.add_argument("keys", nargs="+", metavar="KEY")
    unset.set_defaults(handler=_config_unset)


#: Functions that each add one command group to the top-level subparsers.
COMMAND_GROUPS: list[Callable[[Any], None]] = [_add_profile_commands, _add_config_commands]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``fluvial`` command with every group in :data:`COMMAND_GROUPS`."""
    from . import __version__

    parser = _Parser(
        prog="fluvial",
        description="fluvial: Prefect 3's flows and tasks, embedded. Manage settings and profiles.",
    )
    parser.add_argument("--version", action="version", version=f"fluvial {__version__}")
    parser.set_defaults(handler=lambda _args: _print_help(parser))
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    for add_group in COMMAND_GROUPS:
        add_group(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fluvial`` command with *argv* (default: ``sys.argv[1:]``); return its exit code."""
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except _UsageError as exc:
        sys.stderr.write(f"fluvial: error: {_one_line(exc)}\n")
    except (FluvialError, OSError) as exc:
        sys.stderr.write(f"error: {_one_line(exc)}\n")
    return 1


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
