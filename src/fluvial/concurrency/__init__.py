"""Named concurrency limits, rate limits and tag limits, without a server.

A limit has a name, a number of slots and optionally a ``slot_decay_per_second`` (which makes
it a rate limit). Code takes slots with :func:`fluvial.concurrency.sync.concurrency` /
:func:`~fluvial.concurrency.sync.rate_limit` (or their :mod:`fluvial.concurrency.asyncio`
twins); a task whose tag ``t`` has a limit named ``tag:t`` holds one slot of it during each
attempt. Limits are defined by the ``concurrency_limits`` setting and by the functions here,
which act on this process (and the tasks it sends to workers). See docs/concurrency.md.
"""

from __future__ import annotations

__all__ = (
    "ConcurrencyLimit",
    "create_limit",
    "create_tag_limit",
    "delete_limit",
    "delete_tag_limit",
    "list_limits",
    "read_limit",
    "read_tag_limit",
    "reset_limit",
    "update_limit",
)

from dataclasses import dataclass

from .._config import run_config
from ..exceptions import ConcurrencyLimitNotFound, ConfigurationError
from . import _registry
from ._select import current_backend, local_backend
from ._table import LimitSpec


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """A limit's definition and what is held of it in the backend for here."""

    name: str
    limit: int
    slot_decay_per_second: float
    active: bool
    active_slots: float
    holders: tuple[str, ...]


def _known() -> dict[str, LimitSpec]:
    known: dict[str, LimitSpec] = run_config().concurrency_limits.by_name
    return known


def _spec_of(name: str) -> LimitSpec:
    try:
        return _known()[name]
    except KeyError:
        raise ConcurrencyLimitNotFound(
            f"there is no concurrency limit named {name!r}; create it with create_limit()"
        ) from None


def _view(spec: LimitSpec) -> ConcurrencyLimit:
    held = current_backend().occupancy(spec.name)
    return ConcurrencyLimit(
        spec.name,
        spec.limit,
        spec.slot_decay_per_second,
        spec.active,
        held.active_slots,
        held.holders,
    )


def _apply(spec: LimitSpec) -> ConcurrencyLimit:
    _registry.define(spec.name, spec.limit, spec.slot_decay_per_second, spec.active)
    local_backend().refresh(spec)  # a raised limit lets waiters in at once
    return _view(spec)


def create_limit(
    name: str, limit: int, *, slot_decay_per_second: float = 0.0, active: bool = True
) -> ConcurrencyLimit:
    """Define the limit *name* with *limit* slots in this process.

    Raises:
        ConfigurationError: a limit of that name exists (use :func:`update_limit`), or a
            value is invalid.
    """
    if name in _known():
        raise ConfigurationError(
            f"concurrency limit {name!r} already exists; change it with update_limit()"
        )
    try:
        return _apply(
            LimitSpec(_registry.validate_name(name), limit, slot_decay_per_second, active)
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def update_limit(
    name: str,
    *,
    limit: int | None = None,
    slot_decay_per_second: float | None = None,
    active: bool | None = None,
) -> ConcurrencyLimit:
    """Change the given fields of the limit *name*.

    Raises:
        ConcurrencyLimitNotFound: there is no such limit.
    """
    old = _spec_of(name)
    try:
        return _apply(
            _registry.make_spec(
                name,
                old.limit if limit is None else limit,
                old.slot_decay_per_second
                if slot_decay_per_second is None
                else slot_decay_per_second,
                old.active if active is None else active,
            )
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def delete_limit(name: str) -> None:
    """Delete the limit *name*; code naming it afterwards is not limited by it.

    Raises:
        ConcurrencyLimitNotFound: there is no such limit.
    """
    _spec_of(name)
    _registry.undefine(name)


def read_limit(name: str) -> ConcurrencyLimit:
    """Return the limit *name* with the slots held of it now.

    Raises:
        ConcurrencyLimitNotFound: there is no such limit.
    """
    return _view(_spec_of(name))


def list_limits() -> list[ConcurrencyLimit]:
    """Return every limit defined here, by name."""
    return [_view(spec) for _, spec in sorted(_known().items())]


def reset_limit(name: str) -> None:
    """Free every slot of the limit *name* in the backend for here, whoever holds it.

    Raises:
        ConcurrencyLimitNotFound: there is no such limit.
    """
    current_backend().reset(_spec_of(name).name)


def create_tag_limit(tag: str, concurrency_limit: int) -> ConcurrencyLimit:
    """Let at most *concurrency_limit* task runs tagged *tag* run at once (limit ``tag:<tag>``)."""
    return create_limit(f"tag:{tag}", concurrency_limit)


def read_tag_limit(tag: str) -> ConcurrencyLimit:
    """Return the limit of *tag*."""
    return read_limit(f"tag:{tag}")


def delete_tag_limit(tag: str) -> None:
    """Remove the limit of *tag*."""
    delete_limit(f"tag:{tag}")
