"""The current task run: ``id``, ``name``, ``task_name``, ``parameters``, ``run_count``, ``tags``."""

from __future__ import annotations

__all__ = ("id", "name", "parameters", "run_count", "tags", "task_name")

from typing import Any

from ..context import _task_run_context
from ._lookup import MISSING, env_override


def _attribute(name: str) -> Any:
    override = env_override("task_run", name)
    if override is not MISSING:
        return override
    ctx = _task_run_context.get()
    if ctx is None:
        return {"parameters": {}, "tags": [], "run_count": 0}.get(name)
    run = ctx.task_run
    if name == "id":
        return str(run.id)
    if name == "tags":
        return sorted(run.tags)
    if name == "parameters":
        return dict(ctx.parameters)
    return getattr(run, name)


def __getattr__(name: str) -> Any:
    if name in __all__:
        return _attribute(name)
    raise AttributeError(f"fluvial.runtime.task_run has no attribute {name!r}")
