"""The settings the engine reads at every run start, without paying for pydantic when it can.

:mod:`fluvial.settings` is the real thing (pydantic-settings: validation, profiles, sources),
but importing pydantic-settings costs over 100 ms, more than the budget for a whole first flow
run. When nothing is configured (no ``FLUVIAL_*`` variable, no profiles file, and the settings
module not in use) every value is a default, so this module hands out the defaults without
importing it. Otherwise it reads :func:`fluvial.settings.get_current_settings`, which caches.
"""

from __future__ import annotations

__all__ = ("RunConfig", "forget_converted", "run_config", "use_config")

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The settings a run needs, as plain values."""

    results_persist_by_default: bool = False
    results_journal: bool = True
    results_default_serializer: str = "pickle"
    result_storage_url: str = ""
    tasks_refresh_cache: bool = False
    tasks_default_persist_result: bool | None = None
    tasks_unhashable_inputs: str = "warn"
    thread_pool_max_workers: int = 64
    process_pool_max_workers: int | None = None  # None: the number of CPUs
    logging_level: str = "INFO"
    logging_setup: bool = True
    # The named concurrency limits (settings plus fluvial.concurrency API), a Limits snapshot;
    # it travels with tasks so workers see the flow process's limits.
    concurrency_limits: Any = None


# Set on workers: the settings of the flow process that sent the task win over the worker's.
_shipped: ContextVar[RunConfig | None] = ContextVar("fluvial.shipped_config", default=None)
_defaults: RunConfig | None = None
_unconfigured: bool | None = None
_converted: tuple[Any, RunConfig] | None = None


def run_config() -> RunConfig:
    """Return the settings in effect for a run starting now."""
    shipped = _shipped.get()
    if shipped is not None:
        return shipped
    if "fluvial.settings" not in sys.modules and _nothing_configured():
        return _default_config()
    return _from_settings(_settings_getter()())


_get_settings: Callable[[], Any] | None = None


def _settings_getter() -> Callable[[], Any]:
    # Imported once and kept: "from .settings import ..." inside run_config ran importlib's
    # Python-level fromlist handling (fluvial.settings is a package), a microsecond per task.
    global _get_settings
    if _get_settings is None:
        from .settings import get_current_settings

        _get_settings = get_current_settings
    return _get_settings


def _nothing_configured() -> bool:
    # Decided once per process: scanning the environment costs microseconds per run. Code that
    # configures fluvial later goes through fluvial.settings, which takes over from then on.
    global _unconfigured
    if _unconfigured is None:
        _unconfigured = not any(_is_setting(name) for name in os.environ) and not (
            Path("~/.fluvial/profiles.toml").expanduser().exists()
        )
    return _unconfigured


def _is_setting(name: str) -> bool:
    # FLUVIAL__RUNTIME__... variables are runtime overrides, not settings.
    return name.startswith("FLUVIAL_") and not name.startswith("FLUVIAL__")


def _default_config() -> RunConfig:
    global _defaults
    if _defaults is None:
        from .concurrency._registry import limits_snapshot

        storage = str(Path("~/.fluvial/storage").expanduser())
        _defaults = RunConfig(result_storage_url=storage, concurrency_limits=limits_snapshot(""))
    return _defaults


def forget_converted() -> None:
    """Rebuild the run config on next use (concurrency limits changed through the API)."""
    global _defaults, _converted
    _defaults = _converted = None


def _from_settings(settings: Any) -> RunConfig:
    # get_current_settings() returns the same object until something changes, so one
    # conversion per settings object is enough.
    global _converted
    if _converted is not None and _converted[0] is settings:
        return _converted[1]
    from .concurrency._registry import limits_snapshot

    config = RunConfig(
        results_persist_by_default=settings.results_persist_by_default,
        results_journal=settings.results_journal,
        results_default_serializer=settings.results_default_serializer,
        result_storage_url=settings.result_storage_url,
        tasks_refresh_cache=settings.tasks_refresh_cache,
        tasks_default_persist_result=settings.tasks_default_persist_result,
        tasks_unhashable_inputs=settings.tasks_unhashable_inputs,
        thread_pool_max_workers=settings.thread_pool_max_workers,
        process_pool_max_workers=settings.process_pool_max_workers,
        logging_level=settings.logging_level,
        logging_setup=settings.logging_setup,
        concurrency_limits=limits_snapshot(settings.concurrency_limits),
    )
    _converted = (settings, config)
    return config


@contextmanager
def use_config(config: RunConfig) -> Iterator[None]:
    """Run the block with *config* in effect (workers use the submitting process's settings)."""
    token = _shipped.set(config)
    try:
        yield
    finally:
        _shipped.reset(token)
