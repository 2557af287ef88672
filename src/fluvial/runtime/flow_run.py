"""The current flow run: ``id``, ``name``, ``flow_name``, ``parameters``, ``run_count``, ..."""

from __future__ import annotations

__all__ = (
    "flow_name",
    "flow_version",
    "id",
    "name",
    "parameters",
    "parent_deployment_id",
    "parent_flow_run_id",
    "root_flow_run_id",
    "run_count",
    "scheduled_start_time",
    "tags",
)

from typing import Any

from ..context import _flow_run_context
from ._lookup import MISSING, env_override


def _attribute(name: str) -> Any:
    override = env_override("flow_run", name)
    if override is not MISSING:
        return override
    ctx = _flow_run_context.get()
    if ctx is None:
        return {"parameters": {}, "tags": [], "run_count": 0}.get(name)
    run = ctx.flow_run
    if name == "id":
        return str(run.id)
    if name == "tags":
        return sorted(run.tags)
    if name == "parameters":
        return dict(ctx.parameters)
    if name == "scheduled_start_time":
        return run.start_time or run.expected_start_time
    if name in ("parent_flow_run_id", "root_flow_run_id"):
        value = getattr(run, name)
        return str(value) if value is not None else None
    if name == "parent_deployment_id":
        return None
    if name == "flow_version":
        return ctx.flow.version
    if name == "run_count":
        return run.run_count
    return getattr(run, name)


def __getattr__(name: str) -> Any:
    if name in __all__:
        return _attribute(name)
    raise AttributeError(f"fluvial.runtime.flow_run has no attribute {name!r}")
