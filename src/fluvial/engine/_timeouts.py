"""Timeouts for sync functions, which Python cannot interrupt from outside.

A sync function with a timeout runs on a helper thread while the calling thread waits. At the
deadline the caller asks the helper to stop (an asynchronous exception, delivered at its next
bytecode) and reports the timeout at once either way. A function blocked in C code, such as
``time.sleep`` or a socket read, cannot see that request: its thread is abandoned, with a
warning, and keeps running in the background until the call returns. Unlike SIGALRM this
works on any thread, and unlike Prefect's watcher thread it never reports late.
"""

from __future__ import annotations

__all__ = ("call_with_timeout",)

import contextvars
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

_logger = logging.getLogger("fluvial.engine")
# How long to give a function to honour the stop request before calling its thread abandoned.
_STOP_GRACE_SECONDS = 0.05


class _StopRequested(BaseException):
    """Delivered into a timed-out helper thread; BaseException so `except Exception` misses it."""


def call_with_timeout(
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    timeout: float,
    timeout_error: type[BaseException],
) -> Any:
    """Return ``fn(*args, **kwargs)``, or raise *timeout_error* after *timeout* seconds."""
    outcome: list[Any] = []
    finished = threading.Event()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.append((True, context.run(fn, *args, **kwargs)))
        except _StopRequested:
            pass
        except BaseException as exc:  # handed back to the waiting thread unchanged
            outcome.append((False, exc))
        finally:
            finished.set()

    name = getattr(fn, "__name__", "function")
    helper = threading.Thread(target=target, name=f"fluvial-timeout-{name}", daemon=True)
    helper.start()
    # No blocking_region here: the helper thread is doing this worker's task, so the worker
    # keeps its slot and max_workers still bounds the work in progress.
    done = finished.wait(timeout)
    if done and outcome:
        ok, value = outcome[0]
        if ok:
            return value
        raise value
    _request_stop(helper)
    if not finished.wait(_STOP_GRACE_SECONDS):
        _logger.warning(
            "%s() is still running %gs after its timeout and did not stop when asked "
            "(it is probably blocked in C code such as time.sleep or I/O); its thread "
            "%r is abandoned and will finish in the background. Use an async function "
            "or check for cancellation to make the timeout stop the work itself.",
            name,
            timeout,
            helper.name,
        )
    raise timeout_error(f"run exceeded its timeout of {timeout:g} second(s)")


def _request_stop(thread: threading.Thread) -> None:
    if thread.ident is None:
        return
    import ctypes  # only when a timeout fires

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(_StopRequested)
    )
