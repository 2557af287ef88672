"""stub"""

import typer


def register(root: typer.Typer) -> None:
    """Nothing yet."""
