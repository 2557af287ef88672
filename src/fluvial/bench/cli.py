"""The benchmark command: ``fluvial bench`` or, from a source checkout, ``python -m benchmarks``.

Exit status: 0 when every selected row was measured or skipped (OVER budget is a finding, not a
failure), 1 when a row raised (a broken scenario must not rot silently in CI), 2 for a bad
command line, reported as one line on stderr.
"""

from __future__ import annotations

__all__ = ("main", "run")

import argparse
import dataclasses
import importlib.util
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ._model import RUNNERS, Config
from ._suite import SCENARIOS

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._model import Job, Row


class UsageError(Exception):
    """The command line asked for something that does not exist."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised, to be reported as one line."""

    def error(self, message: str) -> NoReturn:
        """Raise the usage error instead of printing usage and exiting."""
        raise UsageError(message)


def _names(kind: str, known: tuple[str, ...]) -> Callable[[str], list[str]]:
    """Return an argparse ``type`` that splits a comma list and rejects unknown names."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        for name in names:
            if name not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {name!r}; choose from {', '.join(known)}"
                )
        return names

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


def _positive(text: str) -> int:
    """Parse a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _parser(prog: str) -> _Parser:
    """Build the command-line parser."""
    parser = _Parser(prog=prog, description="Measure fluvial against the raw executors it wraps.")
    add = parser.add_argument
    add("--quick", action="store_true", help="small N and 3 repeats: about a minute, for CI")
    add(
        "--runner",
        type=_names("runner", RUNNERS),
        default=list(RUNNERS),
        metavar="LIST",
        help=f"comma-separated runners (default: all of {','.join(RUNNERS)})",
    )
    add(
        "--scenario",
        type=_names("scenario", tuple(SCENARIOS)),
        default=list(SCENARIOS),
        metavar="LIST",
        help="comma-separated scenarios (default: all; see --list)",
    )
    add("--repeats", type=_positive, metavar="N", help="samples per side (default 5, quick 3)")
    add("--json", type=Path, metavar="PATH", help="write machine, versions and samples here")
    add("--plot", type=Path, metavar="PATH", help="write a tasks/s PNG here (needs matplotlib)")
    add(
        "--compare-prefect",
        metavar="PYTHON",
        help="also run the scenarios under this interpreter, which has Prefect 3 installed",
    )
    add("--list", action="store_true", help="list the scenarios and exit")
    return parser


def _config(options: argparse.Namespace) -> Config:
    """Return the sizes and repeats the command line asks for."""
    config = Config.quick_config() if options.quick else Config()
    if options.repeats is not None:
        config = dataclasses.replace(
            config, repeats=options.repeats, subprocess_repeats=options.repeats
        )
    return config


def _quiet() -> None:
    """Keep log records out of the timings and the table."""
    logging.getLogger("fluvial").setLevel(logging.WARNING)
    for name in ("distributed", "werkzeug", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _measure(config: Config, options: argparse.Namespace) -> list[Row]:
    """Plan and run every selected row under a progress bar; return the rows."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ._backends import Backends
    from ._caching import Storages
    from ._suite import plan, run_jobs

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Backends(config) as backends, Storages() as storages:
        jobs = plan(config, options.scenario, options.runner, backends, storages)
        if not jobs:
            raise UsageError("no selected scenario applies to the selected runners; see --list")
        _quiet()
        console = Console(stderr=True)
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task("starting", total=len(jobs))

            def advance(job: Job) -> None:
                label = f" {job.row.label}" if job.row.label else ""
                text = f"{job.row.scenario}{label} · {job.row.runner} · N={job.row.n:,}"
                done = jobs.index(job)
                progress.update(bar, description=text, completed=done)
                if not console.is_terminal:  # CI logs: a line per row instead of a bar
                    print(f"[{done + 1}/{len(jobs)}] {text}", file=sys.stderr, flush=True)

            run_jobs(jobs, advance)
            progress.update(bar, completed=len(jobs))
    return [job.row for job in jobs]


def _check_extras(options: argparse.Namespace) -> None:
    """Fail before measuring anything if rich or the Prefect interpreter is missing."""
    if importlib.util.find_spec("rich") is None:
        raise UsageError("the benchmarks need rich: pip install 'fluvial[bench]'")
    if options.compare_prefect:
        from ._prefect import PrefectUnavailable, prefect_version

        try:
            options.prefect_versions = {"prefect": prefect_version(options.compare_prefect)}
        except PrefectUnavailable as exc:
            raise UsageError(str(exc)) from None


def _prefect_rows(config: Config, options: argparse.Namespace) -> list[Row]:
    """Run the selected scenarios under the Prefect interpreter; return its rows."""
    from rich.console import Console

    from ._prefect import compare_prefect

    status = "running the scenarios under Prefect (its server starts per process: minutes)"
    with Console(stderr=True).status(status):
        rows, _ = compare_prefect(options.compare_prefect, config, options.scenario, options.runner)
    return rows


def _ordered(rows: list[Row]) -> list[Row]:
    """Return *rows* with each Prefect row right after fluvial's rows of the same scenario."""
    scenarios = list(SCENARIOS)
    labels: dict[str, int] = {}
    for row in rows:  # storages keep the order fluvial's rows ran in
        labels.setdefault(row.label, len(labels))

    def key(row: Row) -> tuple[int, int, int, bool, int]:
        runner = RUNNERS.index(row.runner) if row.runner in RUNNERS else len(RUNNERS)
        scenario = scenarios.index(row.scenario) if row.scenario in scenarios else len(scenarios)
        return runner, scenario, labels[row.label], row.source != "fluvial", row.n

    return sorted(rows, key=key)


def run(argv: list[str] | None, prog: str) -> int:
    """Run the command line *argv* under the program name *prog*; return the exit status."""
    try:
        options = _parser(prog).parse_args(argv)
        if options.list:
            for scenario in SCENARIOS.values():
                print(f"{scenario.name:<11} {','.join(scenario.runners):<26} {scenario.summary}")
            return 0
        config = _config(options)
        _check_extras(options)
        rows = _measure(config, options)
        if options.compare_prefect:
            rows = _ordered(rows + _prefect_rows(config, options))
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    from ._output import finish

    return finish(config, rows, options, argv if argv is not None else sys.argv[1:])


def main(argv: list[str] | None = None) -> int:
    """Run ``fluvial bench ARGS...``; return the exit status (0 ok, 1 a row failed, 2 usage)."""
    try:
        return run(argv, "fluvial bench")
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
