"""`olymp predict`: a train-head run + test embeddings (or raw test files) -> submission CSV."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import ExtractView, JsonOption, QuietOption, RunDirArgument, console, err_console, exit_on_error, quiet_output


def predict(
    run_dir: RunDirArgument,
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Test embedding dir(s) in the training order (for a blend: every member's, any order, matched by "
            "fingerprint), or one raw folder / CSV / Parquet listing (extracted first with the training backbone(s)); "
            "- reads a list of test files from stdin.",
            show_default=False, metavar="TEST_EMBEDDINGS",
        ),
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Submission CSV to write; - for stdout.")],
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
    allow_tta_mismatch: Annotated[bool, typer.Option("--allow-tta-mismatch", help="Accept test embeddings made with another --tta than the training ones.")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Predict test ids with a run's fold models (averaged) and write a submission CSV.

    Example:  olymp predict runs/lgbm emb/test -o submission.csv

    Example:  olymp predict runs/blend emb/test-effnet emb/test-panns -o submission.csv
    Scripted: ls test/*.png | olymp predict runs/lgbm - -o - --quiet > submission.csv
    Multilabel at another threshold:  olymp predict runs/tags emb/test -o submission.csv --threshold 0.4
    """
    from pipelines.predict.predict import inputs_from_text
    from pipelines.predict.config import PredictConfig
    from pipelines.predict.predict import predict as run_predict

    to_stdout = output == "-"
    shown = err_console if to_stdout or json_out else console  # stdout carries only the result

    def on_progress(level: str, message: str) -> None:
        if level == "warning":
            err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
        else:
            shown.print(message, highlight=False, soft_wrap=True)

    with exit_on_error(), quiet_output(quiet):
        paths = [str(p) for p in inputs]
        if paths == ["-"]:
            paths = inputs_from_text(sys.stdin.read(), run_dir)
        config = PredictConfig(
            run_dir=str(run_dir), inputs=paths, output=None if to_stdout else output, proba=proba, threshold=threshold,
            sample_submission=None if sample_submission is None else str(sample_submission),
            device=device, batch_size=batch_size, allow_tta_mismatch=allow_tta_mismatch,
        )
        # Raw test files are extracted first: a bar with items/s on stderr (none under --quiet).
        with ExtractView() as view:
            result = run_predict(config, on_progress=on_progress, extract_progress=None if quiet else view.update)

    if to_stdout:
        sys.stdout.write(result.frame.to_csv(index=False))
        sys.stdout.flush()
    if json_out and not to_stdout:
        typer.echo(json.dumps(result.summary(), indent=2))
    if json_out or quiet:
        return
    kind = "probabilities" if result.proba else ("values" if result.task == "regression" else "labels")
    prior = f", {result.n_prior} from the training prior" if result.n_prior else ""
    members = f"blend of {result.n_members} runs, " if result.n_members else ""
    shown.print(
        f"wrote [bold]{result.output or 'stdout'}[/]: {result.n_rows} rows of {kind} "
        f"({members}mean of {result.n_models} fold models{prior})",
        highlight=False, soft_wrap=True,
    )
