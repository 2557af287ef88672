"""Limits shared by a Ray cluster, kept by a named actor.

The actor ``fluvial-concurrency`` (namespace ``fluvial``, detached, no CPU) holds a
:class:`~._remote.TableHost`; the first process that needs it creates it, every other one finds
it by name. Being detached, it outlives the drivers and workers that use it and lives as long as
the Ray cluster. Leases of a holder that dies lapse after their ``lease_duration``.
"""

from __future__ import annotations

__all__ = ("RayBackend",)

import importlib
import threading
from typing import Any

from ..exceptions import MissingExtraError
from ._remote import RemoteBackend, TableHost

_NAME = "fluvial-concurrency"
_NAMESPACE = "fluvial"


class _Host(TableHost):
    """The actor's class: a table host answering one call at a time."""


class RayBackend(RemoteBackend):
    """Slots held in the table of the named actor of the connected Ray cluster."""

    def __init__(self) -> None:
        super().__init__()
        self._actor: Any = None
        self._lock = threading.Lock()

    def _handle(self) -> Any:
        with self._lock:
            if self._actor is None:
                ray = _ray()
                actor_class = ray.remote(num_cpus=0, max_concurrency=1)(_Host)
                self._actor = actor_class.options(
                    name=_NAME, namespace=_NAMESPACE, lifetime="detached", get_if_exists=True
                ).remote()
            return self._actor

    def _call(self, action: str, payload: dict[str, Any]) -> Any:
        ray = _ray()
        return ray.get(self._handle().handle.remote(action, payload))

    def _send(self, action: str, payload: dict[str, Any]) -> None:
        # Calls from one caller reach an actor in order: a later offer sees this release.
        self._handle().handle.remote(action, payload)


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingExtraError("concurrency limits on Ray", "ray") from exc
