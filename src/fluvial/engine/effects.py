"""The effects the engine asks for, and the two drivers that perform them.

The task and flow engines are generators: they decide what happens next and ``yield`` an
effect (call the user's function, call a hook, sleep before a retry, wait for upstream
futures). A driver performs the effect and sends the outcome back in, or throws the exception
the effect raised. :func:`drive_sync` performs effects with plain calls and never starts an event
loop; :func:`drive_async` awaits them. This is how one engine serves sync and async flows and
tasks without the two hand-synchronised copies Prefect keeps (DESIGN.md, principle 2).
"""

from __future__ import annotations

__all__ = (
    "CallFunction",
    "CallHook",
    "Effect",
    "Sleep",
    "WaitFor",
    "drive_async",
    "drive_async_stream",
    "drive_sync",
    "drive_sync_stream",
)

import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from types import AsyncGeneratorType, CoroutineType
from typing import Any, TypeVar

from .._blocking import blocking_region, stepping_aside
from ._bridge import run_coroutine_blocking
from ._timeouts import call_with_timeout

T = TypeVar("T")

Steps = Generator["Effect", Any, T]


class Effect:
    """Something the engine needs done; subclasses say how, once for each driver."""

    __slots__ = ()

    def run_sync(self) -> Any:
        """Perform the effect in the calling thread."""
        raise NotImplementedError

    async def run_async(self) -> Any:
        """Perform the effect on the running event loop."""
        raise NotImplementedError


class CallFunction(Effect):
    """Call the user's flow or task function, within a timeout when one is set."""

    __slots__ = ("args", "fn", "kwargs", "timeout", "timeout_error")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
        timeout_error: type[BaseException],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.timeout = timeout
        self.timeout_error = timeout_error

    def run_sync(self) -> Any:
        """Call the function here; with a timeout it runs on a helper thread (see _timeouts)."""
        if self.timeout is None:
            return self.fn(*self.args, **self.kwargs)
        return call_with_timeout(self.fn, self.args, self.kwargs, self.timeout, self.timeout_error)

    async def run_async(self) -> Any:
        """Call the function and await what it returns, cancelling it at the timeout."""
        result = self.fn(*self.args, **self.kwargs)
        if result.__class__ is AsyncGeneratorType:
            # An async generator task run to completion (not streamed): keep its items.
            result = _collect(result)
        if not inspect.isawaitable(result):
            return result
        if self.timeout is None:
            return await result
        import anyio

        with anyio.move_on_after(self.timeout) as scope:
            return await result
        if scope.cancelled_caught:
            raise self.timeout_error(_timeout_message(self.timeout))
        raise AssertionError("unreachable")  # pragma: no cover


async def _collect(items: AsyncGenerator[Any, None]) -> list[Any]:
    return [item async for item in items]


def _timeout_message(seconds: float) -> str:
    return f"run exceeded its timeout of {seconds:g} second(s)"


class CallHook(Effect):
    """Call a hook, retry condition or similar callable that may be sync or async."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any]) -> None:
        self.fn = fn
        self.args = args

    def run_sync(self) -> Any:
        """Call it; an awaitable result runs on fluvial's background event loop."""
        result = self.fn(*self.args)
        if inspect.isawaitable(result):
            return run_coroutine_blocking(result)
        return result

    async def run_async(self) -> Any:
        """Call it and await an awaitable result, shielded so hooks run even when cancelled."""
        result = self.fn(*self.args)
        if inspect.isawaitable(result):
            import anyio

            with anyio.CancelScope(shield=True):
                return await result
        return result


class Sleep(Effect):
    """Wait before the next attempt."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run_sync(self) -> None:
        """Sleep without holding a worker slot of the thread runner."""
        with blocking_region():
            time.sleep(self.seconds)

    async def run_async(self) -> None:
        """Sleep on the event loop."""
        import anyio

        await stepping_aside(anyio.sleep(self.seconds))


class WaitFor(Effect):
    """Wait until futures are done, then return ``then()``."""

    __slots__ = ("futures", "then")

    def __init__(self, futures: Sequence[Any], then: Callable[[], Any]) -> None:
        self.futures = futures
        self.then = then

    def run_sync(self) -> Any:
        """Block this thread until every future is done."""
        for future in self.futures:
            future.wait()
        return self.then()

    async def run_async(self) -> Any:
        """Wait on a worker thread so the event loop keeps running."""
        pending = [future for future in self.futures if not future.done()]
        if pending:
            import anyio.to_thread

            await stepping_aside(
                anyio.to_thread.run_sync(_wait_all, pending, abandon_on_cancel=True)
            )
        return self.then()


def _wait_all(futures: Sequence[Any]) -> None:
    for future in futures:
        future.wait()


def drive_sync(steps: Steps[T]) -> T:
    """Run an engine generator to its end, performing each effect in this thread."""
    try:
        effect = next(steps)
        while True:
            try:
                outcome = effect.run_sync()
            except BaseException as exc:  # every outcome, crashes included, goes back in
                effect = steps.throw(exc)
            else:
                effect = steps.send(outcome)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def drive_async(steps: Steps[T]) -> T:
    """Run an engine generator to its end, awaiting each effect."""
    try:
        effect = next(steps)
        while True:
            try:
                if effect.__class__ is CallFunction and effect.timeout is None:
                    # The common case, inlined: one coroutine fewer per task run.
                    outcome = effect.fn(*effect.args, **effect.kwargs)
                    if outcome.__class__ is CoroutineType or inspect.isawaitable(outcome):
                        outcome = await outcome
                    elif outcome.__class__ is AsyncGeneratorType:
                        outcome = [item async for item in outcome]
                else:
                    outcome = await effect.run_async()
            except BaseException as exc:  # cancellation too: the engine records it, re-raises
                effect = steps.throw(exc)
            else:
                effect = steps.send(outcome)
    except StopIteration as stop:
        result: T = stop.value
        return result


def drive_sync_stream(steps: Steps[T]) -> Generator[Any, None, T]:
    """Like :func:`drive_sync`, for a generator task: its items are yielded to the caller.

    The function's generator is consumed here, item by item, while the run is Running; what
    it raises goes back into the engine (so retries and failure states apply as usual).
    """
    try:
        effect = next(steps)
        while True:
            try:
                if effect.__class__ is CallFunction:
                    call: CallFunction = effect
                    outcome = yield from call.fn(*call.args, **call.kwargs)
                else:
                    outcome = effect.run_sync()
            except BaseException as exc:
                effect = steps.throw(exc)
            else:
                effect = steps.send(outcome)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def drive_async_stream(steps: Steps[Any]) -> AsyncGenerator[Any, None]:
    """Like :func:`drive_async`, for an async generator task; the final state is not returned.

    Async generators cannot return a value, so the caller learns of a failure only by the
    exception this re-raises.
    """
    try:
        effect = next(steps)
        while True:
            try:
                if effect.__class__ is CallFunction:
                    call: CallFunction = effect
                    async for item in call.fn(*call.args, **call.kwargs):
                        yield item
                    outcome = None
                else:
                    outcome = await effect.run_async()
            except BaseException as exc:
                effect = steps.throw(exc)
            else:
                effect = steps.send(outcome)
    except StopIteration as stop:
        stop.value.result()
