"""`olymp predict`: a train-head run + test embeddings (or raw test files) -> submission CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import console, err_console, exit_on_error


def predict(
    run_dir: Annotated[
        Path, typer.Argument(help="Run directory written by `olymp train-head`.", exists=True, file_okay=False, metavar="RUN_DIR")
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Test embedding dir(s) in the training order, or one raw folder / CSV / Parquet listing "
            "(extracted first with the training backbone).",
            exists=True, show_default=False, metavar="TEST_EMBEDDINGS",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission CSV to write.")],
    proba: Annotated[
        bool, typer.Option("--proba", help="One probability column per class (or label) instead of the predicted label(s).")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Multilabel: decision threshold, e.g. --threshold 0.3 (default: the run's, tuned on OOF).", min=0.0, max=1.0),
    ] = None,
    sample_submission: Annotated[
        Path | None,
        typer.Option(
            "--sample-submission", help="The contest's sample file: row order, id and target column names.",
            exists=True, dir_okay=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="For raw inputs: auto | cpu | cuda | cuda:N.")] = "auto",
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="For raw inputs: images per forward pass (default: 8 on CPU, 128 on GPU).", min=1)] = None,
) -> None:
    """Predict test ids with a run's fold models (averaged) and write a submission CSV.

    Example:  olymp predict runs/lgbm emb/test -o submission.csv

    Multilabel at another threshold:  olymp predict runs/tags emb/test -o submission.csv --threshold 0.4
    """
    from pipelines.predict import PredictConfig
    from pipelines.predict import predict as run_predict

    def on_progress(level: str, message: str) -> None:
        if level == "warning":
            err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
        else:
            console.print(message, highlight=False, soft_wrap=True)

    with exit_on_error():
        config = PredictConfig(
            run_dir=str(run_dir), inputs=[str(p) for p in inputs], output=str(output), proba=proba, threshold=threshold,
            sample_submission=None if sample_submission is None else str(sample_submission),
            device=device, batch_size=batch_size,
        )
        result = run_predict(config, on_progress=on_progress)

    kind = "probabilities" if result.proba else ("values" if result.task == "regression" else "labels")
    prior = f", {result.n_prior} from the training prior" if result.n_prior else ""
    console.print(
        f"wrote [bold]{result.output}[/]: {result.n_rows} rows of {kind} "
        f"(mean of {result.n_models} fold models{prior})",
        highlight=False, soft_wrap=True,
    )
