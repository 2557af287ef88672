"""Limits shared by a cluster: a slot table kept in one long-lived process, reached by calls.

:class:`TableHost` is the table's keeper, run inside the Dask scheduler or a named Ray actor;
every call is one short, non-blocking operation on it. :class:`RemoteBackend` is the client side:
it queues a request and polls (see :mod:`._polling`), and renews the leases it holds from a
daemon thread every third of their duration. A holder that dies stops renewing, and its leases
lapse after ``lease_duration`` seconds; a waiter that dies stops polling, and its place in the
queue lapses the same way. Times are the host's own monotonic clock, so machines' clocks need
not agree.
"""

from __future__ import annotations

__all__ = ("RemoteBackend", "TableHost")

import abc
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from ..exceptions import ConcurrencySlotAcquisitionError
from ._backend import Occupancy
from ._polling import PollingBackend
from ._table import Request, SlotTable

_logger = logging.getLogger("fluvial.concurrency")
# Ids of requests granted lately, so a poll can tell "granted" (rate limits keep no lease) from
# "lapsed". Polls come within a second of a grant, so a few thousand is plenty.
_RECENT = 10_000
# How long a queued request lives between polls (waiters poll at least every 0.1 s).
_QUEUE_TTL = 30.0


class TableHost:
    """Keeps a :class:`SlotTable` for a cluster and answers one operation per call."""

    def __init__(self) -> None:
        self.table = SlotTable()
        self.recent: OrderedDict[str, None] = OrderedDict()

    def handle(self, action: str, payload: dict[str, Any]) -> Any:
        """Perform *action* (offer, poll, withdraw, release, renew, occupancy, reset)."""
        now = time.monotonic()
        self._note(self.table.expire(now))
        self._note(self.table.grant(now))  # decayed slots free themselves
        method = getattr(self, f"_{action}")
        return method(now, **payload)

    def forget_holder(self, holder: str) -> None:
        """Free what a holder known to be dead had."""
        self._note(self.table.drop_holder(holder, time.monotonic()))

    def _offer(self, now: float, request: dict[str, Any], ttl: float) -> bool:
        req = Request.from_json(request)
        req.expires = now + _QUEUE_TTL
        granted = self.table.offer(req, now)
        if granted:
            req.expires = now + ttl
            self._note([req.id])
        self._note(self.table.grant(now))
        return granted or req.id in self.recent

    def _poll(self, now: float, id: str, ttl: float) -> str:
        queued = self.table.queue.get(id)
        if queued is not None:
            queued.expires = now + _QUEUE_TTL
            return "queued"
        lease = self.table.leases.get(id)
        if lease is not None:
            lease.expires = now + ttl
            return "granted"
        return "granted" if id in self.recent else "lost"

    def _withdraw(self, now: float, id: str) -> bool:
        if id not in self.table.queue:
            return False
        self._note(self.table.release(id, now))
        return True

    def _release(self, now: float, id: str) -> None:
        self._note(self.table.release(id, now))

    def _renew(self, now: float, ids: list[str], ttl: float) -> list[str]:
        return self.table.renew(ids, now + ttl)

    def _occupancy(self, now: float, name: str) -> list[Any]:
        return [self.table.occupied(name, now), [r.id for r in self.table.holders(name)]]

    def _reset(self, now: float, name: str) -> None:
        self._note(self.table.reset(name, now))

    def _note(self, ids: list[str]) -> None:
        for request_id in ids:
            self.recent[request_id] = None
        while len(self.recent) > _RECENT:
            self.recent.popitem(last=False)


class RemoteBackend(PollingBackend):
    """Client side of a :class:`TableHost`: polls for grants and renews held leases."""

    def __init__(self) -> None:
        self._held: dict[str, float] = {}  # lease id -> lease duration
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._wake = threading.Event()

    @abc.abstractmethod
    def _call(self, action: str, payload: dict[str, Any]) -> Any:
        """Perform *action* on the host and return its answer."""

    def _holder(self) -> str:
        return f"{os.uname().nodename}:{os.getpid()}"

    def _offer(self, request: Request, lease_duration: float) -> bool:
        payload = {"request": request.to_json(), "ttl": lease_duration}
        granted = bool(self._call("offer", payload))
        if granted:
            self._hold(request, lease_duration)
        return granted

    def _poll(self, request_id: str, lease_duration: float) -> bool:
        answer = self._call("poll", {"id": request_id, "ttl": lease_duration})
        if answer == "lost":
            raise ConcurrencySlotAcquisitionError(
                f"the request for concurrency slots lapsed while waiting ({request_id}); this "
                "process could not reach the cluster's limits for too long"
            )
        if answer == "granted":
            self._hold_id(request_id, lease_duration)
        return bool(answer == "granted")

    def _withdraw(self, request_id: str) -> bool:
        withdrawn = bool(self._call("withdraw", {"id": request_id}))
        if withdrawn:
            self.doorbell().ring()  # a waiter of this process behind it may fit now
        return withdrawn

    def release(self, lease_id: str) -> None:
        """Give back the slots of a lease and stop renewing it; this process's waiters look again."""
        with self._held_lock:
            self._held.pop(lease_id, None)
        self._send("release", {"id": lease_id})
        self.doorbell().ring()

    def _send(self, action: str, payload: dict[str, Any]) -> None:
        """Perform *action* without waiting for its answer where the transport allows."""
        self._call(action, payload)

    def occupancy(self, name: str) -> Occupancy:
        """Return the slots of *name* held across the cluster."""
        used, holders = self._call("occupancy", {"name": name})
        return Occupancy(float(used), tuple(holders))

    def reset(self, name: str) -> None:
        """Free every slot of *name* across the cluster."""
        self._call("reset", {"name": name})
        self.doorbell().ring()

    def _hold(self, request: Request, lease_duration: float) -> None:
        if request.mode == "concurrency":
            self._hold_id(request.id, lease_duration)

    def _hold_id(self, lease_id: str, lease_duration: float) -> None:
        if lease_duration <= 0:
            return  # rate limits: nothing to give back, nothing to renew
        with self._held_lock:
            self._held[lease_id] = lease_duration
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(
                    target=self._renew_forever, name="fluvial-concurrency-renewal", daemon=True
                )
                self._renewer.start()

    def _renew_forever(self) -> None:
        while True:
            with self._held_lock:
                held = dict(self._held)
            if not held:
                self._wake.wait(1.0)
                continue
            shortest = min(held.values())
            self._wake.wait(shortest / 3)
            by_ttl: dict[float, list[str]] = {}
            for lease_id, ttl in held.items():
                by_ttl.setdefault(ttl, []).append(lease_id)
            for ttl, ids in by_ttl.items():
                try:
                    lost = self._call("renew", {"ids": ids, "ttl": ttl})
                except Exception as exc:  # the next round tries again
                    _logger.warning("could not renew concurrency leases: %s", exc)
                    continue
                if lost:
                    _logger.warning("concurrency leases %s lapsed before renewal", lost)
