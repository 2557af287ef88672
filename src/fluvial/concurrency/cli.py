"""What ``fluvial limit ls/create/update/delete/inspect/reset`` do, as plain functions.

The CLI runs in its own short-lived process, so its changes go where every later process reads
them: the ``concurrency_limits`` setting of a profile (the active one by default). What is
*held* is shown from this machine's cross-process table (``<FLUVIAL_HOME>/concurrency``), the
only one another process can see without a cluster; holders on a Dask or Ray cluster are shown
by :func:`fluvial.concurrency.read_limit` called in a flow on that cluster.
"""

from __future__ import annotations

__all__ = (
    "limit_create",
    "limit_delete",
    "limit_inspect",
    "limit_ls",
    "limit_reset",
    "limit_update",
)

from ..exceptions import ConcurrencyLimitNotFound, ConfigurationError
from . import ConcurrencyLimit
from ._registry import format_limits, make_spec, parse_limits, validate_name
from ._select import file_backend
from ._table import LimitSpec

_KEY = "FLUVIAL_CONCURRENCY_LIMITS"


def _profile_limits(profile: str | None) -> tuple[str, dict[str, LimitSpec]]:
    from ..settings._profiles import effective_profile_name, load_profiles

    collection = load_profiles()
    name = profile if profile is not None else effective_profile_name(collection)
    text = collection.profile(name).get(_KEY, "")
    return name, parse_limits(str(text))


def _save(profile: str, specs: dict[str, LimitSpec]) -> None:
    from ..settings import reload_settings
    from ..settings._profiles import update_profile

    update_profile(profile, **{_KEY: format_limits(specs) or None})
    reload_settings()


def _view(spec: LimitSpec) -> ConcurrencyLimit:
    held = file_backend().occupancy(spec.name)
    return ConcurrencyLimit(
        spec.name,
        spec.limit,
        spec.slot_decay_per_second,
        spec.active,
        held.active_slots,
        held.holders,
    )


def limit_ls(profile: str | None = None) -> list[ConcurrencyLimit]:
    """Return the limits of *profile* (default: active), with the slots held on this machine."""
    _, specs = _profile_limits(profile)
    return [_view(spec) for _, spec in sorted(specs.items())]


def limit_create(
    name: str,
    limit: int,
    slot_decay_per_second: float = 0.0,
    active: bool = True,
    profile: str | None = None,
) -> ConcurrencyLimit:
    """Add a limit to *profile* (``fluvial limit create NAME --limit N``).

    Raises:
        ConfigurationError: it exists already, or a value is invalid.
    """
    where, specs = _profile_limits(profile)
    if name in specs:
        raise ConfigurationError(f"concurrency limit {name!r} already exists in profile {where!r}")
    try:
        specs[name] = make_spec(name, limit, slot_decay_per_second, active)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    _save(where, specs)
    return _view(specs[name])


def limit_update(
    name: str,
    limit: int | None = None,
    slot_decay_per_second: float | None = None,
    active: bool | None = None,
    profile: str | None = None,
) -> ConcurrencyLimit:
    """Change the given fields of a limit in *profile* (``--limit``, ``--enable/--disable``).

    Raises:
        ConcurrencyLimitNotFound: the profile has no such limit.
    """
    where, specs = _profile_limits(profile)
    old = _existing(specs, name, where)
    try:
        specs[name] = make_spec(
            name,
            old.limit if limit is None else limit,
            old.slot_decay_per_second if slot_decay_per_second is None else slot_decay_per_second,
            old.active if active is None else active,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    _save(where, specs)
    return _view(specs[name])


def limit_delete(name: str, profile: str | None = None) -> None:
    """Remove a limit from *profile*.

    Raises:
        ConcurrencyLimitNotFound: the profile has no such limit.
    """
    where, specs = _profile_limits(profile)
    _existing(specs, name, where)
    del specs[name]
    _save(where, specs)


def limit_inspect(name: str, profile: str | None = None) -> ConcurrencyLimit:
    """Return one limit of *profile* with its holders on this machine (lease ids).

    Raises:
        ConcurrencyLimitNotFound: the profile has no such limit.
    """
    where, specs = _profile_limits(profile)
    return _view(_existing(specs, name, where))


def limit_reset(name: str) -> None:
    """Free every slot of *name* held through this machine's cross-process table."""
    file_backend().reset(validate_name(name))


def _existing(specs: dict[str, LimitSpec], name: str, profile: str) -> LimitSpec:
    try:
        return specs[name]
    except KeyError:
        raise ConcurrencyLimitNotFound(
            f"profile {profile!r} has no concurrency limit named {name!r}; "
            f"create it with 'fluvial limit create {name} --limit N'"
        ) from None
