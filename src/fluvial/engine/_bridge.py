"""A background event loop for the rare async callable met on a sync path.

A sync flow may have an async hook or retry condition. Starting an event loop per such call
would be slow and is what DESIGN.md forbids on the sync path, so one daemon thread runs a loop
for the whole process, started on first use.
"""

from __future__ import annotations

__all__ = ("run_coroutine_blocking",)

import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from .._blocking import blocking_region

if TYPE_CHECKING:
    import asyncio

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    import asyncio

    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="fluvial-async-bridge", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


def run_coroutine_blocking(awaitable: Awaitable[Any]) -> Any:
    """Run *awaitable* on the background loop, in a copy of the caller's context, and wait."""
    loop = _get_loop()
    result: concurrent.futures.Future[Any] = concurrent.futures.Future()
    context = contextvars.copy_context()

    async def wrapper() -> Any:
        return await awaitable

    def start() -> None:
        task = loop.create_task(wrapper(), context=context)
        task.add_done_callback(lambda t: _copy_outcome(t, result))

    loop.call_soon_threadsafe(start)
    with blocking_region():
        return result.result()


def _copy_outcome(task: asyncio.Task[Any], result: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        result.cancel()
    elif task.exception() is not None:
        result.set_exception(task.exception())
    else:
        result.set_result(task.result())
