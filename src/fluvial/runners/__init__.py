"""Task runners: where submitted task runs execute.

``ThreadPoolTaskRunner`` (the default) runs tasks on threads of the flow process;
``ProcessPoolTaskRunner`` on worker processes of this machine.
"""

from __future__ import annotations

__all__ = (
    "ConcurrentTaskRunner",
    "DaskTaskRunner",
    "ProcessPoolTaskRunner",
    "RayTaskRunner",
    "TaskRunner",
    "ThreadPoolTaskRunner",
)

from typing import Any

from .base import TaskRunner
from .thread import ConcurrentTaskRunner, ThreadPoolTaskRunner


def __getattr__(name: str) -> Any:
    # The process runner imports multiprocessing machinery: load it on first use only.
    if name == "ProcessPoolTaskRunner":
        from .process import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner
    if name == "DaskTaskRunner":
        from .dask import DaskTaskRunner

        return DaskTaskRunner
    if name == "RayTaskRunner":
        # fluvial.runners.ray imports Ray itself only when a runner is entered.
        from .ray import RayTaskRunner

        return RayTaskRunner
    raise AttributeError(f"module 'fluvial.runners' has no attribute {name!r}")
