"""``fluvial bench``: every argument goes to the benchmark suite's own command line."""

from __future__ import annotations

from collections.abc import Callable

import pytest  # noqa: TC002 - the monkeypatch fixture's annotation

from fluvial.cli import bench

from .conftest import Result, assert_user_error


def test_help_and_list_come_from_the_suite(cli: Callable[..., Result]) -> None:
    helped = cli("bench", "--help")
    assert helped.code == 0
    assert "usage: fluvial bench" in helped.out
    listed = cli("bench", "--list")
    assert listed.code == 0
    assert listed.out.splitlines()[0].startswith("import")


def test_its_usage_errors_keep_its_exit_status(cli: Callable[..., Result]) -> None:
    result = cli("bench", "--no-such-flag")
    assert result.code == 2
    assert result.err.strip() == "fluvial bench: error: unrecognized arguments: --no-such-flag"


def test_a_missing_suite_is_one_line(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "BENCH_ENTRY", "fluvial.no_such_bench_module")
    assert_user_error(cli("bench", "--list"), "the benchmark suite cannot be loaded")
