"""Shared rich consoles and the one place library errors become a red line and exit code 1."""

from __future__ import annotations

import errno
import os
import warnings
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pipelines.errors import OlympError, first_line

console = Console()
err_console = Console(stderr=True)
# Errors get their own console so --quiet (which silences the two above) never hides them.
error_console = Console(stderr=True)


DEBUG_VARIABLE = "OLYMP_DEBUG"
DEBUG_HINT = f"set {DEBUG_VARIABLE}=1 for the traceback"


def debug_enabled() -> bool:
    """OLYMP_DEBUG=1: let every exception through with its traceback (for bug reports)."""
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def print_error(message: str) -> None:
    """The one red line every failure ends in (newlines folded, so it stays one line)."""
    line = " ".join(str(message).split())
    error_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _os_error_text(error: OSError) -> str:
    """An OSError as a line naming the file and the fix (disk full, permissions, missing paths...)."""
    where = error.filename if error.filename is not None else None
    target = f" {where}" if where is not None else ""
    reason = error.strerror or first_line(error)
    if error.errno == errno.ENOSPC or error.errno == errno.EDQUOT:
        return f"disk full writing{target or ' the output'}: free space or choose another -o"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on{target or ' a file'}: fix its permissions or choose another path"
    if error.errno == errno.ENOENT:
        return f"no such file or directory:{target or ' (unnamed)'}; check the path"
    if error.errno == errno.EROFS:
        return f"read-only file system at{target or ' the output'}: choose another -o"
    if error.errno in (errno.ENOTDIR, errno.EISDIR):
        return f"{reason}:{target}; pass a path of the right kind (file or directory)"
    return f"{reason}{':' + target if target else ''}; {DEBUG_HINT}"


def error_text(error: BaseException) -> str:
    """One line for any exception that escaped a command."""
    if isinstance(error, OlympError):
        return str(error)
    if isinstance(error, OSError):
        return _os_error_text(error)
    if isinstance(error, MemoryError):
        return f"out of memory; pass a smaller --batch-size or --limit ({DEBUG_HINT})"
    text = first_line(error)
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"unexpected {type(error).__name__}: {text} ({DEBUG_HINT})"


@contextmanager
def exit_on_error():
    """Turn an OlympError from `pipelines` into one line on stderr and exit status 1.
    (Every other exception becomes one line as well, in cli.app's command group.)"""
    try:
        yield
    except OlympError as error:
        if debug_enabled():
            raise
        print_error(str(error))
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
        with warnings.catch_warnings():
            if quiet:  # Python warnings from libraries too (matplotlib, sklearn...)
                warnings.simplefilter("ignore")
            yield
    finally:
        console.quiet, err_console.quiet = before


def score_text(value) -> str:
    """A metric as tables and summaries show it: 4 decimals, "-" when undefined (None/NaN)."""
    return "-" if value is None or value != value else f"{value:.4f}"


# The two scripting options every command takes, spelled once.
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (nothing else there).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, tables or warnings; errors still go to stderr.")]
