"""``--compare-prefect PYTHON``: the same scenarios under Prefect 3, in the same table.

Prefect is never a dependency of fluvial: it runs in a separate interpreter (a venv with
``pip install prefect``), which executes :mod:`.prefect_side` by path and prints its rows. Each
Prefect row has its own raw baseline, measured alternately in that interpreter, so its ratio is
comparable with fluvial's. Prefect starts an ephemeral API server in every fresh process (a few
seconds), under a temporary ``PREFECT_HOME`` so that no user profile or database is touched;
sizes are capped at ``Config.prefect_n`` because a Prefect task run costs milliseconds.
"""

from __future__ import annotations

__all__ = ("PrefectUnavailable", "compare_prefect")

import json
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._model import Row
from ._timing import run_python

if TYPE_CHECKING:
    from ._model import Config

PREFECT_TIMEOUT = 1800.0  # ephemeral server starts and millisecond task runs add up
FIRST_FLOW = """\
import time
import prefect
start = time.perf_counter()

@prefect.task
def noop():
    return None

@prefect.flow
def first_flow():
    return noop()

first_flow()
print(time.perf_counter() - start)
"""


class PrefectUnavailable(Exception):
    """The interpreter given to --compare-prefect cannot run Prefect 3."""


def _env(tmp: str) -> dict[str, str]:
    """Return an environment that keeps Prefect's state in *tmp* and its logs quiet."""
    return {
        "PREFECT_HOME": tmp,
        "PREFECT_LOCAL_STORAGE_PATH": str(Path(tmp, "storage")),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def prefect_version(python: str) -> str:
    """Return the Prefect version *python* imports.

    Raises:
        PrefectUnavailable: *python* does not run, or has no Prefect 3.
    """
    try:
        out = run_python("-c", "import prefect; print(prefect.__version__)", python=python)[1]
    except (OSError, RuntimeError) as exc:
        raise PrefectUnavailable(
            f"--compare-prefect {python}: cannot import prefect ({exc})"
        ) from exc
    version = out.strip().splitlines()[-1]
    if not version.startswith("3."):
        raise PrefectUnavailable(f"--compare-prefect {python}: Prefect {version}, need Prefect 3")
    return version


def _startup_rows(python: str, env: dict[str, str], repeats: int, tmp: str) -> list[Row]:
    """Return Prefect's import and first-flow rows, from fresh interpreters."""
    run_python("-c", "import prefect", python=python, env=env)  # untimed: bytecode caches
    imports: list[float] = []
    bare: list[float] = []
    for _ in range(repeats):
        empty = run_python("-c", "pass", python=python, env=env)[0]
        full = run_python("-c", "import prefect", python=python, env=env)[0]
        bare.append(empty * 1e3)
        imports.append((full - empty) * 1e3)
    script = Path(tmp, "first_flow.py")
    script.write_text(FIRST_FLOW, encoding="utf-8")
    run_python(str(script), python=python, env=env, timeout=PREFECT_TIMEOUT)
    first = [
        float(
            run_python(str(script), python=python, env=env, timeout=PREFECT_TIMEOUT)[1].split()[-1]
        )
        * 1e3
        for _ in range(repeats)
    ]
    import_row = Row("import", "inline", 1, "ms", source="prefect", samples=imports, baseline=bare)
    import_row.baseline_name, import_row.compare = "python -c pass", False
    first_row = Row("first-flow", "inline", 1, "ms", source="prefect", samples=first)
    return [import_row, first_row]


def _job(config: Config, scenarios: list[str], runners: list[str], tmp: str) -> dict[str, Any]:
    """Return the job prefect_side.py runs: what to measure, at which (capped) sizes."""
    n = config.prefect_n
    return {
        "scenarios": scenarios,
        "runners": runners,
        "repeats": min(config.repeats, 3),
        "n": n,
        "depth": min(config.chain_depth, n),
        "width": min(config.diamond_width, n),
        "cache_n": min(config.cache_miss_n, n),
        "persist_n": min(config.persist_n, 10),
        "persist_bytes": config.persist_bytes,
        "thread_workers": config.thread_workers,
        "cluster_workers": config.cluster_workers,
        "tmp": tmp,
    }


def _to_row(data: dict[str, Any]) -> Row:
    """Return a table row from one row printed by prefect_side.py."""
    result = Row(data["scenario"], data["runner"], data["n"], data["unit"], source="prefect")
    result.samples, result.baseline = data["samples"], data["baseline"]
    result.baseline_name, result.label = data["baseline_name"], data["label"]
    result.note, result.failed = data["note"], bool(data.get("failed", False))
    result.compare = data["scenario"] not in ("sequential", "cache-hit")
    result.higher_is_better = data["unit"] == "MB/s"
    return result


def compare_prefect(
    python: str, config: Config, scenarios: list[str], runners: list[str]
) -> tuple[list[Row], str]:
    """Run the selected scenarios under Prefect; return its rows and its version.

    Raises:
        PrefectUnavailable: *python* cannot run Prefect 3.
    """
    version = prefect_version(python)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fluvial-bench-prefect-") as tmp:
        env = _env(tmp)
        if "inline" in runners and {"import", "first-flow"} & set(scenarios):
            try:
                startup = _startup_rows(python, env, min(config.subprocess_repeats, 3), tmp)
                rows += [r for r in startup if r.scenario in scenarios]
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rows.append(_failed("first-flow", exc))
        job = json.dumps(_job(config, scenarios, runners, tmp))
        side = str(Path(__file__).with_name("prefect_side.py"))
        try:
            out = run_python(side, job, python=python, env=env, timeout=PREFECT_TIMEOUT)[1]
            rows += [_to_row(data) for data in json.loads(out.strip().splitlines()[-1])]
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            rows.append(_failed("sequential", exc))
    return rows, version


def _failed(scenario: str, exc: Exception) -> Row:
    """Return an ERROR row saying why the Prefect side failed."""
    return Row(
        scenario,
        "inline",
        0,
        "",
        source="prefect",
        note=f"{type(exc).__name__}: {exc}",
        failed=True,
    )
