"""Run-aware logging: ``get_run_logger()`` and friends (Prefect's ``prefect.logging``)."""

from __future__ import annotations

__all__ = (
    "disable_run_logger",
    "flow_run_logger",
    "get_logger",
    "get_run_logger",
    "print_as_log",
    "task_run_logger",
)

from .loggers import (
    disable_run_logger,
    flow_run_logger,
    get_logger,
    get_run_logger,
    print_as_log,
    task_run_logger,
)
