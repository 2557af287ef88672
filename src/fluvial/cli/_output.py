"""What the ``fluvial`` command prints: plain lines, rich tables, and one-line errors.

Plain lines (:func:`out`, :func:`note`) go straight to the streams, so scripted output is exact
and unwrapped. Rich is imported only by commands that draw tables, trees or progress bars
(:func:`console`). Every user error becomes ``error: <what happened>`` on stderr, optionally
followed by ``hint: <what to do>`` (:func:`report_error`); tracebacks are kept for bugs.
"""

from __future__ import annotations

__all__ = (
    "CommandError",
    "console",
    "format_bytes",
    "format_duration",
    "format_time",
    "note",
    "one_line",
    "out",
    "report_error",
    "report_usage_error",
)

import datetime as dt
import os
import sys
from typing import TYPE_CHECKING

from ..exceptions import FluvialError, MissingExtraError, StorageError

if TYPE_CHECKING:
    import typer
    from rich.console import Console

# Tables printed to a pipe or file are not squeezed into 80 columns: ids must stay whole.
_PIPE_WIDTH = 160


class CommandError(FluvialError):
    """A command was given something it cannot use; *hint* says what to do instead."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def out(line: str = "") -> None:
    """Write *line* to stdout as is."""
    sys.stdout.write(line + "\n")


def note(line: str) -> None:
    """Write a ``note:`` line to stderr: worth knowing, but not an error."""
    sys.stderr.write(f"note: {line}\n")


def console(stderr: bool = False) -> Console:
    """Return a rich console on stdout (or stderr); wide and colourless when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, stderr=stderr, highlight=False)
    width = int(os.environ.get("COLUMNS", "0") or 0) or _PIPE_WIDTH
    return Console(file=stream, width=width, no_color=True, highlight=False, soft_wrap=False)


def one_line(exc: BaseException | str) -> str:
    """Return the message of *exc* joined into one line (never empty)."""
    text = ""
    for line in (line.strip() for line in str(exc).splitlines()):
        if line:
            # A line ending in ":" introduces the next one; other lines are separate points.
            text += (" " if not text or text.endswith(":") else "; ") + line
    return text.strip() or type(exc).__name__


def _hint_for(exc: BaseException) -> str | None:
    if isinstance(exc, CommandError):
        return exc.hint
    if isinstance(exc, MissingExtraError):
        return None  # the message already names the pip install
    if isinstance(exc, StorageError) and "check" not in str(exc):
        return (
            "check the --storage URL (or FLUVIAL_RESULTS_DEFAULT_STORAGE) and that it is reachable"
        )
    return None


def report_error(exc: BaseException) -> int:
    """Print *exc* as ``error: ...`` (plus a ``hint: ...`` line when there is one); return 1."""
    sys.stderr.write(f"error: {one_line(exc)}\n")
    hint = _hint_for(exc)
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    return 1


def report_usage_error(exc: typer.TyperException) -> int:
    """Print a command-line parsing error and where to read the usage; return 1."""
    sys.stderr.write(f"error: {one_line(exc.format_message())}\n")
    # Usage errors carry the context of the command that refused its arguments.
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "fluvial"
    sys.stderr.write(f"hint: see '{path} --help'\n")
    return 1


def format_duration(seconds: float | None) -> str:
    """Return *seconds* as ``850ms``, ``12.3s``, ``4m05s`` or ``2h03m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_time(value: dt.datetime | None) -> str:
    """Return *value* in local time to the second, or ``-``."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_bytes(size: int | None) -> str:
    """Return *size* as ``512 B``, ``1.5 KB``, ``3.2 MB``, ``4.0 GB``; ``-`` when unknown."""
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
