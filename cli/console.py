"""Shared rich consoles and the one place library errors become a red line and exit code 1."""

from __future__ import annotations

import errno
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pipelines.core.errors import OlympError, first_line

# Arguments several commands take (typer reads them from the annotations).
RunDirArgument = Annotated[
    Path,
    typer.Argument(
        help="Run directory written by `olymp train-head`, or a blend dir from `olymp blend`.",
        exists=True, file_okay=False, metavar="RUN_DIR",
    ),
]


def dirs_argument(help: str, metavar: str):
    """One or more existing directories (embedding dirs, run dirs) as a positional argument."""
    return Annotated[
        list[Path], typer.Argument(help=help, exists=True, file_okay=False, show_default=False, metavar=metavar)
    ]


def names_argument(help: str):
    """Optional catalog names as a positional argument (default: all)."""
    return Annotated[list[str] | None, typer.Argument(help=help, show_default=False)]


def summary_done(summary: dict, json_out: bool, quiet: bool) -> bool:
    """--json: print the summary as JSON; True when nothing more is to be shown (--json or --quiet)."""
    if json_out:
        import json

        typer.echo(json.dumps(summary, indent=2))
    return json_out or quiet


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


# --------------------------------------------------------------------------- progress views
# The library reports through callbacks; these draw them. Under --quiet the consoles are quiet
# and the commands pass no callback at all.


class _LiveView:
    """A rich Progress shown while a `with` block runs, stopped on exit (or by stop())."""

    progress = None
    task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.progress = self.task = None


class ExtractView(_LiveView):
    """Draws the extraction runner's events: a header line, then a bar with items/s.

    One view may see several extractions (`olymp run`: train, then test; predict on raw files
    for each training backbone): each gets its own bar and its own RateMeter, so a rate never
    counts another extraction's time, the model build, or inputs resumed from an earlier run.
    """

    meter = None

    def update(self, event) -> None:  # pipelines.extract.runner.ExtractProgress
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from pipelines.core.progress import RateMeter

        if event.stage == "start":
            self.stop()
            info = event.info
            err_console.print(
                f"backbone [bold]{info['backbone']}[/] ({info['timm_name']}, {info['embedding_dim']}-d) "
                f"on [bold]{info['device']}[/] ({info['precision']}), batches of {info['batch_size']}, {info['workers']} decode workers\n"
                f"weights: {info['weights_source']}", highlight=False,
            )
            if info["note"]:
                err_console.print(info["note"], highlight=False)
            for warning in info.get("warnings") or []:
                err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
            if info.get("shard"):
                err_console.print(f"{info['shard']}: {event.total} inputs to go", highlight=False)
            if info["resumed"]:
                err_console.print(f"resuming: {info['resumed']} inputs already done, {event.total} to go")
            if info.get("changed"):  # content-keyed resume: their files changed
                err_console.print(f"{info['changed']} inputs changed since they were embedded: embedding them again",
                                  highlight=False)
            if info.get("retried"):
                err_console.print(f"{info['retried']} inputs that failed before: trying them once more", highlight=False)
            self.progress = Progress(
                TextColumn("[bold]extract"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} {task.fields[unit]}/s"), TextColumn("[red]{task.fields[errors]} errors"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
            )
            self.progress.start()
            unit = "clips" if info["modality"] == "audio" else "img"
            self.meter = RateMeter()
            self.task = self.progress.add_task("extract", total=event.total, rate="-", errors=0, unit=unit)
        elif event.stage in ("batch", "done") and self.task is not None:
            if event.stage == "batch":
                self.meter.update(event.processed)
            self.progress.update(self.task, completed=event.processed, rate=self.meter.text(), errors=event.errors)
            if event.stage == "done":
                self.stop()


class StepSpinner(_LiveView):
    """A one-line spinner with the elapsed time for a step that has no count to show (a head
    fitting its folds, a blend choosing weights); the line's text follows the step's messages.
    Transient: the step's own result lines stay, the spinner goes."""

    def __init__(self, target: Console | None = None):
        self.console = target or err_console

    def start(self, text: str) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.stop()
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task(escape(text), total=None)

    def update(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=escape(text))
