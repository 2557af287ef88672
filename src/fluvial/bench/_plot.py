"""A PNG of tasks per second against N, per runner: fluvial solid, raw baselines dashed.

matplotlib is an optional extra (``pip install 'fluvial[bench]'``); without it :func:`plot`
raises :class:`PlotUnavailable` with that instruction, and the rest of the run is kept.
"""

from __future__ import annotations

__all__ = ("PlotUnavailable", "plot")

from typing import TYPE_CHECKING, Any

from ._model import spread

if TYPE_CHECKING:
    from pathlib import Path

    from ._model import Row

PLOTTED = ("fanout", "map")
_LABELS = {
    "fluvial": "fluvial",
    "fluvial baseline": "raw",
    "prefect": "Prefect 3",
    "prefect baseline": "raw (Prefect run)",
}
_COLORS = {"thread": "tab:blue", "process": "tab:orange", "dask": "tab:green", "ray": "tab:red"}


class PlotUnavailable(Exception):
    """matplotlib is not installed, or there was nothing to plot."""


def _series(rows: list[Row], scenario: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Return (runner, side) → sorted (N, tasks/s) points for one scenario."""
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in rows:
        if row.scenario != scenario:
            continue
        sides = {row.source: row.samples, f"{row.source} baseline": row.baseline}
        for side, samples in sides.items():
            stats = spread(samples)
            if stats is not None and stats.median > 0:
                series.setdefault((row.runner, side), []).append((row.n, 1e6 / stats.median))
    return {key: sorted(points) for key, points in series.items()}


def _draw(axes: Any, rows: list[Row], scenario: str) -> None:
    """Draw one scenario's lines on *axes*."""
    for (runner, side), points in sorted(_series(rows, scenario).items()):
        xs, ys = zip(*points, strict=True)
        style = "--" if side.endswith("baseline") else "-"
        marker = "s" if side.startswith("prefect") else "o"
        color = _COLORS.get(runner, "gray")
        label = f"{runner}: {_LABELS[side]}"
        axes.plot(xs, ys, style, marker=marker, color=color, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("N (tasks)")
    axes.set_ylabel("tasks/s (median)")
    axes.set_title(scenario)
    axes.grid(True, which="both", alpha=0.3)
    # Below the axes: inside, the legend would hide lines at one end or the other.
    axes.legend(fontsize="x-small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.15))


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Write the tasks/s plot of the fan-out and map rows to *path* (PNG).

    Raises:
        PlotUnavailable: matplotlib is missing, or no fan-out or map row has samples.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, and none opened
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'fluvial[bench]'") from exc
    present = [s for s in PLOTTED if _series(rows, s)]
    if not present:
        raise PlotUnavailable("--plot: no fanout or map row has samples to plot")
    figure, axes = plt.subplots(1, len(present), figsize=(5.5 * len(present), 5.4), squeeze=False)
    for ax, scenario in zip(axes[0], present, strict=True):
        _draw(ax, rows, scenario)
    figure.suptitle(title, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
