"""The lock table of :class:`~fluvial.storage.ray_locks.RayLockManager`: the code that runs
inside the named Ray actor (see that module for the actor's lifetime and how dead holders are
found). It runs as an async actor, on one event loop, so it needs no thread locks.
"""

from __future__ import annotations

__all__ = ("SLICE", "LockTable")

import asyncio
import time
from dataclasses import dataclass
from typing import Any

#: Longest single wait inside the actor; a client waits longer by calling again.
SLICE = 2.0
#: How often, at most, the actor asks Ray whether a hold's process is still alive.
_LIVENESS_INTERVAL = 0.5
#: How long the actor waits for Ray's answer to that question before assuming "alive".
_LIVENESS_TIMEOUT = 2.0


@dataclass(slots=True)
class _Hold:
    holder: str
    owner: Any  # an ObjectRef owned by the holder's process, or None
    expires: float | None  # time.monotonic() of the actor
    checked: float = 0.0  # when the owner was last found alive


class LockTable:
    """The lock table, run as an async Ray actor (one event loop: no thread locks needed).

    Every method returns None instead of an answer once the actor is retiring, so the client
    looks the actor up again (and gets a new one).
    """

    def __init__(self, idle_timeout: float) -> None:
        self._idle_timeout = idle_timeout
        self._held: dict[str, _Hold] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._last_call = time.monotonic()
        self._active = 0
        self._retiring = False
        self._reaper: asyncio.Task[None] | None = None

    # -- calls --

    async def acquire(
        self, key: str, holder: str, owner: list[Any], wait: float, hold_timeout: float | None
    ) -> bool | None:
        if not self._enter():
            return None
        try:
            deadline = time.monotonic() + wait
            while True:
                hold = await self._live(key)
                if hold is None:
                    expires = None if hold_timeout is None else time.monotonic() + hold_timeout
                    self._held[key] = _Hold(holder, owner[0] if owner else None, expires)
                    return True
                if hold.holder == holder:
                    if owner:  # the caller is alive: the hold now follows its process
                        hold.owner, hold.checked = owner[0], time.monotonic()
                    return True
                if not await self._wait(key, hold, deadline):
                    return False
        finally:
            self._exit()

    async def release(self, key: str, holder: str) -> bool | None:
        if not self._enter():
            return None
        try:
            hold = self._held.get(key)
            if hold is None or hold.holder != holder:
                return False
            self._drop(key)
            return _unexpired(hold)
        finally:
            self._exit()

    async def is_locked(self, key: str) -> bool | None:
        if not self._enter():
            return None
        try:
            return await self._live(key) is not None
        finally:
            self._exit()

    async def is_holder(self, key: str, holder: str) -> bool | None:
        if not self._enter():
            return None
        try:
            hold = await self._live(key)
            return hold is not None and hold.holder == holder
        finally:
            self._exit()

    async def wait(self, key: str, wait: float) -> bool | None:
        """True once *key* is free; False if *wait* seconds pass first."""
        if not self._enter():
            return None
        try:
            deadline = time.monotonic() + wait
            while True:
                hold = await self._live(key)
                if hold is None:
                    return True
                if not await self._wait(key, hold, deadline):
                    return False
        finally:
            self._exit()

    async def retire(self) -> None:
        """Exit the actor (called by its own reaper once it is idle)."""
        import ray

        ray.actor.exit_actor()  # type: ignore[no-untyped-call]

    # -- the table --

    async def _live(self, key: str) -> _Hold | None:
        """The hold on *key*, after dropping it if it expired or its process died."""
        while True:
            hold = self._held.get(key)
            if hold is None:
                return None
            if not _unexpired(hold):
                self._drop(key)
                return None
            now = time.monotonic()
            if hold.owner is None or now - hold.checked < _LIVENESS_INTERVAL:
                return hold
            hold.checked = now
            alive = await _owner_alive(hold.owner)
            if not alive and self._held.get(key) is hold:
                self._drop(key)
                return None
            # Checked (the table may have changed meanwhile): look again.

    async def _wait(self, key: str, hold: _Hold, deadline: float) -> bool:
        """Wait for a change to *key*, its hold's expiry or the next liveness check."""
        now = time.monotonic()
        if now >= deadline:
            return False
        until = [deadline]
        if hold.expires is not None:
            until.append(hold.expires)
        if hold.owner is not None:
            until.append(hold.checked + _LIVENESS_INTERVAL)
        event = self._changed.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), max(min(until) - now, 0.001))
        except TimeoutError:
            pass
        return True

    def _drop(self, key: str) -> None:
        self._held.pop(key, None)
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    # -- lifetime --

    def _enter(self) -> bool:
        if self._retiring:
            return False
        self._active += 1
        self._last_call = time.monotonic()
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return True

    def _exit(self) -> None:
        self._active -= 1
        self._last_call = time.monotonic()

    async def _reap(self) -> None:
        """Retire once idle: no call running, none for idle_timeout seconds, no live hold."""
        import ray

        while True:
            await asyncio.sleep(min(max(self._idle_timeout / 4, 0.05), 30.0))
            for key in [key for key, hold in self._held.items() if not _unexpired(hold)]:
                self._drop(key)
            for key in [key for key in self._changed if key not in self._held]:
                self._drop(key)  # wakes waiters that timed out on a key nobody holds
            idle = time.monotonic() - self._last_call >= self._idle_timeout
            if idle and self._active == 0 and not self._held:
                self._retiring = True  # from here on every call answers None
                ray.get_runtime_context().current_actor.retire.remote()
                return


def _unexpired(hold: _Hold) -> bool:
    return hold.expires is None or hold.expires > time.monotonic()


async def _owner_alive(owner: Any) -> bool:
    """False once Ray reports the process that put *owner* dead."""
    import ray

    try:
        await asyncio.wait_for(owner, _LIVENESS_TIMEOUT)
    except ray.exceptions.ObjectLostError:  # OwnerDiedError and the other ways to lose it
        return False
    except Exception:  # slow or unreachable: not proof of death
        return True
    return True
