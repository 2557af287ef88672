"""Steps the task and flow engines share: hooks, retry decisions, crashes, failure notes."""

from __future__ import annotations

__all__ = (
    "call_hooks",
    "crash_state",
    "is_cancellation",
    "note_failure",
    "retry_wait",
    "should_retry",
    "wait_before_retry",
)

import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..states import AwaitingRetry, Cancelled, State, StateDetails, exception_to_crashed_state
from .effects import CallHook, Sleep, Steps
from .retries import jittered, retry_delay

LoggerFactory = Callable[[], logging.LoggerAdapter]  # type: ignore[type-arg]
_NOTE_PREFIX = "fluvial: "


def call_hooks(
    hooks: Sequence[Callable[..., Any]],
    subject: Any,
    run: Any,
    state: State[Any],
    logger: LoggerFactory,
) -> Steps[None]:
    """Call each hook with ``(task_or_flow, run, state)``; a failing hook is logged, not raised."""
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))
        try:
            yield CallHook(hook, (subject, run, state))
        except Exception:
            logger().error(
                "An error was encountered while running hook %r (in response to state %s); "
                "the run's state is unchanged",
                name,
                state.name,
                exc_info=True,
            )
        else:
            logger().debug("Hook %r finished running successfully", name)


def should_retry(
    condition: Callable[..., Any] | None, args: tuple[Any, ...], logger: LoggerFactory
) -> Steps[bool]:
    """Ask ``retry_condition_fn`` (sync or async, any callable) whether to retry."""
    if condition is None:
        return True
    try:
        verdict = yield CallHook(condition, args)
    except Exception:
        logger().error(
            "retry_condition_fn %r raised; not retrying",
            getattr(condition, "__name__", condition),
            exc_info=True,
        )
        return False
    return bool(verdict)


def wait_before_retry(
    delays: float | tuple[float, ...], jitter_factor: float | None, retry_number: int
) -> float:
    """Return the seconds to wait before retry *retry_number*, jitter applied."""
    return jittered(retry_delay(delays, retry_number), jitter_factor)


def retry_wait(
    run: Any,
    failed: State[Any],
    delays: float | tuple[float, ...],
    jitter_factor: float | None,
    retries: int,
    logger: logging.LoggerAdapter,  # type: ignore[type-arg]
) -> Steps[None]:
    """Log the retry, and wait (as AwaitingRetry) before it when there is a delay."""
    delay = wait_before_retry(delays, jitter_factor, run.run_count)
    logger.info(
        "%s - Retry %d/%d will start %s",
        failed.message,
        run.run_count,
        retries,
        f"{delay:.3g} second(s) from now" if delay else "immediately",
    )
    if delay > 0:
        when = datetime.now(UTC) + timedelta(seconds=delay)
        run.set_state(AwaitingRetry(scheduled_time=when))
        yield Sleep(delay)


def is_cancellation(exc: BaseException) -> bool:
    """Return whether *exc* is an event-loop cancellation (asyncio or trio)."""
    # asyncio is only consulted if something already imported it.
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and isinstance(exc, asyncio.CancelledError):
        return True
    kind = type(exc)
    return kind.__name__ == "Cancelled" and kind.__module__.startswith("trio")


def crash_state(exc: BaseException, details: StateDetails) -> State[Any]:
    """Return the final state for a run interrupted by *exc*: Cancelled or Crashed."""
    if is_cancellation(exc):
        return Cancelled(message="The run was cancelled.", data=exc, state_details=details)
    return exception_to_crashed_state(exc, state_details=details)


def note_failure(state: State[Any], what: str, attempt: int, attempts: int) -> None:
    """Add one note to the failed state's exception naming the run and the attempt."""
    exc = state.data
    if not isinstance(exc, BaseException):
        return
    notes = getattr(exc, "__notes__", ())
    if any(note.startswith(_NOTE_PREFIX) for note in notes):
        return
    exc.add_note(f"{_NOTE_PREFIX}raised in {what}, attempt {attempt} of {attempts}")
