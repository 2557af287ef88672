"""Run-aware logging on top of the standard library's ``logging``.

fluvial logs to the ``fluvial`` logger tree. Records made through :func:`get_run_logger` carry
``flow_run_name``, ``flow_run_id``, ``flow_name``, ``task_run_name``, ``task_run_id`` and
``task_name`` attributes, so any handler can use them.

An embedded library must not take over an application's logging, so fluvial installs a console
handler only when a run starts, only once, and only if neither the ``fluvial`` logger nor the
root logger has a handler yet; ``FLUVIAL_LOGGING_SETUP=false`` turns even that off. At that
first run the ``fluvial`` logger's level, if unset, becomes ``FLUVIAL_LOGGING_LEVEL`` (INFO).
"""

from __future__ import annotations

__all__ = (
    "disable_run_logger",
    "flow_run_logger",
    "get_logger",
    "get_run_logger",
    "print_as_log",
    "task_run_logger",
)

import builtins
import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..context import _flow_run_context, _task_run_context
from ..exceptions import MissingContextError

_ROOT = "fluvial"
_original_print = builtins.print
_setup_done = False
_run_logger_disabled: ContextVar[bool] = ContextVar("fluvial.run_logger_disabled", default=False)


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the ``fluvial`` logger, or its child called *name*."""
    return logging.getLogger(_ROOT if not name else f"{_ROOT}.{name}")


class RunLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger adapter that stamps each record with the run it came from."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Add the run fields to the record's ``extra``."""
        extra = kwargs.get("extra")
        kwargs["extra"] = dict(self.extra or {}, **extra) if extra else self.extra
        return msg, kwargs


def _flow_extra(flow_run: Any) -> dict[str, Any]:
    return {
        "flow_run_name": flow_run.name,
        "flow_run_id": str(flow_run.id),
        "flow_name": flow_run.flow_name,
    }


def _task_extra(task_run: Any) -> dict[str, Any]:
    return {
        "task_run_name": task_run.name,
        "task_run_id": str(task_run.id),
        "task_name": task_run.task_name,
    }


def flow_run_logger(flow_run: Any, flow: Any = None, **kwargs: Any) -> RunLoggerAdapter:
    """Return a logger bound to *flow_run* (Prefect's signature; *flow* is optional)."""
    extra = _flow_extra(flow_run)
    if flow is not None:
        extra["flow_name"] = flow.name
    return RunLoggerAdapter(get_logger("flow_runs"), {**extra, **kwargs})


def task_run_logger(
    task_run: Any, task: Any = None, flow_run: Any = None, flow: Any = None, **kwargs: Any
) -> RunLoggerAdapter:
    """Return a logger bound to *task_run* and, when given or current, its flow run."""
    extra = _task_extra(task_run)
    if flow_run is None:
        flow_ctx = _flow_run_context.get()
        flow_run = flow_ctx.flow_run if flow_ctx is not None else None
    if flow_run is not None:
        extra.update(_flow_extra(flow_run))
    if flow is not None:
        extra["flow_name"] = flow.name
    if task is not None:
        extra["task_name"] = task.name
    return RunLoggerAdapter(get_logger("task_runs"), {**extra, **kwargs})


def get_run_logger(context: Any = None, **kwargs: Any) -> RunLoggerAdapter:
    """Return a logger bound to the current task run, else the current flow run.

    Args:
        context: a ``TaskRunContext`` or ``FlowRunContext`` to bind to instead of the current one.
        kwargs: extra fields added to every record.

    Raises:
        MissingContextError: called outside a flow or task run and no context given.
    """
    task_ctx = context if hasattr(context, "task_run") else None
    flow_ctx = context if hasattr(context, "flow_run") else None
    if context is None:
        task_ctx = _task_run_context.get()
        flow_ctx = _flow_run_context.get()
    if task_ctx is not None:
        flow_run = flow_ctx.flow_run if flow_ctx is not None else None
        adapter = task_run_logger(task_ctx.task_run, flow_run=flow_run)
    elif flow_ctx is not None:
        adapter = flow_run_logger(flow_ctx.flow_run)
    elif _run_logger_disabled.get():
        adapter = RunLoggerAdapter(_disabled_logger(), {})
    else:
        raise MissingContextError(
            "there is no active flow or task run; get_run_logger() works only inside a "
            "@flow or @task. Use fluvial.logging.get_logger() or logging.getLogger() elsewhere."
        )
    if kwargs:
        adapter.extra = {**(adapter.extra or {}), **kwargs}
    return adapter


def _disabled_logger() -> logging.Logger:
    logger = logging.getLogger(f"{_ROOT}.disabled")
    logger.disabled = True
    return logger


@contextmanager
def disable_run_logger() -> Iterator[None]:
    """Make ``get_run_logger()`` outside a run return a logger that drops everything.

    For testing a task's or flow's function directly (``my_task.fn()``) when it logs through
    ``get_run_logger()``.
    """
    token = _run_logger_disabled.set(True)
    try:
        yield
    finally:
        _run_logger_disabled.reset(token)


class _RunFormatter(logging.Formatter):
    """Formats records as ``12:00:00.000 | INFO    | Task run 'add-1f3' - message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Put the run label in front of the message."""
        task_run = getattr(record, "task_run_name", None)
        flow_run = getattr(record, "flow_run_name", None)
        if task_run is not None:
            label = f"Task run {task_run!r}"
        elif flow_run is not None:
            label = f"Flow run {flow_run!r}"
        else:
            label = record.name
        record.message = f"{label} - {record.message}"
        return super().formatMessage(record)


def setup_logging() -> None:
    """Install fluvial's console handler once, unless the application configured logging."""
    global _setup_done
    if _setup_done:
        return
    _setup_done = True
    from .._config import run_config

    config = run_config()
    logger = logging.getLogger(_ROOT)
    if logger.level == logging.NOTSET:
        # Prefect's default: run loggers emit INFO and up unless told otherwise.
        logger.setLevel(config.logging_level)
    if not config.logging_setup:
        return
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RunFormatter())
    logger.addHandler(handler)


def _patched_print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    """Send ``print`` output to the run logger when the current run has ``log_prints``."""
    if file is None or file is sys.stdout:
        task_ctx = _task_run_context.get()
        ctx: Any = task_ctx if task_ctx is not None else _flow_run_context.get()
        if ctx is not None and ctx.log_prints:
            text = (sep if sep is not None else " ").join(str(arg) for arg in args)
            get_run_logger(ctx).info(text)
            return
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


def print_as_log(*args: Any, **kwargs: Any) -> None:
    """Log a ``print`` call's text at INFO on the current run's logger."""
    _patched_print(*args, **kwargs)


def enable_print_capture() -> None:
    """Route ``print`` through the run logger for runs that set ``log_prints=True``.

    The replacement consults the current run's context on each call and falls back to the real
    ``print`` outside such runs, so installing it once for the process is safe.
    """
    if builtins.print is not _patched_print:
        builtins.print = _patched_print
