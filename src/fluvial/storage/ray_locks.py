"""SERIALIZABLE locks across a Ray cluster, kept by one named Ray actor.

:class:`RayLockManager` is a thin client: every call goes to a named, detached actor (get-or-
create by name, so the first user anywhere in the cluster starts it) that holds the lock table
in memory. The actor is the one place that decides, so a lock taken in a task on one worker is
seen by tasks on every other worker and by the driver.

Lifetime of the actor: it is **detached**, because the first user is usually a task on some
worker, and a non-detached actor dies with the process that created it (a worker that is
killed, or the driver of one flow run), taking the table with it while other holders still
rely on it. It is not kept forever either: once it has held no lock and served no call for
``idle_timeout`` seconds it exits by itself, and the next call creates a new one. It uses no
CPU slot (``num_cpus=0``) and is not restarted (a restarted actor would have an empty table;
a new one is made on the next call instead). Stopping Ray ends it with everything else.

A holder that dies must not block a key forever. Each hold may expire (``hold_timeout``, on
the actor's clock) and each hold carries a small object ``ray.put`` by the acquiring process:
Ray fails that object with ``OwnerDiedError`` once its owner is gone, so when another caller
wants a key, a hold whose process died (a worker killed with ``os._exit``, by the OOM killer,
a lost node) is dropped within about a second, with or without a hold timeout.

Ray is imported on first use, never by ``import fluvial.storage``.
"""

from __future__ import annotations

__all__ = ("RayLockManager",)

import asyncio
import importlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigurationError, MissingExtraError, StorageError
from .locks import LockManager

#: Longest single wait inside the actor; a client waits longer by calling again.
_SLICE = 2.0
#: How often, at most, the actor asks Ray whether a hold's process is still alive.
_LIVENESS_INTERVAL = 0.5
#: How long the actor waits for Ray's answer to that question before assuming "alive".
_LIVENESS_TIMEOUT = 2.0
#: How many times a client looks the actor up again after it died or was retiring.
_ATTEMPTS = 20


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingExtraError("RayLockManager", "ray") from exc


# --- the actor -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Hold:
    holder: str
    owner: Any  # an ObjectRef owned by the holder's process, or None
    expires: float | None  # time.monotonic() of the actor
    checked: float = 0.0  # when the owner was last found alive


class _LockTable:
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


_actor_class: Any = None
_actor_class_lock = threading.Lock()


def _remote_class(ray: Any) -> Any:
    global _actor_class
    with _actor_class_lock:
        if _actor_class is None:
            _actor_class = ray.remote(num_cpus=0, max_restarts=0)(_LockTable)
        return _actor_class


# --- the client ------------------------------------------------------------------------------

_handles: dict[tuple[str, str], Any] = {}
_handles_lock = threading.Lock()


class RayLockManager(LockManager):
    """Locks that hold across a Ray cluster: workers, their tasks and the driver.

    Args:
        namespace: the Ray namespace of the lock actor (independent of the job's namespace,
            so drivers in different namespaces share locks when they name the same one).
        actor_name: the name of the lock actor. Managers with the same namespace and name share
            one lock table.
        idle_timeout: seconds without a call and without a held lock after which the actor
            exits (a new one is created on the next call).

    Ray must be initialized in the calling process (it is in Ray tasks, and in a flow run on a
    :class:`~fluvial.runners.RayTaskRunner`). Pickling keeps only the arguments, so the manager
    travels to workers inside a cache policy and reconnects there.

    Raises (from the lock methods):
        MissingExtraError: Ray is not installed.
        ConfigurationError: Ray is not initialized in this process.
        StorageError: the lock actor kept dying or could not be reached.
    """

    def __init__(
        self,
        namespace: str = "fluvial",
        actor_name: str = "fluvial-locks",
        *,
        idle_timeout: float = 600.0,
    ) -> None:
        if idle_timeout <= 0:
            raise ConfigurationError(f"idle_timeout must be positive, got {idle_timeout!r}")
        self.namespace = namespace
        self.actor_name = actor_name
        self.idle_timeout = float(idle_timeout)

    def __repr__(self) -> str:
        return f"RayLockManager(namespace={self.namespace!r}, actor_name={self.actor_name!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RayLockManager)
            and other.namespace == self.namespace
            and other.actor_name == self.actor_name
        )

    def __hash__(self) -> int:
        return hash((RayLockManager, self.namespace, self.actor_name))

    def __getstate__(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "actor_name": self.actor_name,
            "idle_timeout": self.idle_timeout,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.namespace = state["namespace"]
        self.actor_name = state["actor_name"]
        self.idle_timeout = state["idle_timeout"]

    # -- LockManager --

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on *key*; see :meth:`LockManager.acquire_lock`."""
        ray = _import_ray()
        self._handle(ray)  # fail on a Ray that is not initialized before putting anything
        owner = [ray.put(None)]  # Ray fails this object once this process is gone
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            wait = _slice(deadline)
            got, _ = self._call(ray, "acquire", key, holder, owner, wait, hold_timeout)
            if got:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def release_lock(self, key: str, holder: str) -> None:
        """Release *holder*'s lock on *key*."""
        released, retried = self._call(_import_ray(), "release", key, holder)
        # After a retry the first call may have released it already.
        if not released and not retried:
            raise ConfigurationError(f"{holder!r} does not hold the lock on {key!r}")

    def is_locked(self, key: str) -> bool:
        """Return True if a live, unexpired lock is held on *key*."""
        return self._call(_import_ray(), "is_locked", key)[0]

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Return True if *holder* holds a live, unexpired lock on *key*."""
        return self._call(_import_ray(), "is_holder", key, holder)[0]

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until *key* is unlocked, at most *timeout* seconds."""
        ray = _import_ray()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._call(ray, "wait", key, _slice(deadline))[0]:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    # -- the actor --

    def _handle(self, ray: Any) -> Any:
        if not ray.is_initialized():
            raise ConfigurationError(
                "RayLockManager needs Ray initialized in this process: call ray.init(...) "
                "first, or use it in tasks run by a RayTaskRunner"
            )
        where = (self.namespace, self.actor_name)
        with _handles_lock:
            handle = _handles.get(where)
            if handle is None:
                handle = (
                    _remote_class(ray)
                    .options(
                        name=self.actor_name,
                        namespace=self.namespace,
                        lifetime="detached",
                        get_if_exists=True,
                    )
                    .remote(self.idle_timeout)
                )
                _handles[where] = handle
            return handle

    def _forget(self, handle: Any) -> None:
        with _handles_lock:
            if _handles.get((self.namespace, self.actor_name)) is handle:
                del _handles[(self.namespace, self.actor_name)]

    def _call(self, ray: Any, method: str, *args: Any) -> tuple[bool, bool]:
        """Call the actor; returns its answer and whether the call was retried."""
        problem: object = None
        for attempt in range(_ATTEMPTS):
            handle = self._handle(ray)
            try:
                answer = ray.get(getattr(handle, method).remote(*args))
            except ray.exceptions.RayActorError as exc:  # died, or unreachable for a moment
                answer, problem = None, exc
            else:
                problem = "the lock actor was retiring"
            if answer is not None:
                return bool(answer), attempt > 0
            self._forget(handle)
            time.sleep(min(0.01 * 2**attempt, 0.5))
        raise StorageError(
            f"the Ray lock actor {self.actor_name!r} in namespace {self.namespace!r} could not "
            f"be reached after {_ATTEMPTS} attempts: {problem}"
        )


def _slice(deadline: float | None) -> float:
    if deadline is None:
        return _SLICE
    return max(min(deadline - time.monotonic(), _SLICE), 0.0)
