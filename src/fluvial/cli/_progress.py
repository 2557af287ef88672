"""The live view of ``fluvial run``: task runs counted by state, as a rich progress bar.

:class:`TaskStates` listens to run events (:func:`fluvial.runs.add_listener`), which arrive on
whichever thread changed a state, and keeps the latest state of every task run. The bar shows
finished over seen task runs (the total grows as the flow submits more) and a count per state.
"""

from __future__ import annotations

__all__ = ("TaskStates", "live_progress")

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ._output import console

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..runs import RunEvent

# Shown first, in this order; any other state name follows.
_ORDER = ("Running", "Retrying", "Completed", "Cached", "Failed", "Crashed", "TimedOut")


class TaskStates:
    """The latest state name of each task run seen, and the first flow run's id.

    Counts are kept as the events arrive, so an event costs O(1) however many task runs the
    flow has; ``on_change`` is called at most every :attr:`interval` seconds (and once more
    by whoever draws the counts at the end).
    """

    #: The least time between two ``on_change`` calls, in seconds.
    interval = 0.1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[uuid.UUID, tuple[str, bool]] = {}
        self._by_name: Counter[str] = Counter()
        self._finished = 0
        self._last_change = 0.0
        self.flow_run_id: uuid.UUID | None = None
        self.flow_run_name: str | None = None
        #: Called after task state changes (the progress bar's refresh).
        self.on_change: Callable[[], None] | None = None

    def __call__(self, event: RunEvent) -> None:
        """Record *event* (a listener for :func:`fluvial.runs.add_listener`)."""
        if event.kind == "flow":
            if self.flow_run_id is None:
                self.flow_run_id, self.flow_run_name = event.run_id, event.name
            return
        now = time.monotonic()
        with self._lock:
            self._record(event.run_id, event.state.name, event.state.is_final())
            due = now - self._last_change >= self.interval
            if due:
                self._last_change = now
        if due and self.on_change is not None:
            self.on_change()

    def _record(self, run_id: uuid.UUID, name: str, final: bool) -> None:
        previous = self._latest.get(run_id)
        if previous is not None:
            self._by_name[previous[0]] -= 1
            self._finished -= previous[1]
        self._latest[run_id] = (name, final)
        self._by_name[name] += 1
        self._finished += final

    def counts(self) -> tuple[int, int, Counter[str]]:
        """Return (finished, seen, count per state name) of the task runs so far."""
        with self._lock:
            by_name = +self._by_name  # a copy without the zero counts
            return self._finished, len(self._latest), by_name

    def summary(self) -> str:
        """Return the counts as ``"2 Running · 5 Completed · 1 Cached"``."""
        _, _, by_name = self.counts()
        names = [n for n in _ORDER if n in by_name] + sorted(set(by_name) - set(_ORDER))
        return " · ".join(f"{by_name[name]} {name}" for name in names) or "no task runs yet"


def _progress_bar() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("tasks"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console(stderr=True),
        redirect_stdout=True,
        redirect_stderr=True,
    )


@contextmanager
def live_progress(enabled: bool) -> Iterator[TaskStates]:
    """Track task states for the block; draw a live bar on stderr when *enabled*."""
    from ..runs import add_listener

    states = TaskStates()
    remove = add_listener(states)
    try:
        if not enabled:
            yield states
            return
        progress = _progress_bar()
        bar = progress.add_task(states.summary(), total=None)

        def refresh() -> None:
            finished, seen, _ = states.counts()
            progress.update(bar, completed=finished, total=seen, description=states.summary())

        states.on_change = refresh
        with progress:
            yield states
            refresh()
    finally:
        remove()
