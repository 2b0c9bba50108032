"""`olymp inspect`: the quickest check that a backbone separates the classes (k-NN score + 2-D plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.console import JsonOption, QuietOption, console, exit_on_error, quiet_output


def inspect(
    embeddings: Annotated[
        Path, typer.Argument(help="Embedding dir from `olymp extract`.", exists=True, file_okay=False, metavar="EMBEDDINGS")
    ],
    labels: Annotated[
        Path, typer.Option("--labels", "-l", help="CSV with an id column and a target column.", exists=True, dir_okay=False)
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG of the 2-D projection, coloured by label.")] = None,
    id_col: Annotated[str, typer.Option("--id-col", help="Id column of the labels CSV.")] = "id",
    target_col: Annotated[str, typer.Option("--target-col", help="Target column of the labels CSV.")] = "label",
    method: Annotated[str, typer.Option("--method", help="auto (UMAP when installed, else PCA) | pca | umap")] = "auto",
    neighbors: Annotated[int, typer.Option("--neighbors", "-k", min=1, help="k of the k-NN score.")] = 5,
    folds: Annotated[int, typer.Option("--folds", min=2, help="CV folds of the k-NN score.")] = 5,
    max_rows: Annotated[int, typer.Option("--max-rows", min=10, help="Stratified subsample beyond this many rows.")] = 20_000,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Cross-validated k-NN score of embeddings against their labels, and a 2-D projection picture.

    Example:  olymp inspect emb/train --labels train.csv -o proj.png
    """
    from pipelines.select.inspect import InspectConfig
    from pipelines.select.inspect import inspect as run_inspect

    with exit_on_error(), quiet_output(quiet):
        result = run_inspect(InspectConfig(
            embeddings=str(embeddings), labels=str(labels), output=str(output) if output else None, id_col=id_col,
            target_col=target_col, method=method, neighbors=neighbors, folds=folds, max_rows=max_rows,
        ))
    if json_out:
        typer.echo(json.dumps(result.summary(), indent=2))
        return
    if quiet:
        return
    baseline = "majority class" if result.task != "regression" else "predicting the mean"
    console.print(
        f"[bold]{result.score_name}[/] {result.score:.4f} ({folds}-fold CV, {result.n_rows} rows, {result.dim}-d); "
        f"{baseline}: {result.baseline:.4f}", highlight=False, soft_wrap=True,
    )
    if result.output:
        console.print(f"[bold]projection[/] ({result.method}) {result.output}", highlight=False, soft_wrap=True)
