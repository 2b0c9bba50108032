"""`olymp blend`: train-head runs on the same folds -> weighted blend dir, scored cross-fitted on OOF predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.console import (
    JsonOption,
    QuietOption,
    StepSpinner,
    console,
    dirs_argument,
    err_console,
    exit_on_error,
    quiet_output,
    score_text,
    summary_done,
)


def blend(
    runs: dirs_argument("train-head run dirs trained on the same labels and folds (see train-head --folds-from).", "RUN_DIR..."),
    output: Annotated[Path, typer.Option("--output", "-o", help="Blend directory to create (olymp predict takes it like a run).")],
    method: Annotated[
        str, typer.Option("--method", help="greedy (ensemble selection with replacement) | nnls (non-negative least squares).")
    ] = "greedy",
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric the weights are chosen on  [default: the runs' main metric]")
    ] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="greedy: picks at most (with replacement).", min=1)] = 50,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="The training labels CSV, if it moved since training.", exists=True, dir_okay=False),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing blend in -o.")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Blend runs that share folds: weights chosen on their out-of-fold predictions, scored honestly.

    The blend's score is cross-fitted: each fold's rows are blended with weights chosen on the
    other folds, so it is out-of-sample; the saved weights are chosen on all OOF rows.

    Example:  olymp blend runs/lgbm runs/lr -o runs/blend && olymp predict runs/blend emb/test -o submission.csv
    """
    from pipelines.ensemble.blend import BlendConfig
    from pipelines.ensemble.blend import blend as run_blend

    spinner = StepSpinner()  # stderr, gone when done; none under --quiet/--json

    def on_progress(level: str, message: str) -> None:
        prefix = "[yellow]warning:[/] " if level == "warning" else ""
        err_console.print(f"{prefix}{message}", highlight=False, soft_wrap=True)
        if level != "warning":
            spinner.update(f"blend: {message}")

    with exit_on_error(), quiet_output(quiet), spinner:
        if not (quiet or json_out):
            spinner.start(f"blend: {method} weights over {len(runs)} runs")
        config = BlendConfig(
            runs=[str(p) for p in runs], output=str(output), method=method, metric=metric, iterations=iterations,
            labels=None if labels is None else str(labels), overwrite=overwrite,
        )
        result = run_blend(config, on_progress=on_progress)

    if summary_done(result.summary(), json_out, quiet):
        return
    console.print(blend_table(result))
    console.print(
        f"blend saved to [bold]{result.blend_dir}[/] (manifest.json, oof.csv, scores.json); "
        f"next: olymp predict {result.blend_dir} TEST_EMBEDDINGS... -o submission.csv",
        highlight=False, soft_wrap=True,
    )


def blend_table(result) -> Table:
    from pipelines.train.metrics import GREATER_IS_BETTER

    table = Table(title=f"blend ({result.method}) · {result.task} · {result.n_rows} OOF rows")
    table.add_column("run")
    table.add_column("head")
    table.add_column("weight", justify="right")
    for i, name in enumerate(result.metrics):
        arrow = "↑" if GREATER_IS_BETTER[name] else "↓"
        table.add_column(f"[bold]{name}[/] {arrow}" if i == 0 else f"{name} {arrow}", justify="right")
    for member in result.members:
        table.add_row(member["run"], member["head"], f"{member['weight']:.3f}", *(score_text(member["oof"][n]) for n in result.metrics))
    table.add_section()
    table.add_row("blend (cross-fitted)", "", "1.000", *(score_text(result.oof[n]) for n in result.metrics))
    return table
