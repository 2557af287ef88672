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

import importlib
import threading
import time
from typing import Any

from ..exceptions import ConfigurationError, MissingExtraError, StorageError
from ._ray_lock_table import SLICE, LockTable
from .locks import LockManager

#: How many times a client looks the actor up again after it died or was retiring.
_ATTEMPTS = 20


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingExtraError("RayLockManager", "ray") from exc


_actor_class: Any = None
_actor_class_lock = threading.Lock()


def _remote_class(ray: Any) -> Any:
    global _actor_class
    with _actor_class_lock:
        if _actor_class is None:
            _actor_class = ray.remote(num_cpus=0, max_restarts=0)(LockTable)
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
        return SLICE
    return max(min(deadline - time.monotonic(), SLICE), 0.0)
