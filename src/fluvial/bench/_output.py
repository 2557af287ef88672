"""The end of a run: the table on stdout, then the JSON and the plot if asked for."""

from __future__ import annotations

__all__ = ("finish", "title")

import platform
from typing import TYPE_CHECKING

from ._report import machine_info, render_table, scaling, to_json, versions

if TYPE_CHECKING:
    import argparse

    from ._model import Config, Row


def title(config: Config) -> str:
    """Describe the run and the machine in one line."""
    info = machine_info()
    ram = info["ram_bytes"]
    ram_text = f"{ram / 2**30:.1f} GiB RAM" if ram else "RAM unknown"
    load = info["load_average"]
    load_text = f" · load {load[0]:.1f}" if load else ""
    mode = "quick" if config.quick else "full"
    return (
        f"fluvial {versions()['fluvial']} · {platform.python_implementation()} "
        f"{info['python']} · {platform.system()} · {info['cpu_count']} CPUs "
        f"({info['cpu_model']}) · {ram_text}{load_text} · {mode} run, {config.repeats} "
        "samples per side · median [min–max]"
    )


def finish(config: Config, rows: list[Row], options: argparse.Namespace, argv: list[str]) -> int:
    """Print the table, write the JSON and the plot; return 1 if a row raised, else 0."""
    from rich.console import Console

    # Not a terminal (a pipe, CI): wide enough that rows do not wrap.
    console = Console(width=None if Console().is_terminal else 200)
    heading = title(config)
    console.print(render_table(rows, heading))
    for entry in scaling(rows).values():
        console.print(entry["summary"])
    for row in rows:
        if row.failed:
            console.print(f"[red]ERROR[/] {row.scenario} on {row.runner}: {row.note}")
    extra = getattr(options, "prefect_versions", None)
    if options.json is not None:
        options.json.write_text(to_json(config, rows, argv, extra), encoding="utf-8")
        console.print(f"results written to {options.json}")
    if options.plot is not None:
        from ._plot import PlotUnavailable, plot

        try:
            plot(rows, options.plot, heading.removesuffix(" · median [min–max]"))
            console.print(f"plot written to {options.plot}")
        except PlotUnavailable as exc:
            console.print(f"[yellow]no plot[/]: {exc}")
    return 1 if any(row.failed for row in rows) else 0
