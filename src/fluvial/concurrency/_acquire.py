"""What ``concurrency()`` and ``rate_limit()`` do before and after waiting, sync or async.

Names are looked up in the run config's limits (settings plus API, shipped to workers). As in
Prefect 3, an unknown limit is skipped with a warning unless ``strict=True``, inactive limits
are not enforced, a request for more slots than a limit has fails at once rather than waiting
forever, and ``rate_limit`` needs limits with slot decay. Unlike Prefect, ``strict=True`` fails
when *any* named limit is missing (Prefect only fails when all are), and the error names it.
"""

from __future__ import annotations

__all__ = ("Lease", "aacquire", "acquire", "resolve")

import logging
from dataclasses import dataclass

from .._config import run_config
from ..exceptions import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
from ._backend import Backend, SlotsTimeout
from ._select import current_backend
from ._table import LimitSpec, Mode

_logger = logging.getLogger("fluvial.concurrency")


@dataclass(frozen=True, slots=True)
class Lease:
    """Slots held in one backend; give them back with :meth:`release`."""

    backend: Backend
    id: str

    def release(self) -> None:
        """Give the slots back."""
        self.backend.release(self.id)


def resolve(names: str | list[str], occupy: int, mode: Mode, strict: bool) -> tuple[LimitSpec, ...]:
    """Return the active limits to take slots from, in name order (empty: nothing to do)."""
    wanted = [names] if isinstance(names, str) else list(names)
    if isinstance(occupy, bool) or not isinstance(occupy, int) or occupy < 1:
        raise ValueError(f"occupy must be a positive integer, got {occupy!r}")
    known = run_config().concurrency_limits.by_name
    missing = sorted({name for name in wanted if name not in known})
    if missing:
        if strict:
            raise ConcurrencySlotAcquisitionError(
                f"Concurrency limits {missing!r} must be created before acquiring slots; create "
                "them with fluvial.concurrency.create_limit(name, limit) or the "
                "FLUVIAL_CONCURRENCY_LIMITS setting"
            )
        _logger.warning("Concurrency limits %r do not exist - skipping acquisition.", missing)
    specs = tuple(known[name] for name in sorted(set(wanted) - set(missing)) if known[name].active)
    check(specs, occupy, mode)
    return specs


def check(specs: tuple[LimitSpec, ...], occupy: int, mode: Mode) -> None:
    """Refuse requests that could never be granted."""
    for spec in specs:
        if occupy > spec.limit:
            raise ConcurrencySlotAcquisitionError(
                f"Cannot occupy {occupy} slot(s) of concurrency limit {spec.name!r}: it has "
                f"{spec.limit}. Raise the limit or occupy fewer slots."
            )
    if mode == "rate_limit":
        flat = [spec.name for spec in specs if spec.slot_decay_per_second <= 0.0]
        if flat:
            raise ConcurrencySlotAcquisitionError(
                f"Only concurrency limits with slot decay can be used for rate limiting; "
                f"{flat!r} have none. Set slot_decay_per_second on them."
            )


def _timeout(specs: tuple[LimitSpec, ...], occupy: int, timeout: float | None) -> Exception:
    names = [spec.name for spec in specs]
    return AcquireConcurrencySlotTimeoutError(
        f"Could not acquire {occupy} slot(s) of concurrency limit(s) {names!r} within "
        f"{timeout:g} second(s)"
    )


def acquire(
    specs: tuple[LimitSpec, ...],
    occupy: int,
    mode: Mode,
    timeout: float | None,
    lease_duration: float,
) -> Lease:
    """Wait in this thread for the slots of *specs* in the backend for here."""
    backend = current_backend()
    try:
        return Lease(backend, backend.acquire(specs, occupy, mode, timeout, lease_duration))
    except SlotsTimeout:
        raise _timeout(specs, occupy, timeout) from None


async def aacquire(
    specs: tuple[LimitSpec, ...],
    occupy: int,
    mode: Mode,
    timeout: float | None,  # noqa: ASYNC109 - the waiting itself honours it
    lease_duration: float,
) -> Lease:
    """Wait on the event loop for the slots of *specs* in the backend for here."""
    backend = current_backend()
    try:
        lease_id = await backend.aacquire(specs, occupy, mode, timeout, lease_duration)
    except SlotsTimeout:
        raise _timeout(specs, occupy, timeout) from None
    return Lease(backend, lease_id)
