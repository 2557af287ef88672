"""How ``fluvial runs`` draws recorded runs: a table of runs, and one run as a task tree."""

from __future__ import annotations

__all__ = ("run_as_json", "run_tree", "runs_table", "state_style")

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..runs._resume import process_gone
from ._output import format_duration, format_time, one_line

if TYPE_CHECKING:
    from rich.table import Table
    from rich.tree import Tree

    from ..runs import RunAttempt, RunRecord, TaskRunRecord

_STYLES = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "bold red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "PENDING": "dim",
    "PAUSED": "yellow",
}
_ERROR_WIDTH = 120


def state_style(state: str, name: str) -> str:
    """Return *name* wrapped in rich markup coloured by its state type."""
    style = "blue" if name == "Cached" else _STYLES.get(state, "")
    return f"[{style}]{name}[/]" if style else name


def _seconds(value: Any) -> float | None:
    return None if value is None else value.total_seconds()


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "-"


def runs_table(runs: Sequence[RunRecord], storage: str) -> Table:
    """Return the table of ``fluvial runs ls``."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"Flow runs in {storage}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    # Ids and times stay whole; names and task counts wrap when the terminal is narrow.
    table.add_column("id", no_wrap=True, min_width=36)
    for column in ("flow", "name"):
        table.add_column(column, overflow="fold", min_width=12)
    for column in ("state", "started", "duration"):
        table.add_column(column, no_wrap=True)
    table.add_column("tasks", overflow="fold", min_width=14)
    for run in runs:
        gone = process_gone(run)
        table.add_row(
            str(run.id),
            run.flow_name,
            run.name,
            state_style(run.state, run.state_name) + (" [red]*[/]" if gone else ""),
            format_time(run.started),
            format_duration(_seconds(run.duration)),
            _counts(run.task_counts),
        )
        if gone:  # short in the column, explained once under the table
            table.caption = (
                "[red]*[/] its process on this machine ended without recording an end: "
                "`fluvial runs resume ID` finishes it"
            )
            table.caption_justify = "left"
    return table


def _task_line(task: TaskRunRecord) -> str:
    parts = [
        f"[bold]{task.name}[/]",
        state_style(task.state, task.state_name),
        format_duration(_seconds(task.duration)),
    ]
    if task.attempts > 1:
        parts.append(f"{task.attempts} attempts")
    if task.is_cached:
        parts.append("cache hit")
    line = "  ".join(parts)
    if task.error:
        error = one_line(task.error)
        error = error if len(error) <= _ERROR_WIDTH else error[: _ERROR_WIDTH - 3] + "..."
        line += f"\n[red]{_escape(error)}[/]"
    return line


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _header(run: RunRecord) -> str:
    lines = [
        f"[bold]{run.name}[/] ({run.id})  {state_style(run.state, run.state_name)}",
        f"flow {run.flow_name!r} from {run.import_path or '?'}",
        (
            f"started {format_time(run.started)}, ended {format_time(run.ended)}, "
            f"took {format_duration(_seconds(run.duration))}"
        ),
    ]
    if run.parameters_preview:
        shown = ", ".join(f"{k}={v}" for k, v in run.parameters_preview.items())
        lines.append(f"parameters: {_escape(shown)}")
    if process_gone(run):
        pid = run.attempts[-1].pid
        lines.append(
            f"[red]its process (pid {pid}) ended without recording an end[/]; "
            f"`fluvial runs resume {run.id}` finishes it"
        )
    if run.message and run.state != "COMPLETED":
        lines.append(f"[red]{_escape(one_line(run.message))}[/]")
    if run.result_ref:
        lines.append(f"result: {run.result_ref}")
    if run.parent_id:
        lines.append(f"subflow of {run.parent_id}")
    return "\n".join(lines)


def _attempt_label(number: int, attempt: RunAttempt | None) -> str:
    if attempt is None:
        return f"attempt {number}"
    return (
        f"attempt {number}: {attempt.state_name or '?'}, started {format_time(attempt.started)}"
        f" on {attempt.host} (pid {attempt.pid})"
    )


def _shown(tasks: list[TaskRunRecord], limit: int | None) -> list[TaskRunRecord]:
    """Return at most *limit* task runs, unfinished and failed ones first, in their order."""
    if limit is None or len(tasks) <= limit:
        return tasks
    ok = ("COMPLETED",)
    keep = {id(t) for t in [t for t in tasks if t.state not in ok][:limit]}
    keep |= {id(t) for t in [t for t in tasks if t.state in ok][: limit - len(keep)]}
    return [t for t in tasks if id(t) in keep]


def run_tree(run: RunRecord, task_limit: int | None = None) -> Tree:
    """Return ``fluvial runs show``'s tree: the run, each attempt, and their task runs.

    With *task_limit*, each attempt shows at most that many task runs (those that did not
    complete first) and says how many it left out.
    """
    from rich.tree import Tree

    tree = Tree(_header(run))
    tasks = run.task_runs or ()
    attempts = {a.attempt: a for a in run.attempts}
    for number in sorted({*attempts, *(t.flow_attempt for t in tasks)} or {1}):
        branch = tree.add(_attempt_label(number, attempts.get(number)))
        mine = [t for t in tasks if t.flow_attempt == number]
        shown = _shown(mine, task_limit)
        for task in shown:
            branch.add(_task_line(task))
        if len(shown) < len(mine):
            branch.add(f"[dim]… and {len(mine) - len(shown)} more task runs (--all shows them)[/]")
        if not mine:
            branch.add("[dim]no task runs recorded[/]")
    for child in run.children:
        tree.add(f"subflow run {child}")
    return tree


def run_as_json(run: RunRecord) -> dict[str, Any]:
    """Return *run* as JSON-ready values (parameters as their previews: values may be any)."""
    # Parameter values may be anything (asdict would deep-copy them): keep their previews.
    data = dataclasses.asdict(dataclasses.replace(run, parameters=dict(run.parameters_preview)))
    data["duration"] = _seconds(run.duration)
    data["process_gone"] = process_gone(run)
    return data
