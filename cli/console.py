"""Shared rich consoles and the one place library errors become a red line and exit code 1."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pipelines.errors import OlympError

console = Console()
err_console = Console(stderr=True)
# Errors get their own console so --quiet (which silences the two above) never hides them.
error_console = Console(stderr=True)


@contextmanager
def exit_on_error():
    """Turn an OlympError from `pipelines` into one line on stderr and exit status 1."""
    try:
        yield
    except OlympError as error:
        error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        error_console.print("[yellow]interrupted[/]: finished parts are kept; re-run the same command to resume")
        raise typer.Exit(130) from None


@contextmanager
def quiet_output(quiet: bool):
    """--quiet: no progress, tables or warnings on either stream (JSON and errors still print)."""
    before = console.quiet, err_console.quiet
    console.quiet, err_console.quiet = before[0] or quiet, before[1] or quiet
    try:
        yield
    finally:
        console.quiet, err_console.quiet = before


def score_text(value) -> str:
    """A metric as tables and summaries show it: 4 decimals, "-" when undefined (None/NaN)."""
    return "-" if value is None or value != value else f"{value:.4f}"


# The two scripting options every command takes, spelled once.
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (nothing else there).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, tables or warnings; errors still go to stderr.")]
