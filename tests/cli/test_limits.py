"""``fluvial limit ...``: limits written to a profile by the real command, and enforced after.

The commands run through typer's ``CliRunner`` on the real app, through :func:`fluvial.cli.main`
(for the one-line errors), and as real processes. The enforcement tests create a tag limit with
the command, then run flows in other processes whose tagged tasks record when they start and
end: the observed overlap never exceeds the limit.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluvial.cli import build_app
from fluvial.concurrency.cli import limit_inspect, limit_ls
from fluvial.settings import create_profile
from fluvial.settings._profiles import load_profiles

from .conftest import Result, assert_user_error, fluvial_command

FLOW = """
import os
import time
import uuid
from pathlib import Path

from fluvial import flow, task

MARKS = Path(os.environ["LIMIT_MARKS"])


@task(tags=["db"])
def query(i: int) -> int:
    start = time.time()
    time.sleep(0.3)
    (MARKS / f"{uuid.uuid4().hex}").write_text(f"{start} {time.time()}")
    return i


@flow
def spread(n: int) -> int:
    return sum(f.result() for f in [query.submit(i) for i in range(n)])
"""


def _invoke(*argv: str) -> Result:
    result = CliRunner().invoke(build_app(), list(argv))
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    return Result(result.exit_code, result.stdout, result.stderr)


def _max_overlap(marks: Path) -> tuple[int, int]:
    """Return (most tasks running at one moment, tasks recorded)."""
    spans = [tuple(map(float, p.read_text().split())) for p in marks.iterdir()]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, change in events:  # an end sorts before a start at the same instant
        running += change
        peak = max(peak, running)
    return peak, len(spans)


def test_create_ls_inspect_update_delete_in_the_active_profile() -> None:
    assert _invoke("limit", "create", "tag:db", "5").out.startswith(
        "Created concurrency limit 'tag:db' (5 slot(s)) in profile 'default'."
    )
    made = _invoke("limit", "create", "api", "--limit", "60", "--slot-decay-per-second", "1.5")
    assert "note: tasks tagged 'api' are limited by a limit named 'tag:api'" in made.err
    _invoke("limit", "create", "batch", "4", "--disable")
    profile = load_profiles().profile("default")
    assert profile["FLUVIAL_CONCURRENCY_LIMITS"] == "api=60@1.5,~batch=4,tag:db=5"

    listed = json.loads(_invoke("limit", "ls", "--json").out)
    assert [(x["name"], x["limit"], x["active"]) for x in listed] == [
        ("api", 60, True),
        ("batch", 4, False),
        ("tag:db", 5, True),
    ]
    table = _invoke("limit", "ls").out
    assert "Concurrency limits in profile 'default'" in table
    assert "tag:db" in table

    assert _invoke("limit", "update", "tag:db", "--limit", "2").code == 0
    assert _invoke("limit", "enable", "batch").code == 0
    assert _invoke("limit", "disable", "api").code == 0
    shown = json.loads(_invoke("limit", "inspect", "tag:db", "--json").out)
    assert shown == {
        "name": "tag:db",
        "limit": 2,
        "slot_decay_per_second": 0.0,
        "active": True,
        "active_slots": 0.0,
        "holders": [],
        "profile": "default",
    }
    assert _invoke("limit", "delete", "batch").code == 0
    assert [(x.name, x.limit, x.active) for x in limit_ls()] == [
        ("api", 60, False),
        ("tag:db", 2, True),
    ]


def test_profile_option_edits_that_profile_only() -> None:
    create_profile("ci")
    assert _invoke("limit", "create", "tag:db", "1", "--profile", "ci").code == 0
    assert limit_inspect("tag:db", "ci").limit == 1
    assert limit_ls() == []
    assert "No concurrency limits in profile 'default'." in _invoke("limit", "ls").out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["limit", "create", "x"], "no slot count given"),
        (["limit", "create", "x", "3", "--limit", "4"], "two slot counts given"),
        (["limit", "create", "a/b", "3"], "has a character that is not allowed"),
        (["limit", "create", "x", "--", "-1"], "slots must be an integer >= 0"),
        (["limit", "create", "x", "three"], "Invalid value for '[LIMIT]'"),
        (["limit", "update", "nope", "--limit", "2"], "no concurrency limit named 'nope'"),
        (["limit", "update", "tag:db"], "nothing to change"),
        (["limit", "inspect", "nope"], "no concurrency limit named 'nope'"),
        (["limit", "delete", "nope"], "no concurrency limit named 'nope'"),
        (["limit", "ls", "--profile", "nope"], "no profile named 'nope'"),
        (["limit", "reset", "a b"], "has a character that is not allowed"),
    ],
)
def test_bad_input_is_one_error_line_and_changes_nothing(
    cli: Callable[..., Result], argv: list[str], fragment: str
) -> None:
    assert cli("limit", "create", "tag:db", "3").code == 0
    before = load_profiles().profile("default")
    assert_user_error(cli(*argv), fragment)
    assert load_profiles().profile("default") == before


def test_a_duplicate_says_how_to_change_it(cli: Callable[..., Result]) -> None:
    assert cli("limit", "create", "tag:db", "3").code == 0
    again = cli("limit", "create", "tag:db", "4")
    assert_user_error(again, "already exists in profile 'default'")
    assert "hint: change it with 'fluvial limit update tag:db --limit N'" in again.err


def test_the_environment_variable_is_said_to_win(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUVIAL_CONCURRENCY_LIMITS", "tag:db=9")
    made = cli("limit", "create", "tag:db", "3")
    assert made.code == 0
    assert "note: FLUVIAL_CONCURRENCY_LIMITS is set here" in made.err


def test_a_limit_made_by_the_command_holds_in_a_later_flow_process(
    shell: Callable[..., Result], tmp_path: Path
) -> None:
    made = shell("limit", "create", "tag:db", "2")
    assert made.code == 0, made.err
    flows = tmp_path / "limited.py"
    flows.write_text(FLOW)
    marks = tmp_path / "marks"
    marks.mkdir()
    ran = shell("run", f"{flows}:spread", "-p", "n=6", env={"LIMIT_MARKS": str(marks)})
    assert ran.code == 0, ran.err
    assert "result: 15" in ran.out
    assert _max_overlap(marks) == (2, 6)  # at most 2 at once, and the 2 were used
    shown = shell("limit", "inspect", "tag:db", "--json")
    assert json.loads(shown.out)["active_slots"] == 0.0

    # Disabled by the command, the limit no longer holds the next run back.
    assert shell("limit", "disable", "tag:db").code == 0
    free = tmp_path / "free"
    free.mkdir()
    assert shell("run", f"{flows}:spread", "-p", "n=6", env={"LIMIT_MARKS": str(free)}).code == 0
    peak, count = _max_overlap(free)
    assert peak > 2
    assert count == 6


def test_two_flow_processes_on_the_process_runner_share_the_limit(
    shell: Callable[..., Result], tmp_path: Path
) -> None:
    assert shell("limit", "create", "tag:db", "1").code == 0
    flows = tmp_path / "limited.py"
    flows.write_text(FLOW)
    marks = tmp_path / "marks"
    marks.mkdir()
    argv = [*fluvial_command(), "run", f"{flows}:spread", "-p", "n=3", "--runner", "process"]
    env = {**os.environ, "LIMIT_MARKS": str(marks)}
    runs = [
        subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, out
    assert _max_overlap(marks) == (1, 6)
    assert "Freed 0 slot(s) of 'tag:db'" in shell("limit", "reset", "tag:db").out


@pytest.mark.parametrize(
    "command", ["ls", "inspect", "create", "update", "enable", "disable", "delete", "reset"]
)
def test_every_limit_command_has_help(cli: Callable[..., Result], command: str) -> None:
    result = cli("limit", command, "--help")
    assert result.code == 0, result
    assert f"Usage: fluvial limit {command}" in result.out
    listed = cli("limit")
    assert listed.code == 0
    assert f" {command} " in listed.out
    assert " limit " in cli("--help").out
