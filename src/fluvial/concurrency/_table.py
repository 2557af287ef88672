"""The bookkeeping every backend shares: occupied slots, leases and a queue of waiters.

A :class:`SlotTable` is pure data plus rules; it never waits, sleeps or locks. Each backend
keeps one where every holder can reach it (a Python object, a JSON file, the Dask scheduler, a
Ray actor), guards it with its own lock and wakes its own waiters. Rules:

- A request names limits, a slot count ``occupy`` and a mode. It is granted all at once or
  not at all, so two holders acquiring ``["a", "b"]`` and ``["b", "a"]`` cannot deadlock.
- Requests queue in arrival order. A request is skipped while an earlier queued request
  needs one of the same limits, so a waiter is never overtaken on a limit it waits for:
  nobody starves under steady load.
- Slots of a limit with ``slot_decay_per_second`` drain continuously at that rate (Prefect
  floors the decay at each update, so frequent updates can stop it from ever decaying).
  ``mode="rate_limit"`` grants keep no lease: their slots only decay. A ``concurrency``
  lease on a decaying limit gives its slots back on release as well, as in Prefect.
- Each lease and queued request names its holder; :meth:`SlotTable.drop_holder` frees what a
  dead holder had, and ``expires`` lets TTL-based backends lapse what was not renewed.
"""

from __future__ import annotations

__all__ = ("LimitSpec", "Request", "SlotTable")

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["concurrency", "rate_limit"]


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """The definition of one named limit."""

    name: str
    limit: int
    slot_decay_per_second: float = 0.0
    active: bool = True

    def to_json(self) -> dict[str, Any]:
        """Return the definition as plain JSON values."""
        return {
            "name": self.name,
            "limit": self.limit,
            "slot_decay_per_second": self.slot_decay_per_second,
            "active": self.active,
        }


@dataclass(slots=True)
class Request:
    """A wish for ``occupy`` slots of each limit in ``specs``; a lease once granted."""

    id: str
    specs: tuple[LimitSpec, ...]
    occupy: int
    mode: Mode
    holder: str
    expires: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the request as plain JSON values."""
        return {
            "id": self.id,
            "specs": [spec.to_json() for spec in self.specs],
            "occupy": self.occupy,
            "mode": self.mode,
            "holder": self.holder,
            "expires": self.expires,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        """Rebuild a request from :meth:`to_json` output."""
        specs = tuple(LimitSpec(**spec) for spec in data["specs"])
        return cls(data["id"], specs, data["occupy"], data["mode"], data["holder"], data["expires"])


@dataclass(slots=True)
class SlotTable:
    """Occupancy of every limit in use, the leases held and the queue of waiters."""

    used: dict[str, float] = field(default_factory=dict)
    stamp: dict[str, float] = field(default_factory=dict)
    specs: dict[str, LimitSpec] = field(default_factory=dict)
    leases: dict[str, Request] = field(default_factory=dict)
    queue: dict[str, Request] = field(default_factory=dict)  # insertion order is FIFO order

    def offer(self, request: Request, now: float) -> bool:
        """Queue *request*; return whether it was granted at once."""
        for spec in request.specs:
            self.specs[spec.name] = spec
        if not self.queue and self._fits(request, now):
            self._grant(request)
            return True
        self.queue[request.id] = request
        return request.id in self.grant(now)

    def grant(self, now: float) -> list[str]:
        """Grant queued requests in order where they fit; return the ids granted."""
        granted: list[str] = []
        blocked: set[str] = set()
        for request in list(self.queue.values()):
            names = [spec.name for spec in request.specs]
            if blocked.isdisjoint(names) and self._fits(request, now):
                del self.queue[request.id]
                self._grant(request)
                granted.append(request.id)
            else:
                blocked.update(names)
        return granted

    def release(self, lease_id: str, now: float) -> list[str]:
        """Give back the slots of a lease (or drop a queued request); return ids now granted."""
        if self.queue.pop(lease_id, None) is not None:
            return self.grant(now)
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return []
        for spec in lease.specs:
            name = spec.name
            self._decay(name, now)
            self.used[name] = max(0.0, self.used.get(name, 0.0) - lease.occupy)
        return self.grant(now)

    def drop_holder(self, holder: str, now: float) -> list[str]:
        """Free every lease and queued request of a holder that is gone."""
        ids = [r.id for r in (*self.leases.values(), *self.queue.values()) if r.holder == holder]
        granted: list[str] = []
        for lease_id in ids:
            granted.extend(self.release(lease_id, now))
        return granted

    def expire(self, now: float) -> list[str]:
        """Drop leases and queued requests whose ``expires`` has passed."""
        ids = [
            r.id
            for r in (*self.leases.values(), *self.queue.values())
            if r.expires is not None and r.expires <= now
        ]
        granted: list[str] = []
        for lease_id in ids:
            granted.extend(self.release(lease_id, now))
        return granted

    def renew(self, ids: list[str], expires: float) -> list[str]:
        """Push back the expiry of the given leases or requests; return the ids unknown."""
        lost = []
        for lease_id in ids:
            request = self.leases.get(lease_id) or self.queue.get(lease_id)
            if request is None:
                lost.append(lease_id)
            else:
                request.expires = expires
        return lost

    def wait_hint(self, request: Request, now: float) -> float | None:
        """Seconds until decay alone could make *request* fit; None if nothing decays."""
        hint: float | None = None
        for asked in request.specs:
            spec = self.specs.get(asked.name, asked)
            if spec.slot_decay_per_second > 0.0:
                excess = self.occupied(spec.name, now) + request.occupy - spec.limit
                wait = max(excess, 0.0) / spec.slot_decay_per_second
                hint = wait if hint is None else max(hint, wait)
        return hint

    def occupied(self, name: str, now: float) -> float:
        """Return the slots of *name* in use now (after decay)."""
        self._decay(name, now)
        return self.used.get(name, 0.0)

    def holders(self, name: str) -> list[Request]:
        """Return the leases holding slots of *name*."""
        return [r for r in self.leases.values() if any(s.name == name for s in r.specs)]

    def reset(self, name: str, now: float) -> list[str]:
        """Free every slot of *name* and forget its leases."""
        for lease_id in [r.id for r in self.holders(name)]:
            self.release(lease_id, now)
        self.used.pop(name, None)
        return self.grant(now)

    def _fits(self, request: Request, now: float) -> bool:
        for asked in request.specs:
            spec = self.specs.get(asked.name, asked)  # the latest definition wins
            self._decay(spec.name, now)
            if self.used.get(spec.name, 0.0) + request.occupy > spec.limit + 1e-9:
                return False
        return True

    def _grant(self, request: Request) -> None:
        for spec in request.specs:
            self.used[spec.name] = self.used.get(spec.name, 0.0) + request.occupy
        if request.mode == "concurrency":
            self.leases[request.id] = request

    def _decay(self, name: str, now: float) -> None:
        spec = self.specs.get(name)
        rate = spec.slot_decay_per_second if spec is not None else 0.0
        if rate > 0.0:
            last = self.stamp.get(name, now)
            used = self.used.get(name, 0.0)
            if used:
                self.used[name] = max(0.0, used - rate * (now - last))
            self.stamp[name] = now

    def to_json(self) -> dict[str, Any]:
        """Return the whole table as plain JSON values."""
        return {
            "used": self.used,
            "stamp": self.stamp,
            "specs": {name: spec.to_json() for name, spec in self.specs.items()},
            "leases": [r.to_json() for r in self.leases.values()],
            "queue": [r.to_json() for r in self.queue.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SlotTable:
        """Rebuild a table from :meth:`to_json` output."""
        leases = [Request.from_json(r) for r in data.get("leases", [])]
        queue = [Request.from_json(r) for r in data.get("queue", [])]
        return cls(
            used=dict(data.get("used", {})),
            stamp=dict(data.get("stamp", {})),
            specs={k: LimitSpec(**v) for k, v in data.get("specs", {}).items()},
            leases={r.id: r for r in leases},
            queue={r.id: r for r in queue},
        )
