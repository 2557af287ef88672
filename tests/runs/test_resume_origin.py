"""A resumed run keeps the import path of its first attempt, however the resume loaded it.

The flow is a script started in one directory and resumed twice from another, in fresh
processes: as ``python flows.py`` (recorded by the script's path) and as
``fluvial run flows.py:pipeline`` (recorded by the module name the command gave the file).
Each resume loads the script from its recorded path under a module name of its own, which must
never end up in the journal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluvial.runs import RunRecord, list_runs, read_run

HERE = Path(__file__).parent
RESUMER = HERE / "resume_run.py"

SCRIPT = """
import os
from pathlib import Path

from fluvial import flow, task

BROKEN = Path(__file__).with_name("broken")


@task
def step(i: int) -> int:
    if i == 2 and BROKEN.exists():
        raise RuntimeError("step 2 is broken")
    return i * 10


@flow(result_storage=os.environ["CRASH_STORE"])
def double(x: int) -> int:
    return 2 * x


@flow(result_storage=os.environ["CRASH_STORE"])
def pipeline(n: int) -> int:
    return double(sum(step(i) for i in range(n)))


if __name__ == "__main__":
    pipeline(4, return_state=True)
"""


def _script(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    script = project / "origin_flows.py"
    script.write_text(SCRIPT)
    (project / "broken").touch()
    return script


def _run(argv: list[str], cwd: Path, store: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRASH_STORE": store, "FLUVIAL_HOME": str(home)}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _top_run(store: str) -> RunRecord:
    [run] = [run for run in list_runs(store) if run.flow_name == "pipeline"]
    return run


def _fluvial() -> list[str]:
    script = Path(sys.executable).parent / "fluvial"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fluvial"]


@pytest.mark.parametrize("started_by", ["python", "fluvial run"])
def test_two_resumes_keep_the_first_import_path(tmp_path: Path, started_by: str) -> None:
    script = _script(tmp_path)
    store = str(tmp_path / "results")
    if started_by == "python":
        first = _run([sys.executable, str(script)], script.parent, store, tmp_path / "h1")
    else:
        first = _run(
            [*_fluvial(), "run", f"{script.name}:pipeline", "-p", "n=4"],
            script.parent,
            store,
            tmp_path / "h1",
        )
    run = _top_run(store)
    assert run.state_name == "Failed", first.stderr
    original = run.import_path
    assert original is not None
    if started_by == "python":
        assert original == f"{script}:pipeline"
    assert run.source_file == str(script)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resume = [sys.executable, str(RESUMER), str(run.id)]
    again = _run(resume, elsewhere, store, tmp_path / "h2")
    assert again.returncode != 0, again.stderr
    assert "step 2 is broken" in again.stderr, again.stderr
    (script.parent / "broken").unlink()
    done = _run(resume, elsewhere, store, tmp_path / "h3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "120"

    record = read_run(run.id, store)
    assert record.state_name == "Completed"
    assert len(record.attempts) == 3
    assert record.import_path == original
    assert record.source_file == str(script)
    # The subflow, first journaled by a resume, is recorded by the script's path too.
    paths = {r.import_path for r in list_runs(store) if r.flow_name == "double"}
    assert paths == {f"{script}:double"}
