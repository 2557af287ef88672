"""``fluvial runs ls|show|resume|rm``: the flow runs journaled in a result storage.

Runs are recorded where a persisting flow keeps its results (``fluvial run --storage URL``, or a
flow with ``result_storage``/``persist_result``), so every command takes ``--storage URL``
(default: the configured default result storage). A run id may be shortened to any prefix that
names one run. See :mod:`fluvial.runs` for the Python API these commands call.
"""

from __future__ import annotations

__all__ = ("app", "parse_since", "register", "resolve_id")

import datetime as dt
import re
import sys
import time
from typing import Annotated, Any

import typer

from ._app import JsonOption, StorageOption, group
from ._output import CommandError, console, out
from .run import AddressOption, ProgressOption, RunnerOption

app = group("runs", "List, inspect, resume and remove journaled flow runs.")

_ID = typer.Argument(metavar="ID", help="A flow run id, or a prefix naming one run.")
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Task runs per attempt that `runs show` draws unless --all (the rest are counted).
_TASKS_SHOWN = 100
_SINCE_HINT = "give a duration back from now (30m, 12h, 7d) or a date/time (2026-11-20T08:00)"


def register(root: typer.Typer) -> None:
    """Add the ``runs`` group to *root*."""
    root.add_typer(app)


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """Return the time *text* means: ``30m``/``12h``/``7d`` ago, or an ISO date or time.

    A date or time without a zone is local time.
    """
    match = _RELATIVE.match(text)
    if match:
        delta = dt.timedelta(**{_UNITS[match[2]]: float(match[1])})
        return (now or dt.datetime.now(dt.UTC)) - delta
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--since {text!r} is not a time", hint=_SINCE_HINT) from None
    return when if when.tzinfo is not None else when.astimezone()


def _location(storage: str | None) -> Any:
    from ..runs._read import journal_location

    return journal_location(storage)


def resolve_id(run_id: str, storage: str | None) -> str:
    """Return the full id of the one run whose id starts with *run_id*."""
    import uuid

    try:
        return str(uuid.UUID(run_id.strip()))
    except ValueError:
        pass
    from ..runs import JOURNAL_PREFIX
    from ..runs._read import _list

    location = _location(storage)
    wanted = run_id.strip().lower()
    matches = [name for name in _list(location, JOURNAL_PREFIX) if name.startswith(wanted)]
    if len(matches) == 1 and wanted:
        return matches[0]
    where = location.url
    if not matches:
        raise CommandError(
            f"no flow run id starts with {run_id!r} in {where}",
            hint="list the runs there with: fluvial runs ls --storage URL",
        )
    raise CommandError(
        f"{run_id!r} names {len(matches)} flow runs in {where}",
        hint="give more of the id: " + ", ".join(matches[:3]),
    )


def _dump_json(value: Any) -> None:
    import orjson

    sys.stdout.buffer.write(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


@app.command("ls")
def _ls(
    storage: StorageOption = None,
    flow: Annotated[str | None, typer.Option("--flow", help="Only runs of this flow.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Only runs in this state (failed, Cached...).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="WHEN", help="Only runs started since.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    as_json: JsonOption = False,
) -> int:
    """List recorded flow runs, newest first."""
    from ..runs import list_runs

    after = None if since is None else parse_since(since)
    runs = list_runs(storage, flow_name=flow, state=state, since=after, limit=limit)
    if as_json:
        from ._runs_view import run_as_json

        _dump_json([run_as_json(run) for run in runs])
        return 0
    url = _location(storage).url
    if not runs:
        filtered = " matching the filters" if (flow or state or since) else ""
        out(f"No flow runs{filtered} in {url}.")
        return 0
    from ._runs_view import runs_table

    console().print(runs_table(runs, url))
    return 0


@app.command("show")
def _show(
    run_id: Annotated[str, _ID],
    storage: StorageOption = None,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"Every task run, not only the first {_TASKS_SHOWN}.")
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """Show one run: its attempts and task runs with states, durations and errors."""
    from ..runs import read_run

    run = read_run(resolve_id(run_id, storage), storage)
    if as_json:
        from ._runs_view import run_as_json

        _dump_json(run_as_json(run))
        return 0
    from ._runs_view import run_tree

    console().print(run_tree(run, None if show_all else _TASKS_SHOWN))
    return 0


@app.command("resume")
def _resume(
    run_id: Annotated[str, _ID],
    storage: StorageOption = None,
    runner: RunnerOption = None,
    address: AddressOption = None,
    progress: ProgressOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even if the run seems to be still running.")
    ] = False,
) -> int:
    """Run a recorded flow run again under its id; finished tasks come back Cached."""
    from ..runs import read_run, resume
    from ..runs._resume import running_pid
    from ._progress import live_progress
    from .run import report, task_runner_for

    task_runner = task_runner_for(runner, address)
    run = read_run(resolve_id(run_id, storage), storage)
    pid = None if force else running_pid(run)
    if pid is not None:
        raise CommandError(
            f"flow run {run.id} is still running, in process {pid} on this machine",
            hint="wait for it or stop it; --force resumes it anyway (its tasks may run twice)",
        )
    show = sys.stderr.isatty() if progress is None else progress
    started = time.monotonic()
    with live_progress(show) as states:
        state = resume(run.id, storage, return_state=True, task_runner=task_runner, force=True)
    report(state, run.name, run.id, time.monotonic() - started, storage, states)
    return 0 if state.is_completed() else 1


@app.command("rm")
def _rm(
    run_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Flow run ids.")],
    storage: StorageOption = None,
) -> int:
    """Remove runs from the journal (their persisted results stay; see fluvial cache)."""
    from ..runs import delete_run

    url = _location(storage).url
    for run_id in run_ids:
        full = resolve_id(run_id, storage)
        delete_run(full, storage)
        out(f"Removed flow run {full} from {url}.")
    return 0
