"""The benchmark command runs end to end and reports complete, well-formed results.

Speed is never asserted (DESIGN.md keeps it out of tests): these tests check that every selected
scenario produced samples on both sides, that the JSON carries the machine, the versions and the
statistics a reader needs, and that bad command lines fail with one clear line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fluvial.bench import main
from fluvial.bench._model import Row, spread
from fluvial.bench._plot import plot
from fluvial.bench._report import scaling

ROOT = Path(__file__).resolve().parent.parent
INLINE = "import,first-flow,sequential,async,cache-hit,cache-miss,persist"


def _run_benchmarks(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks --quick --repeats 1 ARGS`` from the checkout; return its JSON."""
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", "--json", str(out)]
    proc = subprocess.run(
        [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def _check_rows(document: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    """Assert every expected (scenario, runner) has rows, each with samples and statistics."""
    rows = document["rows"]
    assert {(r["scenario"], r["runner"]) for r in rows} == expected
    for row in rows:
        assert row["verdict"] in ("PASS", "OVER", "report"), row
        assert len(row["samples"]) == 1, row
        assert row["stats"]["min"] <= row["stats"]["median"] <= row["stats"]["max"]
        if row["scenario"] != "first-flow":  # an absolute budget, no baseline
            assert len(row["baseline_samples"]) == 1, row
            assert row["baseline_stats"]["median"] >= 0
        assert row["unit"]
        assert row["n"] >= 1


def _check_document(document: dict[str, Any]) -> None:
    """Assert the machine, versions and configuration parts of the JSON."""
    machine = document["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["python"].count(".") == 2
    assert machine["cpu_model"]
    assert machine["os"]
    assert document["versions"]["fluvial"]
    assert document["config"]["quick"] is True
    assert document["config"]["repeats"] == 1
    assert "--quick" in document["command"]


def test_quick_run_in_process_scenarios(tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    args = ("--runner", "inline,thread", "--scenario", f"{INLINE},fanout,map,memory,tag-limit")
    document = _run_benchmarks(tmp_path, *args, "--plot", str(png))
    _check_document(document)
    inline = {(s, "inline") for s in INLINE.split(",")}
    thread_rows = {(s, "thread") for s in ("fanout", "map", "memory", "tag-limit")}
    _check_rows(document, inline | thread_rows)
    labels = {r["label"] for r in document["rows"] if r["scenario"] == "cache-hit"}
    assert labels == {"memory://", "local disk", "S3 (moto)"}
    thread = document["scaling"]["thread"]
    assert len(thread["per_task_us"]) == 2
    assert thread["growth"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_on_cluster_runners(tmp_path: Path) -> None:
    args = ("--runner", "process,dask,ray", "--scenario", "fanout,chain,diamond")
    document = _run_benchmarks(tmp_path, *args)
    _check_document(document)
    runners = ("process", "dask", "ray")
    _check_rows(document, {(s, r) for s in ("fanout", "chain", "diamond") for r in runners})
    assert {r["baseline_name"] for r in document["rows"]} == {
        "ProcessPoolExecutor",
        "client.submit",
        "f.remote()",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runner", "thread,fork"], "unknown runner 'fork'; choose from inline, thread"),
        (["--scenario", "fanout,warp"], "unknown scenario 'warp'; choose from import,"),
        (["--repeats", "0"], "expected a positive integer, got '0'"),
        (["--runner", "dask", "--scenario", "import"], "no selected scenario applies"),
        (["--compare-prefect", sys.executable], "cannot import prefect"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_command_lines_fail_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fluvial bench: error: ")
    assert message in lines[0]


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [
        "import", "first-flow", "sequential", "async", "cache-hit", "cache-miss", "persist",
        "fanout", "map", "chain", "diamond", "memory", "tag-limit",
    ]  # fmt: skip


def test_row_verdicts_apply_the_budget_to_the_right_number() -> None:
    ratio = Row("fanout", "thread", 10, "µs/task", 1.5, samples=[3.0, 2.0, 4.0], baseline=[2.0])
    assert (ratio.value, ratio.ratio, ratio.verdict) == (3.0, 1.5, "PASS")
    overhead = Row("sequential", "inline", 10, "µs/call", 15.0, "overhead", samples=[16.0])
    overhead.baseline = [0.5]
    assert overhead.verdict == "OVER"
    faster = Row("persist", "inline", 5, "MB/s", samples=[50.0], baseline=[100.0])
    faster.higher_is_better = True
    assert (faster.ratio, faster.verdict) == (2.0, "report")
    skipped = Row("cache-hit", "inline", 5, "µs/hit", 20.0, "value", note="needs s3fs")
    assert skipped.verdict == "skipped"
    failed = Row("chain", "ray", 5, "µs/task", note="RuntimeError: boom", failed=True)
    assert failed.verdict == "ERROR"


def test_spread_and_scaling() -> None:
    stats = spread([4.0, 1.0, 3.0, 2.0, 5.0])
    assert stats is not None
    assert (stats.median, stats.min, stats.max, stats.q1, stats.q3) == (3.0, 1.0, 5.0, 2.0, 4.0)
    assert spread([]) is None
    rows = [
        Row("fanout", "thread", 1_000, "µs/task", samples=[10.0]),
        Row("fanout", "thread", 100_000, "µs/task", samples=[20.0]),
        Row("fanout", "ray", 1_000, "µs/task", samples=[500.0]),
    ]
    found = scaling(rows)
    assert set(found) == {"thread"}  # one size on Ray: nothing to compare
    assert (found["thread"]["growth"], found["thread"]["flat"]) == (2.0, False)


def test_plot_draws_fluvial_and_baselines(tmp_path: Path) -> None:
    rows = [
        Row("fanout", "thread", n, "µs/task", samples=[v], baseline=[v / 2])
        for n, v in ((1_000, 10.0), (10_000, 11.0))
    ]
    path = tmp_path / "plot.png"
    plot(rows, path, "test")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fluvial bench")
    for option in ("--quick", "--runner", "--scenario", "--json", "--plot", "--compare-prefect"):
        assert option in out
