"""`olymp weights list | pull | verify`: which backbone weights are on this machine, and getting them."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.console import (JsonOption, QuietOption, console, err_console, error_console, exit_on_error, names_argument,
                         quiet_output)

app = typer.Typer(
    help="Which backbone weights are usable offline; download them while online; check them.\n\n"
    "Example:  olymp weights list",
    no_args_is_help=True,
)

_STATE_STYLE = {"available": "green", "missing": "red", "needs-file": "yellow", "not-extractable": "dim"}


@app.command("list")
def list_weights(
    names: names_argument("Only these catalog entries (default: all).") = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Every catalog backbone: are its weights usable offline right now, from where, or how to get them.

    Example:  olymp weights list --json
    """
    from pipelines.select.weights import as_json as to_json
    from pipelines.select.weights import list_status

    with exit_on_error():
        statuses = list_status(names or ())
    if as_json:
        typer.echo(json.dumps(to_json(statuses), indent=2))
        return
    if quiet:  # the exit status says the names are known; nothing else to print
        return
    table = Table(title="Backbone weights on this machine", title_justify="left")
    table.add_column("backbone", no_wrap=True)
    table.add_column("modality", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("from / fix", overflow="fold")
    for status in statuses:
        style = _STATE_STYLE.get(status.state, "")
        table.add_row(status.name, status.modality, f"[{style}]{status.state}[/]", status.source or status.fix)
    console.print(table)


@app.command("pull")
def pull_weights(
    names: Annotated[list[str], typer.Argument(help="Catalog names or HF ids (olymp weights list).", show_default=False)],
    quiet: QuietOption = False,
) -> None:
    """Download catalog weights into the Hugging Face cache (HF_HOME) while online, and record their SHA-256.

    Example:  olymp weights pull resnet50 convnext_tiny panns-cnn14
    """
    from pipelines.select.weights import pull, record_path

    def on_start(entry, repo_id: str) -> None:
        err_console.print(f"pulling [bold]{entry.name}[/] from {repo_id} ...", highlight=False)

    with exit_on_error(), quiet_output(quiet):
        results = pull(names, on_start=on_start)
    if quiet:
        return
    for result in results:
        size = sum(f.size for f in result.files) / 1e6
        console.print(
            f"[green]ok[/] {result.name}: {result.repo_id} @ {result.revision[:10]} "
            f"({len(result.files)} files, {size:.1f} MB) in {result.snapshot}",
            highlight=False, soft_wrap=True,
        )
    console.print(f"recorded in {record_path()}; check later with: olymp weights verify", highlight=False)


@app.command("verify")
def verify_weights(
    names: names_argument("Only these entries (default: all pulled).") = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Recompute the SHA-256 of pulled weights and compare with the record; exit 1 on any MISMATCH or MISSING
    file, 0 when all match or nothing was pulled yet (nothing to verify).

    Example:  olymp weights verify --quiet && echo ok
    """
    from pipelines.select.weights import as_json as to_json
    from pipelines.select.weights import record_path, verify

    with exit_on_error():
        results = verify(names or ())
    if as_json:
        typer.echo(json.dumps(to_json(results), indent=2))
    elif not results:
        if not quiet:
            console.print(f"nothing to verify: nothing pulled yet (no {record_path()}); "
                          "olymp weights pull NAME while online records files to check", highlight=False, soft_wrap=True)
    elif not quiet:
        table = Table(title="Pulled weights", title_justify="left")
        for column in ("backbone", "repo", "file", "status", "detail"):
            table.add_column(column, overflow="fold")
        for result in results:
            style = "green" if result.status == "OK" else "red"
            table.add_row(result.name, result.repo_id, result.path, f"[{style}]{result.status}[/]", result.detail)
        console.print(table)
    bad = [result for result in results if result.status != "OK"]
    if bad:
        error_console.print(f"[bold red]error:[/] {len(bad)} of {len(results)} files failed verification", highlight=False)
        raise typer.Exit(1)
