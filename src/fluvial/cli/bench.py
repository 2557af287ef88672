"""``fluvial bench ARGS...``: the benchmark suite (:func:`fluvial.bench.cli.main`), unchanged.

Every argument, ``--help`` included, goes to the suite's own parser, so ``fluvial bench`` and
``python -m benchmarks`` take the same command line and exit with the same status.
"""

from __future__ import annotations

__all__ = ("bench", "register")

import importlib

import typer  # noqa: TC002 - typer reads the Context annotation at runtime

from ._output import CommandError

#: Where the suite's ``main(argv: list[str] | None) -> int`` lives.
BENCH_ENTRY = "fluvial.bench.cli"


def register(root: typer.Typer) -> None:
    """Add the ``bench`` command to *root*."""
    root.command(
        "bench",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(bench)


def bench(ctx: typer.Context) -> int:
    """Run the benchmarks; all arguments go to the suite (see: fluvial bench --help)."""
    try:
        module = importlib.import_module(BENCH_ENTRY)
    except ImportError as exc:
        raise CommandError(
            f"the benchmark suite cannot be loaded ({BENCH_ENTRY}): {exc}",
            hint="install fluvial with its benchmark dependencies, or run python -m benchmarks "
            "from a source checkout",
        ) from exc
    code: int = module.main(list(ctx.args))
    return code
