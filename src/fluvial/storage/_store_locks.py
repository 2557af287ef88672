"""The lock half of ``ResultStore``: SERIALIZABLE isolation delegated to a lock manager.

Kept apart from the store's reads and writes because it is plain delegation with defaults:
the holder defaults to the calling thread/task (:func:`current_holder`), and a store
without a lock manager reports every key unlocked and refuses to lock.
"""

from __future__ import annotations

__all__ = ("LockingMixin",)

from ..exceptions import ConfigurationError, StorageError
from .locks import IsolationLevel, LockManager, current_holder


class LockingMixin:
    """Lock methods for a class with a ``lock_manager`` attribute."""

    lock_manager: LockManager | None

    def supports_isolation_level(self, level: IsolationLevel | str) -> bool:
        """Return True if this store can provide *level* (SERIALIZABLE needs a lock manager)."""
        try:
            level = IsolationLevel(level)
        except ValueError:
            return False
        return level is IsolationLevel.READ_COMMITTED or self.lock_manager is not None

    def _locks(self) -> LockManager:
        if self.lock_manager is None:
            raise ConfigurationError(
                "this result store has no lock manager; SERIALIZABLE isolation needs one, e.g. "
                "INPUTS.configure(isolation_level='SERIALIZABLE', "
                "lock_manager=MemoryLockManager())"
            )
        return self.lock_manager

    def acquire_lock(
        self,
        key: str,
        holder: str | None = None,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Lock *key* for *holder* (default: this thread/task); False on timeout."""
        holder = holder or current_holder()
        return self._locks().acquire_lock(key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str | None = None) -> None:
        """Release *holder*'s lock on *key*."""
        self._locks().release_lock(key, holder or current_holder())

    def is_locked(self, key: str) -> bool:
        """Return True if *key* is locked (always False without a lock manager)."""
        return self.lock_manager is not None and self.lock_manager.is_locked(key)

    def is_lock_holder(self, key: str, holder: str | None = None) -> bool:
        """Return True if *holder* (default: this thread/task) holds the lock on *key*."""
        return self.lock_manager is not None and self.lock_manager.is_lock_holder(
            key, holder or current_holder()
        )

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until *key* is unlocked; False if *timeout* seconds pass first."""
        return self.lock_manager is None or self.lock_manager.wait_for_lock(key, timeout)

    def _wait_unless_holder(self, key: str, holder: str | None) -> None:
        locks = self.lock_manager
        if locks is not None and not locks.is_lock_holder(key, holder or current_holder()):
            locks.wait_for_lock(key)

    def _refuse_if_locked(self, key: str, holder: str | None, url: str) -> None:
        locks = self.lock_manager
        if locks is None or not locks.is_locked(key):
            return
        if not locks.is_lock_holder(key, holder or current_holder()):
            raise StorageError(
                f"cannot write {url}: another holder has the key locked; acquire the lock "
                "first or wait for it (store.wait_for_lock)",
                url=url,
            )
