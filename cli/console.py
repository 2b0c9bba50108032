"""Shared rich consoles and the one place library errors become a red line and exit code 1."""

from __future__ import annotations

from contextlib import contextmanager

import typer
from rich.console import Console

from pipelines.errors import OlympError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def exit_on_error():
    """Turn an OlympError from `pipelines` into one line on stderr and exit status 1."""
    try:
        yield
    except OlympError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished parts are kept; re-run the same command to resume")
        raise typer.Exit(130) from None
