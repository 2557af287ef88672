"""``fluvial limit ls|inspect|create|update|enable|disable|delete|reset``: concurrency limits.

Mirrors ``prefect gcl`` (global limits) and ``prefect concurrency-limit`` (tag limits) in one
group: a tag limit is the limit named ``tag:<tag>`` (``fluvial limit create tag:db 5``), as in
the ``concurrency_limits`` setting and :mod:`fluvial.concurrency`. Definitions are written to
a profile (the active one unless ``--profile``), so every process started afterwards has them;
what is held is read from this machine's cross-process table. The work is done by the plain
functions of :mod:`fluvial.concurrency.cli`; this module parses and prints.
"""

from __future__ import annotations

__all__ = ("app", "register")

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ._app import JsonOption, group
from ._output import CommandError, console, note, out

if TYPE_CHECKING:
    from rich.table import Table

    from ..concurrency import ConcurrencyLimit

app = group("limit", "List, create, change and reset concurrency, rate and tag limits.")

_T = TypeVar("_T")
_ENV = "FLUVIAL_CONCURRENCY_LIMITS"
_NAME = typer.Argument(metavar="NAME", help="The limit's name; 'tag:<tag>' for a tag limit.")
_PROFILE = typer.Option(
    "--profile", metavar="PROFILE", help="Edit or read this profile. Default: the active one."
)
_DECAY = typer.Option(
    "--slot-decay-per-second",
    metavar="RATE",
    help="Slots freed per second (makes it a rate limit); 0 for none.",
)
_LIMIT_OPTION = typer.Option("--limit", "-l", metavar="N", help="Number of slots.")

ProfileOption = Annotated[str | None, _PROFILE]


def register(root: typer.Typer) -> None:
    """Add the ``limit`` group to *root*."""
    root.add_typer(app)


def _checked(call: Callable[[], _T]) -> _T:
    """Run *call*; an unknown limit becomes one error line plus the hint its message carries."""
    from ..exceptions import ConcurrencyLimitNotFound

    try:
        return call()
    except ConcurrencyLimitNotFound as exc:
        message, _, hint = str(exc).partition("; ")
        raise CommandError(message, hint=hint or "see the limits with 'fluvial limit ls'") from None


def _profile_name(profile: str | None) -> str:
    from ..settings._profiles import effective_profile_name, load_profiles

    return profile if profile is not None else effective_profile_name(load_profiles())


def _warn_overridden() -> None:
    # The environment variable replaces the profile's value in every process that inherits it.
    if os.environ.get(_ENV) is not None:
        note(f"{_ENV} is set here and replaces the profile's limits in processes started from here")


def _held(limit: ConcurrencyLimit) -> str:
    return f"{limit.active_slots:g}" if limit.active_slots else "0"


def _describe(limit: ConcurrencyLimit) -> str:
    rate = f", {limit.slot_decay_per_second:g} slot(s) freed per second" * bool(
        limit.slot_decay_per_second
    )
    return f"{limit.name!r} ({limit.limit} slot(s){rate}{'' if limit.active else ', disabled'})"


def _as_json(limit: ConcurrencyLimit, profile: str) -> dict[str, Any]:
    data = dataclasses.asdict(limit)
    data["holders"] = list(limit.holders)
    data["profile"] = profile
    return data


def _dump_json(value: Any) -> None:
    import orjson

    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def _table(limits: list[ConcurrencyLimit], profile: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"Concurrency limits in profile {profile!r}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("name", overflow="fold", min_width=12)
    for column in ("slots", "held here", "decay/s", "holders"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("active", no_wrap=True)
    for limit in limits:
        table.add_row(
            limit.name,
            str(limit.limit),
            _held(limit),
            f"{limit.slot_decay_per_second:g}" if limit.slot_decay_per_second else "-",
            str(len(limit.holders)),
            "yes" if limit.active else "no",
        )
    return table


@app.command("ls")
def _ls(profile: ProfileOption = None, as_json: JsonOption = False) -> int:
    """List the limits of a profile, with the slots held on this machine."""
    from ..concurrency.cli import limit_ls

    where = _profile_name(profile)
    limits = limit_ls(where)
    if as_json:
        _dump_json([_as_json(limit, where) for limit in limits])
        return 0
    if limits:
        console().print(_table(limits, where))
    else:
        out(f"No concurrency limits in profile {where!r}.")
    _warn_overridden()
    return 0


@app.command("inspect")
def _inspect(
    name: Annotated[str, _NAME], profile: ProfileOption = None, as_json: JsonOption = False
) -> int:
    """Show one limit and who holds its slots on this machine (lease ids)."""
    from ..concurrency.cli import limit_inspect

    where = _profile_name(profile)
    limit = _checked(lambda: limit_inspect(name, where))
    if as_json:
        _dump_json(_as_json(limit, where))
        return 0
    out(f"{_describe(limit)} in profile {where!r}")
    out(f"held on this machine: {_held(limit)} of {limit.limit}")
    for holder in limit.holders:
        out(f"  {holder}")
    return 0


def _slots(limit: int | None, option: int | None) -> int:
    if limit is not None and option is not None and limit != option:
        raise CommandError(
            f"two slot counts given: {limit} and --limit {option}", hint="give one of them"
        )
    slots = limit if limit is not None else option
    if slots is None:
        raise CommandError(
            "no slot count given", hint="give it after the name or as --limit N, e.g. 'tag:db 5'"
        )
    return slots


@app.command("create")
def _create(
    name: Annotated[str, _NAME],
    limit: Annotated[
        int | None, typer.Argument(metavar="[LIMIT]", help="Number of slots (or --limit N).")
    ] = None,
    limit_option: Annotated[int | None, _LIMIT_OPTION] = None,
    decay: Annotated[float, _DECAY] = 0.0,
    disable: Annotated[
        bool, typer.Option("--disable", help="Define it without enforcing it yet.")
    ] = False,
    profile: ProfileOption = None,
) -> int:
    """Create a limit: 'fluvial limit create tag:db 5', 'fluvial limit create api --limit 60
    --slot-decay-per-second 1'.
    """
    from ..concurrency.cli import limit_create
    from ..exceptions import ConfigurationError

    slots = _slots(limit, limit_option)
    where = _profile_name(profile)
    try:
        created = limit_create(name, slots, decay, not disable, where)
    except ConfigurationError as exc:
        if "already exists" not in str(exc):
            raise
        raise CommandError(
            str(exc), hint=f"change it with 'fluvial limit update {name} --limit N'"
        ) from None
    out(f"Created concurrency limit {_describe(created)} in profile {where!r}.")
    if not name.startswith("tag:"):
        note(f"tasks tagged {name!r} are limited by a limit named 'tag:{name}', not by this one")
    _warn_overridden()
    return 0


def _update(
    name: str, profile: str | None, limit: int | None, decay: float | None, active: bool | None
) -> int:
    from ..concurrency.cli import limit_update

    where = _profile_name(profile)
    changed = _checked(lambda: limit_update(name, limit, decay, active, where))
    out(f"Updated concurrency limit {_describe(changed)} in profile {where!r}.")
    _warn_overridden()
    return 0


@app.command("update")
def _update_command(
    name: Annotated[str, _NAME],
    limit: Annotated[int | None, _LIMIT_OPTION] = None,
    decay: Annotated[float | None, _DECAY] = None,
    active: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Enforce it, or stop enforcing it.")
    ] = None,
    profile: ProfileOption = None,
) -> int:
    """Change a limit's slots, slot decay or whether it is enforced."""
    if limit is None and decay is None and active is None:
        raise CommandError(
            "nothing to change",
            hint="give --limit N, --slot-decay-per-second RATE, --enable or --disable",
        )
    return _update(name, profile, limit, decay, active)


@app.command("enable")
def _enable(name: Annotated[str, _NAME], profile: ProfileOption = None) -> int:
    """Enforce a limit again."""
    return _update(name, profile, None, None, True)


@app.command("disable")
def _disable(name: Annotated[str, _NAME], profile: ProfileOption = None) -> int:
    """Keep a limit defined but stop enforcing it."""
    return _update(name, profile, None, None, False)


@app.command("delete")
def _delete(name: Annotated[str, _NAME], profile: ProfileOption = None) -> int:
    """Remove a limit from a profile."""
    from ..concurrency.cli import limit_delete

    where = _profile_name(profile)
    _checked(lambda: limit_delete(name, where))
    out(f"Removed concurrency limit {name!r} from profile {where!r}.")
    _warn_overridden()
    return 0


@app.command("reset")
def _reset(name: Annotated[str, _NAME]) -> int:
    """Free every slot of a limit held on this machine, whoever holds it."""
    from ..concurrency._registry import validate_name
    from ..concurrency._select import file_backend
    from ..concurrency.cli import limit_reset
    from ..exceptions import ConfigurationError

    try:
        validate_name(name)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    held = file_backend().occupancy(name)
    limit_reset(name)
    holders = len(held.holders)
    out(f"Freed {held.active_slots:g} slot(s) of {name!r} held by {holders} holder(s) here.")
    return 0
