"""How a command group is made: a ``typer.Typer`` that prints its help when given no command."""

from __future__ import annotations

__all__ = ("JsonOption", "StorageOption", "group")

from typing import Annotated

import typer


def _help_without_command(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        # Typer's rich help prints itself and returns ""; plain click help is returned.
        text = ctx.get_help()
        if text:
            typer.echo(text)


def group(name: str, help: str) -> typer.Typer:
    """Return an empty command group *name*; ``fluvial <name>`` alone prints its help."""
    app = typer.Typer(name=name, help=help, invoke_without_command=True, add_completion=False)
    app.callback()(_help_without_command)
    return app


def _storage_given(value: str | None) -> str | None:
    # An empty path would resolve to the filesystem root: never list or clear that by accident.
    if value is not None and not value.strip():
        raise typer.BadParameter("give a path or URL, not an empty string")
    return value


#: The ``--storage URL`` option of every command that reads or writes result storage.
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URL",
        callback=_storage_given,
        help="Result storage: a path or fsspec URL (s3://bucket/prefix, memory://x). "
        "Default: the FLUVIAL_RESULTS_DEFAULT_STORAGE setting, else <FLUVIAL_HOME>/storage.",
    ),
]

#: The ``--json`` option of commands that can print machine-readable output.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
