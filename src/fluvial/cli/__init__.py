"""The ``fluvial`` command line, built on typer: one module per command group.

``fluvial run`` runs a flow from a file or module, ``fluvial runs ...`` inspects, resumes and
removes journaled runs, ``fluvial cache ...`` lists and clears persisted results,
``fluvial config ...`` and ``fluvial profile ...`` manage settings, ``fluvial limit ...``
manages concurrency limits, ``fluvial bench`` runs the benchmarks. :func:`main` is the console
script (``fluvial``) and ``python -m fluvial``.

Adding a command group is one module and one line (``cli/limits.py`` is an example):

1. write ``cli/limits.py`` with ``app = group("limit", "Manage concurrency limits.")`` (from
   :mod:`._app`), its commands as ``@app.command("ls")`` functions returning an exit code, and
   ``def register(root: typer.Typer) -> None: root.add_typer(app)``;
2. add ``"limits"`` to :data:`GROUPS`.

Conventions every group follows, so the command stays fast and its errors stay readable:

* import fluvial's heavier parts (settings, storage, runners) inside the command functions, so
  ``fluvial --help`` imports none of them, and never import dask or ray unless asked;
* raise :class:`~._output.CommandError` (message plus hint) or let a ``FluvialError`` escape:
  :func:`main` prints it as ``error: ...`` / ``hint: ...`` on stderr and exits with status 1;
* print data with :func:`~._output.out` (exact lines) or :func:`~._output.console` (rich).
"""

from __future__ import annotations

__all__ = ("GROUPS", "build_app", "main")

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from ..exceptions import FluvialError
from ._output import report_error, report_usage_error

#: The command-group modules of this package, in the order ``--help`` lists them; each has a
#: ``register(root: typer.Typer) -> None`` function.
GROUPS: tuple[str, ...] = ("run", "runs", "cache", "config", "profiles", "limits", "bench")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"fluvial {__version__}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """fluvial: Prefect 3's flows and tasks, embedded. Run flows, inspect runs and results,
    manage settings.
    """
    if ctx.invoked_subcommand is None:
        text = ctx.get_help()
        if text:
            typer.echo(text)


def build_app() -> typer.Typer:
    """Return the ``fluvial`` typer app with every group in :data:`GROUPS` registered."""
    app = typer.Typer(
        name="fluvial",
        invoke_without_command=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for name in GROUPS:
        importlib.import_module(f".{name}", __name__).register(app)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fluvial`` command with *argv* (default: ``sys.argv[1:]``); return its exit code."""
    command = typer.main.get_command(build_app())
    # `run` and `runs resume` put a flow file's directory first on sys.path. When main() is
    # called inside a longer-lived process (embedding, tests), that entry would go on shadowing
    # installed modules there and in every worker spawned later, so it ends with the command.
    saved_path = list(sys.path)
    try:
        result = command.main(
            args=None if argv is None else list(argv), prog_name="fluvial", standalone_mode=False
        )
    except typer.TyperException as exc:  # click's usage errors and their kin
        return report_usage_error(exc)
    except typer.Abort:
        return report_error(KeyboardInterrupt("interrupted"))
    except (FluvialError, OSError) as exc:
        return report_error(exc)
    finally:
        sys.path[:] = saved_path
    return result if isinstance(result, int) else 0
