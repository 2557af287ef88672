"""Shared lookup for the runtime modules: environment overrides, converted to the right type."""

from __future__ import annotations

__all__ = ("MISSING", "env_override")

import json
import os
from typing import Any

MISSING: Any = object()

# Attributes whose override is not a plain string, and how to read it.
_INTEGERS = frozenset({"run_count"})
_MAPPINGS = frozenset({"parameters"})
_LISTS = frozenset({"tags"})


def env_override(section: str, name: str) -> Any:
    """Return ``FLUVIAL__RUNTIME__<SECTION>__<NAME>`` as the attribute's type, or MISSING.

    Integers are parsed, ``parameters`` is a JSON object and ``tags`` a JSON list or a
    comma-separated string, as Prefect's ``PREFECT__RUNTIME__...`` overrides are.

    Raises:
        ValueError: the variable is set but cannot be read as the attribute's type.
    """
    variable = f"FLUVIAL__RUNTIME__{section.upper()}__{name.upper()}"
    raw = os.environ.get(variable)
    if raw is None:
        return MISSING
    try:
        if name in _INTEGERS:
            return int(raw)
        if name in _MAPPINGS:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
        if name in _LISTS:
            if raw.lstrip().startswith("["):
                return list(json.loads(raw))
            return [item.strip() for item in raw.split(",") if item.strip()]
    except ValueError as exc:
        raise ValueError(f"{variable}={raw!r} cannot be read: {exc}") from None
    return raw
