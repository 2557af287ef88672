"""Waiting for slots kept in another process: queue a request, then poll until it is granted.

The table lives elsewhere (a file, the Dask scheduler, a Ray actor), so a waiter cannot be
woken directly. It queues its request once (keeping its place in the FIFO order) and asks
again after a short nap that grows from 2 ms to 100 ms. A waiter that times out or is
cancelled withdraws its request; if it was granted in between, the slots are given back.
"""

from __future__ import annotations

__all__ = ("PollingBackend",)

import abc
import time
import uuid

from .._blocking import blocking_region, stepping_aside
from ._backend import Backend, SlotsTimeout
from ._table import LimitSpec, Mode, Request

_FIRST_NAP = 0.002
_LONGEST_NAP = 0.1


class PollingBackend(Backend):
    """A backend whose waiters poll a table kept in another process."""

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
                    time.sleep(_bounded(nap, deadline))
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
        import asyncio

        request = self._request(specs, occupy, mode)
        if self._offer(request, lease_duration):
            return request.id
        deadline = None if timeout is None else time.monotonic() + timeout
        nap = _FIRST_NAP
        try:
            while True:
                await stepping_aside(asyncio.sleep(_bounded(nap, deadline)))
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
