"""`olymp run`: one TOML config → extract (train, test) → train-head → predict, skipping what is current."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.console import (
    ExtractView,
    JsonOption,
    QuietOption,
    console,
    err_console,
    exit_on_error,
    quiet_output,
    score_text,
    StepSpinner,
)


def run(
    config_path: Annotated[
        str, typer.Argument(help="Run config (TOML; see configs/examples/); - reads it from stdin.", metavar="CONFIG")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: TABLE.KEY=VALUE (a TOML scalar), repeatable."),
    ] = None,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Whole chain on a tiny subsample (smoke.limit rows, smoke.folds folds) into OUTPUT-smoke.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=2, help="N training inputs (stratified, seeded), the first N test inputs; into OUTPUT-limitN.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run every step, even the up-to-date ones.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Only say which steps would run and why.")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run the whole chain from one config; steps whose inputs and settings did not change are skipped.

    Example:  olymp run configs/examples/digits.toml --set head.name=lgbm

    Smoke:    olymp run configs/examples/digits.toml --smoke
    """
    from pipelines.chain import runconfig
    from pipelines.chain.chain import run_chain

    shown = err_console if json_out else console
    live = not (quiet or json_out)  # bars and spinners only for a person watching
    spinner = StepSpinner()
    current = {"step": ""}

    def on_progress(kind: str, message: str) -> None:
        if kind == "warning":
            err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
        elif kind == "step":
            spinner.stop()
            shown.print(f"[bold]›[/] {message}", highlight=False, soft_wrap=True)
            name = message.split(":", 1)[0]
            current["step"] = name
            # extraction draws its own bar (ExtractView); the other steps get a spinner with the time
            if live and "running" in message and not name.startswith("extract"):
                spinner.start(f"{name} running")
        elif kind == "round":  # inside a train-head fold: the spinner only, no line per round
            spinner.update(f"{current['step']}: {message}")
        else:
            shown.print(f"  [dim]{message}[/]", highlight=False, soft_wrap=True)
            spinner.update(f"{current['step']}: {message}")

    with exit_on_error(), quiet_output(quiet), spinner, ExtractView() as view:
        text = sys.stdin.read() if config_path == "-" else None
        config = runconfig.load(config_path, overrides, text=text)
        result = run_chain(config, smoke, limit, force, dry_run, on_progress,
                           extract_progress=view.update if live else None)

    smoke_note = (
        f"--smoke measures plumbing only: a score from {config.smoke.limit} inputs in {config.smoke.folds} folds "
        "can sit near chance; run without --smoke for the real CV score"
    ) if smoke and result.scores and not dry_run else None
    if json_out:
        typer.echo(json.dumps(result.summary(), indent=2, default=str))
        if smoke_note and not quiet:
            err_console.print(f"[yellow]note:[/] {smoke_note}", highlight=False, soft_wrap=True)
        return
    if quiet:
        return
    console.print(steps_table(result))
    if dry_run:
        for line in result.checks:
            console.print(f"[green]ok[/] {line}", highlight=False, soft_wrap=True)
        console.print("dry run: every value checked, nothing extracted or fitted", highlight=False)
    if result.scores:
        metric = result.scores["metric"]
        mean, std, oof = result.scores["mean"][metric], result.scores["std"][metric], result.scores["oof"][metric]
        console.print(
            f"[bold]cv[/] {metric} {score_text(mean)} ± {score_text(std)} (all out-of-fold {score_text(oof)}); "
            f"reports: olymp report {result.run_dir}", highlight=False, soft_wrap=True,
        )
    if smoke_note:
        console.print(f"[yellow]note:[/] {smoke_note}", highlight=False, soft_wrap=True)
    if result.submission:
        console.print(f"[bold]submission[/] {result.submission}", highlight=False, soft_wrap=True)


def steps_table(result) -> Table:
    table = Table(title=f"olymp run → {Path(result.output)} ({result.seconds:.1f} s)", title_justify="left")
    for column in ("step", "status", "why", "seconds"):
        table.add_column(column, overflow="fold", justify="right" if column == "seconds" else "left")
    for step in result.steps:
        style = "green" if step.status == "ran" else "dim"
        table.add_row(step.name, f"[{style}]{step.status}[/]", step.reason, f"{step.seconds:.1f}" if step.seconds else "")
    return table
