"""How a :class:`~fluvial.runners.ray.RayTaskRunner` reaches Ray: the Ray of this process, a
local one it starts, or a cluster by address (which must answer, or the runner fails fast)."""

from __future__ import annotations

__all__ = ("connect",)

import socket
from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError

# How long to try reaching a cluster's address before saying it is unreachable.
_CONNECT_TIMEOUT = 5.0


def connect(ray: Any, address: str | None, init_kwargs: Mapping[str, object]) -> bool:
    """Make sure Ray is initialized; return whether this call started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, object] = {"namespace": "fluvial", **init_kwargs}
    target = kwargs.pop("address", None) if address is None else address
    if target is None:
        kwargs.setdefault("include_dashboard", False)
    elif isinstance(target, str) and target != "auto":
        _check_reachable(target)
    where = "a local Ray" if target is None else f"the Ray cluster at {target!r}"
    try:
        ray.init(target, **kwargs)
    except Exception as exc:
        raise ConfigurationError(
            f"RayTaskRunner could not start or connect to {where}: {exc}"
        ) from exc
    return True


def _check_reachable(address: str) -> None:
    """Fail fast, naming *address*, when nothing listens there (ray.init would retry for
    minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # not host:port: let Ray interpret it
    try:
        with socket.create_connection(
            (host.strip("[]") or "127.0.0.1", int(port)), _CONNECT_TIMEOUT
        ):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"RayTaskRunner cannot reach the Ray cluster at {address!r}: {exc}. Check the "
            "address (the head node's host:port, by default port 6379, or ray://host:10001 "
            "for Ray Client) and that the cluster is running."
        ) from None
