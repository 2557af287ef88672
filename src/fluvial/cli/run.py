"""``fluvial run FILE.py:FLOW|MODULE:FLOW``: run a flow from the shell, exit with its state.

Parameters come from ``--params JSON`` and ``--param NAME=VALUE`` (read as JSON when it parses,
else as text) and are checked against the flow's signature before anything runs. ``--storage``
persists the run's results there, which also journals the run for ``fluvial runs``. The exit
status is 0 for a Completed run and 1 for any other final state.
"""

from __future__ import annotations

__all__ = (
    "AddressOption",
    "ProgressOption",
    "Runner",
    "RunnerOption",
    "check_parameters",
    "register",
    "report",
    "run",
    "task_runner_for",
)

import enum
import inspect
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..exceptions import ParameterTypeError
from ._app import StorageOption
from ._output import CommandError, format_duration, one_line, out

if TYPE_CHECKING:
    from ..flows import Flow
    from ..runners import TaskRunner
    from ..states import State
    from ._progress import TaskStates

_RESULT_WIDTH = 500
_VALUE_HINT = (
    "--param values are read as JSON when they parse (3, true, [1, 2], '{\"a\": 1}'), "
    "else as text; values of str parameters are always text"
)


class Runner(enum.StrEnum):
    """The task runners ``--runner`` can choose."""

    thread = "thread"
    process = "process"
    dask = "dask"
    ray = "ray"


_RUNNER_CLASSES = {
    Runner.thread: "ThreadPoolTaskRunner",
    Runner.process: "ProcessPoolTaskRunner",
    Runner.dask: "DaskTaskRunner",
    Runner.ray: "RayTaskRunner",
}


def register(root: typer.Typer) -> None:
    """Add the ``run`` command to *root*."""
    root.command("run")(run)


#: ``--runner``, ``--address`` and ``--progress``, shared with ``fluvial runs resume``.
RunnerOption = Annotated[
    Runner | None, typer.Option("--runner", help="The task runner (default: the flow's).")
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="ADDRESS",
        help="With --runner dask or ray: the running cluster to use (tcp://host:8786, "
        "ray://host:10001, auto) instead of starting a local one.",
    ),
]
ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Draw a live bar of task states (default: when stderr is a terminal).",
    ),
]


def task_runner_for(kind: Runner | None, address: str | None = None) -> TaskRunner | None:
    """Return a new task runner of *kind* (on the cluster at *address*), or None for none."""
    if address is not None and kind not in (Runner.dask, Runner.ray):
        raise CommandError(
            "--address names a Dask or Ray cluster", hint="add --runner dask or --runner ray"
        )
    if kind is None:
        return None
    # fluvial.runners imports dask or ray only when their runner class is asked for.
    from .. import runners

    cls = getattr(runners, _RUNNER_CLASSES[kind])
    runner: TaskRunner = cls() if address is None else cls(address=address)
    return runner


def check_parameters(flow: Flow[..., Any], parameters: dict[str, Any]) -> None:
    """Refuse unknown, missing or ill-typed parameters with a message naming them."""
    signature = inspect.signature(flow.fn)
    kinds = inspect.Parameter
    named = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is kinds.VAR_KEYWORD for p in signature.parameters.values())
    listing = ", ".join(named) or "none"
    for key in parameters:
        if key not in named and not takes_any:
            raise CommandError(
                f"flow {flow.name!r} has no parameter {key!r}", hint=f"its parameters: {listing}"
            )
    for name, p in named.items():
        if p.default is p.empty and name not in parameters:
            raise CommandError(
                f"flow {flow.name!r} needs a value for parameter {name!r}",
                hint=f"pass it with --param {name}=VALUE (or in --params JSON)",
            )
    try:
        flow.validate_parameters(dict(parameters))
    except ParameterTypeError as exc:
        raise CommandError(one_line(exc), hint=_VALUE_HINT) from exc


def _configure(flow: Flow[..., Any], runner: TaskRunner | None, storage: str | None) -> Any:
    options: dict[str, Any] = {}
    if runner is not None:
        options["task_runner"] = runner
    if storage is not None:
        from ..storage._location import resolve_location

        resolve_location(storage)  # a bad URL is refused here, not halfway through the run
        options.update(result_storage=storage, persist_result=True)
    return flow.with_options(**options) if options else flow


def _call(flow: Flow[..., Any], parameters: dict[str, Any]) -> State[Any]:
    call: Any = flow(**parameters, return_state=True)
    if flow.isasync:
        import asyncio

        call = asyncio.run(call)
    state: State[Any] = call
    return state


def _outcome(state: State[Any]) -> str:
    if state.is_completed():
        try:
            text = repr(state.result())
        except Exception as exc:  # a result that cannot be read back is still a completed run
            text = f"<unreadable: {one_line(exc)}>"
        if len(text) > _RESULT_WIDTH:
            text = text[: _RESULT_WIDTH - 3] + "..."
        return f"result: {text}"
    return one_line(state.message or state.name)


def report(
    state: State[Any],
    name: str,
    run_id: Any,
    seconds: float,
    storage: str | None,
    states: TaskStates,
) -> None:
    """Print how a flow run ended: state, time, result or error, task counts, run id."""
    out(f"Flow run {name!r} finished {state.name} in {format_duration(seconds)}.")
    out(f"  {_outcome(state)}")
    if states.counts()[1]:
        out(f"  tasks: {states.summary()}")
    if run_id is not None and storage is not None:
        out(f"  run id: {run_id} (see it with: fluvial runs show {run_id} --storage {storage})")
    elif run_id is not None:
        out(f"  run id: {run_id}")


def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="FILE.py:FLOW",
            help="The flow: path/to/file.py:my_flow, or package.module:my_flow.",
        ),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="A flow parameter (repeatable); VALUE is read as JSON when it parses.",
        ),
    ] = None,
    params: Annotated[
        str | None, typer.Option("--params", metavar="JSON", help="Parameters as a JSON object.")
    ] = None,
    runner: RunnerOption = None,
    address: AddressOption = None,
    storage: StorageOption = None,
    progress: ProgressOption = None,
) -> int:
    """Run a flow; exit status 0 if it completes, 1 otherwise."""
    # Imported before the flow's directory goes first on sys.path, where a file named like
    # a module they need (json.py...) would shadow it.
    import orjson  # noqa: F401

    from ..runs import add_listener  # noqa: F401
    from ._loading import load_flow, parse_parameters, text_parameters
    from ._progress import live_progress

    task_runner = task_runner_for(runner, address)
    flow = _configure(load_flow(target), task_runner, storage)
    parameters = parse_parameters(params, list(param or ()), text_parameters(flow))
    check_parameters(flow, parameters)
    show = sys.stderr.isatty() if progress is None else progress
    started = time.monotonic()
    with live_progress(show) as states:
        state = _call(flow, parameters)
    run_id = state.state_details.flow_run_id or states.flow_run_id
    name = states.flow_run_name or flow.name
    report(state, name, run_id, time.monotonic() - started, storage, states)
    return 0 if state.is_completed() else 1
