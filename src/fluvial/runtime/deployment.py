"""The current deployment: always empty, since fluvial runs flows without deployments.

Present so that code reading ``runtime.deployment.name`` ports from Prefect unchanged.
"""

from __future__ import annotations

__all__ = ("flow_run_id", "id", "name", "parameters", "version")

from typing import Any

from ._lookup import MISSING, env_override


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"fluvial.runtime.deployment has no attribute {name!r}")
    override = env_override("deployment", name)
    if override is not MISSING:
        return override
    if name == "flow_run_id":
        from . import flow_run

        return flow_run.id
    return {} if name == "parameters" else None
