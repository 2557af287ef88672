"""The backend contract, and the in-process backend (threads and asyncio tasks).

A backend keeps one :class:`~fluvial.concurrency._table.SlotTable` where all holders that must
share limits can reach it, and waits for grants. The in-process backend guards its table with a
lock; a waiting thread blocks on a private gate lock and a waiting coroutine on a future, and
whoever frees slots opens the gates of the requests the table grants, in FIFO order.
"""

from __future__ import annotations

__all__ = ("Backend", "LocalBackend", "Occupancy", "SlotsTimeout")

import abc
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._blocking import blocking_region
from ._table import LimitSpec, Mode, Request, SlotTable

# How long a blocked thread waits before stepping aside from a thread-runner pool. Stepping
# aside starts a replacement thread (~100 µs); most contended handovers take far less.
_STEP_ASIDE_AFTER = 0.005

if TYPE_CHECKING:
    import asyncio


class SlotsTimeout(Exception):
    """The wait for slots passed its timeout; the request was withdrawn."""


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Slots of one limit in use now, and the ids of the leases holding them."""

    active_slots: float
    holders: tuple[str, ...]


class Backend(abc.ABC):
    """Grants and frees slots of named limits for every holder that shares them."""

    @abc.abstractmethod
    def acquire(
        self,
        specs: tuple[LimitSpec, ...],
        occupy: int,
        mode: Mode,
        timeout: float | None,
        lease_duration: float,
    ) -> str:
        """Block until granted; return the lease id.

        Raises:
            SlotsTimeout: *timeout* seconds passed first (nothing is held).
        """

    @abc.abstractmethod
    async def aacquire(
        self,
        specs: tuple[LimitSpec, ...],
        occupy: int,
        mode: Mode,
        timeout: float | None,  # noqa: ASYNC109 - the waiting itself honours it
        lease_duration: float,
    ) -> str:
        """Like :meth:`acquire`, without blocking the event loop; if cancelled, holds nothing."""

    @abc.abstractmethod
    def release(self, lease_id: str) -> None:
        """Give back the slots of a lease; unknown (expired) leases are ignored."""

    @abc.abstractmethod
    def occupancy(self, name: str) -> Occupancy:
        """Return what is held of the limit *name* now."""

    @abc.abstractmethod
    def reset(self, name: str) -> None:
        """Free every slot of *name*, whoever holds it."""


class LocalBackend(Backend):
    """Limits shared by the threads and event loops of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table = SlotTable()
        self._wakers: dict[str, Callable[[], object]] = {}
        self._ids = itertools.count()

    def _request(self, specs: tuple[LimitSpec, ...], occupy: int, mode: Mode) -> Request:
        return Request(str(next(self._ids)), specs, occupy, mode, "local")

    def acquire(
        self,
        specs: tuple[LimitSpec, ...],
        occupy: int,
        mode: Mode,
        timeout: float | None,
        lease_duration: float,
    ) -> str:
        """Block this thread until granted (FIFO among waiters of the same limits)."""
        request = self._request(specs, occupy, mode)
        with self._lock:
            if self._table.offer(request, time.monotonic()):
                return request.id
            gate = threading.Lock()
            gate.acquire()
            self._wakers[request.id] = gate.release
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # A slot handed over within the grace costs no pool thread; a longer wait steps
            # aside, so a thread-runner worker lets another thread work meanwhile (a holder
            # may be waiting on tasks still queued behind this one).
            if not gate.acquire(timeout=self._grace(request, deadline)):
                with blocking_region():
                    self._wait(gate, request, deadline)
        except SlotsTimeout:
            raise
        except BaseException:  # KeyboardInterrupt while waiting: leave nothing queued or held
            if not self._withdraw_quietly(request.id):
                self.release(request.id)
            raise
        return request.id

    def _grace(self, request: Request, deadline: float | None) -> float:
        nap = self._nap(request, deadline)
        return _STEP_ASIDE_AFTER if nap < 0 else min(nap, _STEP_ASIDE_AFTER)

    def _wait(self, gate: threading.Lock, request: Request, deadline: float | None) -> None:
        """Block on *gate* until granted; sleep exactly until a deadline or a decay is due."""
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                self._withdraw(request.id)  # raises SlotsTimeout unless granted meanwhile
                return
            self._regrant()
            if gate.acquire(timeout=self._nap(request, deadline)):
                return

    def _nap(self, request: Request, deadline: float | None) -> float:
        """How long a waiter may sleep: until its deadline, or until decay frees slots."""
        now = time.monotonic()
        with self._lock:
            hint = self._table.wait_hint(request, now)
        if hint is not None:
            hint = max(hint, 0.001)
        if deadline is not None:
            left = max(deadline - now, 0.0)
            hint = left if hint is None else min(hint, left)
        return -1 if hint is None else hint

    def _regrant(self) -> None:
        # Decaying slots free themselves with nobody releasing: grant on the waiter's clock.
        with self._lock:
            self._wake(self._table.grant(time.monotonic()))

    async def aacquire(
        self,
        specs: tuple[LimitSpec, ...],
        occupy: int,
        mode: Mode,
        timeout: float | None,  # noqa: ASYNC109 - the waiting itself honours it
        lease_duration: float,
    ) -> str:
        """Wait on the event loop until granted; a cancelled waiter holds nothing."""
        import asyncio  # not at import time: `import fluvial` stays free of asyncio

        request = self._request(specs, occupy, mode)
        with self._lock:
            if self._table.offer(request, time.monotonic()):
                return request.id
            loop = asyncio.get_running_loop()
            granted = loop.create_future()
            self._wakers[request.id] = lambda: loop.call_soon_threadsafe(_set_done, granted)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not granted.done():
                nap = self._nap(request, deadline)
                try:
                    await asyncio.wait_for(asyncio.shield(granted), None if nap < 0 else nap)
                except TimeoutError:
                    if deadline is not None and time.monotonic() >= deadline:
                        self._withdraw(request.id)
                        break
                    self._regrant()
        except BaseException:
            if not self._withdraw_quietly(request.id):
                self.release(request.id)  # granted just as we were cancelled
            raise
        return request.id

    def _withdraw(self, request_id: str) -> None:
        if self._withdraw_quietly(request_id):
            raise SlotsTimeout

    def _withdraw_quietly(self, request_id: str) -> bool:
        """Drop a queued request; False if it was granted meanwhile."""
        with self._lock:
            self._wakers.pop(request_id, None)
            if request_id not in self._table.queue:
                return False
            # Dropping a waiter may unblock the ones queued behind it.
            self._wake(self._table.release(request_id, time.monotonic()))
            return True

    def release(self, lease_id: str) -> None:
        """Give back a lease's slots and wake the waiters that now fit."""
        with self._lock:
            self._wake(self._table.release(lease_id, time.monotonic()))

    def _wake(self, granted: list[str]) -> None:
        for request_id in granted:
            waker = self._wakers.pop(request_id, None)
            if waker is not None:
                waker()

    def occupancy(self, name: str) -> Occupancy:
        """Return the slots of *name* held in this process."""
        with self._lock:
            used = self._table.occupied(name, time.monotonic())
            return Occupancy(used, tuple(r.id for r in self._table.holders(name)))

    def reset(self, name: str) -> None:
        """Free every slot of *name* held in this process."""
        with self._lock:
            self._wake(self._table.reset(name, time.monotonic()))

    def refresh(self, spec: LimitSpec) -> None:
        """Apply a changed definition now (a raised limit lets waiters in)."""
        with self._lock:
            self._table.specs[spec.name] = spec
            self._wake(self._table.grant(time.monotonic()))


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
