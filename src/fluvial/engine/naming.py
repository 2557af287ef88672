"""Run names from ``task_run_name`` / ``flow_run_name``: a template or a callable."""

from __future__ import annotations

__all__ = ("render_run_name",)

import inspect
from collections.abc import Callable
from typing import Any

from ..exceptions import DefinitionError


def render_run_name(spec: str | Callable[..., str], parameters: dict[str, Any]) -> str:
    """Return the run name given by *spec* for a run with these *parameters*.

    A string is a ``str.format`` template over the parameters, e.g. ``"fetch-{city}"``. A
    callable takes no arguments, or one named ``parameters`` that receives the dict.

    Raises:
        DefinitionError: the template names a missing parameter, or the callable returns
            something that is not a string.
    """
    if isinstance(spec, str):
        try:
            return spec.format(**parameters)
        except (KeyError, IndexError) as exc:
            raise DefinitionError(
                f"run name template {spec!r} refers to {exc}, which is not a parameter; "
                f"parameters are: {', '.join(parameters) or '(none)'}"
            ) from None
    name = spec(parameters) if _takes_parameters(spec) else spec()
    if not isinstance(name, str):
        raise DefinitionError(
            f"run name callable {getattr(spec, '__name__', spec)!r} must return a str, "
            f"got {type(name).__name__}"
        )
    return name


def _takes_parameters(fn: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return "parameters" in signature.parameters
