"""Reporting a run: the machine, package versions, a rich table, per-task scaling, JSON.

The JSON keeps every sample of both sides, so a reader can recompute any statistic; the table
shows medians with their min–max spread, which says how noisy the machine was during the run.
"""

from __future__ import annotations

__all__ = ("machine_info", "render_table", "scaling", "to_json", "versions")

import json
import os
import platform
import sys
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any

from ._model import spread

if TYPE_CHECKING:
    from rich.table import Table

    from ._model import Config, Row

_PACKAGES = ("fluvial", "dask", "distributed", "ray", "fsspec", "s3fs", "moto", "matplotlib")
FLAT_WITHIN = 1.25  # per-task cost at the largest N within 25% of the smallest N's: "flat"


def _cpu_model() -> str:
    """Return the CPU model name, as precisely as this OS tells it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    """Return the physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """Describe the machine and interpreter the run measured."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "load_average": list(load) if load else None,
    }


def versions(extra: dict[str, str] | None = None) -> dict[str, str | None]:
    """Return the installed version of each package that shapes the numbers (None: absent)."""
    found: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found.update(extra or {})
    return found


def scaling(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Return, per runner, how fan-out per-task cost grows from the smallest to the largest N.

    The baseline's growth is given too: when both grow alike, the machine (or the executor
    underneath) is the cause, not fluvial.
    """
    found: dict[str, dict[str, Any]] = {}
    for runner in dict.fromkeys(r.runner for r in rows if r.scenario == "fanout"):
        sized = sorted(
            (r.n, r.value, r.baseline_value)
            for r in rows
            if r.scenario == "fanout" and r.runner == runner and r.source == "fluvial"
            if r.value is not None
        )
        if len(sized) < 2:
            continue
        (n0, v0, b0), (n1, v1, b1) = sized[0], sized[-1]
        growth = v1 / v0
        base_growth = b1 / b0 if b0 and b1 else None
        base_text = "" if base_growth is None else f"; baseline {base_growth:.2f}×"
        verdict = "flat" if growth <= FLAT_WITHIN else "grows"
        found[runner] = {
            "per_task_us": {str(n): v for n, v, _ in sized},
            "baseline_per_task_us": {str(n): b for n, _, b in sized},
            "growth": growth,
            "baseline_growth": base_growth,
            "flat": growth <= FLAT_WITHIN,
            "summary": f"{runner} fan-out per task: {_fmt(v0)} µs at N={n0:,} → {_fmt(v1)} µs "
            f"at N={n1:,} ({growth:.2f}×, {verdict}{base_text})",
        }
    return found


def _fmt(value: float | None) -> str:
    """Format a number with about three significant digits."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _cell(samples: list[float]) -> str:
    """Format a median with its min–max spread."""
    stats = spread(samples)
    if stats is None:
        return "—"
    return f"{_fmt(stats.median)} [{_fmt(stats.min)}–{_fmt(stats.max)}]"


def _budget(row: Row) -> str:
    """Describe the budget and which number it applies to."""
    if row.budget is None:
        return "—"
    if row.budget_on == "ratio":
        return f"≤ {row.budget:g}×"
    prefix = "+" if row.budget_on == "overhead" else ""
    return f"≤ {prefix}{row.budget:g} {row.unit.split('/')[0]}"


_VERDICT_STYLES = {"PASS": "green", "OVER": "bold red", "ERROR": "bold red", "skipped": "yellow"}


def render_table(rows: list[Row], title: str) -> Table:
    """Return the results as one rich table."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    heads = ("scenario", "runner", "N", "unit", "measured", "baseline", "vs", "ratio", "budget")
    for head in (*heads, "verdict"):
        table.add_column(head, justify="right" if head in ("N", "ratio") else "left")
    for row in rows:
        scenario = f"{row.scenario} ({row.label})" if row.label else row.scenario
        runner = row.runner if row.source == "fluvial" else f"{row.source} {row.runner}"
        base = _cell(row.baseline)
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
        verdict = row.verdict
        style = _VERDICT_STYLES.get(verdict, "")
        measured = _cell(row.samples) if row.note is None else row.note
        cells = [scenario, runner, f"{row.n:,}", row.unit, measured, base, row.baseline_name]
        cells += [ratio, _budget(row)]
        table.add_row(*cells, f"[{style}]{verdict}[/]" if style else verdict)
    return table


def to_json(
    config: Config, rows: list[Row], argv: list[str], extra_versions: dict[str, str] | None
) -> str:
    """Serialise the command, configuration, machine, versions and every row as JSON."""
    document = {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": argv,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "machine": machine_info(),
        "versions": versions(extra_versions),
        "rows": [row.to_dict() for row in rows],
        "scaling": scaling(rows),
    }
    return json.dumps(document, indent=2, ensure_ascii=False)
