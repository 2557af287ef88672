"""Waiting for slots kept in another process: queue a request, then poll until it is granted.

The table lives elsewhere (a file, the Dask scheduler, a Ray actor), so a waiter in another
process cannot be woken directly. It queues its request once (keeping its place in the FIFO
order) and asks again after a short nap that grows from 1 ms to 100 ms. A release or withdrawal
made in this process rings a doorbell that ends the naps of this process's waiters at once, so
a handover between threads or tasks of one process waits for no poll. A waiter that times out
or is cancelled withdraws its request; if it was granted in between, the slots are given back.
"""

from __future__ import annotations

__all__ = ("PollingBackend",)

import abc
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._blocking import blocking_region, stepping_aside
from ._backend import Backend, SlotsTimeout
from ._table import LimitSpec, Mode, Request

if TYPE_CHECKING:
    import asyncio

_FIRST_NAP = 0.001
_SHORTEST_NAP = 0.0005
_LONGEST_NAP = 0.1


class Doorbell:
    """Wakes this process's napping waiters when slots may have been freed here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], object]] = []

    def nap(self, seconds: float) -> None:
        """Sleep up to *seconds*, or until :meth:`ring` is called."""
        gate = threading.Lock()
        gate.acquire()
        with self._lock:
            self._wakers.append(gate.release)
        if not gate.acquire(timeout=seconds):
            self._forget(gate.release)

    async def anap(self, seconds: float) -> None:
        """Sleep on the event loop up to *seconds*, or until :meth:`ring` is called."""
        import asyncio

        loop = asyncio.get_running_loop()
        rung = loop.create_future()

        def waker() -> None:
            loop.call_soon_threadsafe(_set_done, rung)

        with self._lock:
            self._wakers.append(waker)
        try:
            await asyncio.wait_for(rung, seconds)
        except TimeoutError:
            pass
        finally:
            self._forget(waker)

    def ring(self) -> None:
        """End every nap in progress."""
        with self._lock:
            wakers, self._wakers = self._wakers, []
        for waker in wakers:
            waker()

    def _forget(self, waker: Callable[[], object]) -> None:
        with self._lock:
            if waker in self._wakers:
                self._wakers.remove(waker)


class PollingBackend(Backend):
    """A backend whose waiters poll a table kept in another process."""

    _bell_lock = threading.Lock()
    _bell: Doorbell | None = None

    def doorbell(self) -> Doorbell:
        """Return the doorbell of this backend's waiters in this process."""
        bell = self._bell
        if bell is None:
            with self._bell_lock:
                bell = self._bell
                if bell is None:
                    bell = self._bell = Doorbell()
        return bell

    @abc.abstractmethod
    def _holder(self) -> str:
        """Identify this process to the table (for freeing what it holds if it dies)."""

    @abc.abstractmethod
    def _offer(self, request: Request, lease_duration: float) -> bool:
        """Queue *request*; return whether it was granted at once."""

    @abc.abstractmethod
    def _poll(self, request_id: str, lease_duration: float) -> bool:
        """Return whether the queued request was granted (keeping it alive if not)."""

    @abc.abstractmethod
    def _withdraw(self, request_id: str) -> bool:
        """Drop a queued request; False if it had been granted."""

    def _request(self, specs: tuple[LimitSpec, ...], occupy: int, mode: Mode) -> Request:
        return Request(uuid.uuid4().hex, specs, occupy, mode, self._holder())

    def _decay_hint(self, request_id: str) -> float | None:
        """Seconds until decay alone lets the request in, as of its last look (None: unknown)."""
        return None

    def _until_decay(self, request_id: str, nap: float) -> float:
        # Wake exactly when a decaying slot frees up, if that comes before the next look.
        hint = self._decay_hint(request_id)
        return nap if hint is None else min(nap, max(hint, _SHORTEST_NAP))

    def acquire(
        self,
        specs: tuple[LimitSpec, ...],
        occupy: int,
        mode: Mode,
        timeout: float | None,
        lease_duration: float,
    ) -> str:
        """Queue a request and poll until granted, napping in between."""
        request = self._request(specs, occupy, mode)
        if self._offer(request, lease_duration):
            return request.id
        deadline = None if timeout is None else time.monotonic() + timeout
        nap = _FIRST_NAP
        try:
            with blocking_region():
                while True:
                    self.doorbell().nap(_bounded(self._until_decay(request.id, nap), deadline))
                    if self._poll(request.id, lease_duration):
                        return request.id
                    if deadline is not None and time.monotonic() >= deadline:
                        self._give_up(request.id)
                    nap = min(nap * 2, _LONGEST_NAP)
        except SlotsTimeout:
            raise
        except BaseException:  # KeyboardInterrupt while waiting: leave nothing queued or held
            if not self._withdraw(request.id):
                self.release(request.id)
            raise

    async def aacquire(
        self,
        specs: tuple[LimitSpec, ...],
        occupy: int,
        mode: Mode,
        timeout: float | None,  # noqa: ASYNC109 - the waiting itself honours it
        lease_duration: float,
    ) -> str:
        """Like :meth:`acquire`, napping on the event loop; a cancelled waiter holds nothing."""

        request = self._request(specs, occupy, mode)
        if self._offer(request, lease_duration):
            return request.id
        deadline = None if timeout is None else time.monotonic() + timeout
        nap = _FIRST_NAP
        try:
            while True:
                await stepping_aside(
                    self.doorbell().anap(_bounded(self._until_decay(request.id, nap), deadline))
                )
                if self._poll(request.id, lease_duration):
                    return request.id
                if deadline is not None and time.monotonic() >= deadline:
                    self._give_up(request.id)
                nap = min(nap * 2, _LONGEST_NAP)
        except SlotsTimeout:
            raise
        except BaseException:
            if not self._withdraw(request.id):
                self.release(request.id)  # granted just as we were cancelled
            raise

    def _give_up(self, request_id: str) -> None:
        if self._withdraw(request_id):
            raise SlotsTimeout
        # Granted between the last poll and the withdrawal: the caller has the slots.


def _bounded(nap: float, deadline: float | None) -> float:
    if deadline is None:
        return nap
    return max(min(nap, deadline - time.monotonic()), 0.0)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
