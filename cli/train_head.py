"""`olymp train-head`: a cross-validated head on embeddings -> run directory + fold scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.views import head_choice_table, scores_table, tuning_table
from cli.console import (JsonOption, QuietOption, console, dirs_argument, err_console, exit_on_error, quiet_output,
                         score_text, summary_done)


def train_head(
    embeddings: dirs_argument(
        "Embedding dir(s) from `olymp extract`; several are joined on id, features concatenated in order.", "EMBEDDINGS"
    ),
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory to create.")],
    labels: Annotated[
        Path | None,
        typer.Option("--labels", "-l", help="CSV with an id column and a target column; ids may be the relative path "
                     "or the bare stem, with or without extension.", exists=True, dir_okay=False),
    ] = None,
    labels_from_folders: Annotated[
        bool,
        typer.Option("--labels-from-folders", help="No CSV: each file's parent folder name is its class (as ImageFolder)."),
    ] = False,
    id_col: Annotated[str, typer.Option("--id-col", help="Id column of the labels CSV.")] = "id",
    target_col: Annotated[
        str,
        typer.Option("--target-col", help="Target column of the labels CSV; a,b,c = one 0/1 column per label (multilabel)."),
    ] = "label",
    label_sep: Annotated[
        str | None,
        typer.Option("--label-sep", help="Multilabel: the target column holds labels joined by this, e.g. --label-sep ' '."),
    ] = None,
    group_col: Annotated[
        str | None, typer.Option("--group-col", help="Rows sharing this column's value stay in one fold.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="binary | multiclass | regression | multilabel (default: inferred)")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="Reported first, drives early stopping: auc logloss accuracy f1_macro | rmse mae r2 | "
            "lwlrap map f1_micro f1_macro logloss (multilabel).",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Multilabel decision threshold for F1 and predicted labels (default: tuned on OOF for micro-F1)."),
    ] = None,
    head: Annotated[
        str,
        typer.Option("--head", help="logreg (default: close to the best measured on real embeddings, deterministic) | mlp | lgbm "
                                    "(early-stopped on an inner split; slower on a CPU) | auto (logreg and mlp, lgbm on small data, "
                                    "on the same folds: the best OOF score wins)."),
    ] = "logreg",
    tune: Annotated[
        str,
        typer.Option("--tune", help="auto | off | N: search the head's parameters inside each fold, on an inner split of its "
                                    "training part (logreg: scaling x C; mlp: weight_decay, dropout, hidden; lgbm: leaves, "
                                    "min_data_in_leaf, feature_fraction, learning_rate); N = candidates; --param fixes one.",
                     metavar="auto|off|N"),
    ] = "auto",
    time_budget: Annotated[
        str | None,
        typer.Option("--time-budget", help="Time for that search, whole run (90s, 10m, 1h): each fold gets its share and "
                                           "tries candidates while the next fits in it; with --tune auto the head's whole "
                                           "list is open to it (how many were tried is recorded: --tune N repeats it)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p",
            help="Head parameter KEY=VALUE, repeatable (e.g. num_leaves=63, C=0.1; mlp: hidden=1024,256 dropout=0.3 input_dropout=0.2 "
            "lr=2e-3 weight_decay=1e-2 epochs=40 patience=10 batch_size=128 schedule=onecycle|cosine|constant device=cpu).",
        ),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", help="Number of CV folds.", min=2)] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds (and of the models without --seeds).")] = 42,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Model seeds, e.g. 0,1,2: one model per seed per fold, predictions averaged.", metavar="LIST"),
    ] = None,
    folds_from: Annotated[
        Path | None,
        typer.Option("--folds-from", help="Reuse this run's folds.csv (same ids), so OOF predictions can be blended.",
                     exists=True, file_okay=False, metavar="RUN_DIR"),
    ] = None,
    normalize: Annotated[
        str, typer.Option("--normalize", help="none | l2 | standard, per embedding source, fitted inside each fold.")
    ] = "none",
    pca: Annotated[
        int | None, typer.Option("--pca", help="Keep N PCA components (fitted inside each fold, after --normalize).", min=1)
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing olymp run in -o (a folder that is not one is refused, untouched).")] = False,
    json_out: JsonOption = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=2, help="Train on a stratified, seed-fixed subsample of N rows (smoke runs).")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Fit a head with K-fold CV on embeddings; save folds, out-of-fold predictions, scores and models.

    Example:  olymp train-head emb/train --labels train.csv -o runs/lr

    Class folders (train/cat/001.jpg):  olymp train-head emb/train --labels-from-folders -o runs/a

    Example:  olymp train-head emb/effnet emb/panns --labels train.csv -o runs/lgbm --head lgbm --normalize standard --pca 256 --folds-from runs/lr
    Multilabel: olymp train-head emb/train --labels train.csv --target-col tags --label-sep ' ' -o runs/tags --head mlp
    Seeds:      olymp train-head emb/train --labels train.csv -o runs/lgbm3 --head lgbm --seeds 0,1,2 --group-col patient
    Best head:  olymp train-head emb/train --labels train.csv -o runs/best --head auto
    Tuning time: olymp train-head emb/train --labels train.csv -o runs/lgbm --head lgbm --time-budget 10m
    """
    from pipelines.heads import parse_params
    from pipelines.train.train import TrainConfig, train

    shown = err_console if json_out else console
    inside_fold = []  # the live "fold k: round r ..." line while a fold trains (terminals only)

    def end_round_line() -> None:
        if inside_fold:
            inside_fold.pop().stop()

    def on_progress(kind: str, message: str) -> None:
        if kind == "round":
            if shown.quiet or not shown.is_terminal:
                return
            if not inside_fold:
                inside_fold.append(shown.status(f"[dim]{message}[/]"))
                inside_fold[0].start()
            inside_fold[0].update(f"[dim]{message}[/]")
            return
        end_round_line()
        if kind == "warning":
            err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
        elif kind == "head":
            err_console.print(f"[bold]{message}[/]", highlight=False, soft_wrap=True)
        elif kind == "fold":
            shown.print(f"[dim]{message}[/]", highlight=False)
        else:
            shown.print(f"[bold]task[/] {message}", highlight=False, soft_wrap=True)

    with exit_on_error(), quiet_output(quiet):
        config = TrainConfig(
            embeddings=[str(p) for p in embeddings], labels=None if labels is None else str(labels), output=str(output),
            labels_from_folders=labels_from_folders,
            id_col=id_col, target_col=target_col, label_sep=label_sep, group_col=group_col, task=task, metric=metric,
            threshold=threshold,
            head=head, head_params=parse_params(param), tune=tune, time_budget=time_budget, folds=folds, seed=seed, overwrite=overwrite,
            seeds=parse_seeds(seeds), folds_from=None if folds_from is None else str(folds_from),
            normalize=normalize, pca=pca,
            limit=limit,
        )
        try:
            result = train(config, on_progress=on_progress)
        finally:
            end_round_line()

    if summary_done(result.summary(), json_out, quiet):
        return
    console.print(scores_table(result))
    for table in (tuning_table(result), head_choice_table(result)):
        if table is not None:
            console.print(table)
    if result.seed_scores:
        each = ", ".join(f"{score_text(entry[result.metric])} (seed {entry['seed']})" for entry in result.seed_scores)
        console.print(f"oof {result.metric} of each seed alone: {each}; their mean: {score_text(result.oof[result.metric])}",
                      highlight=False, soft_wrap=True)
    if result.threshold is not None:
        console.print(f"multilabel threshold [bold]{result.threshold:.2f}[/] (F1 scores and predicted labels use it)", highlight=False)
    console.print(
        f"run saved to [bold]{result.run_dir}[/] (manifest.json, folds.csv, oof.csv, scores.json, models/, reports) "
        f"in {result.seconds:.1f}s; next: olymp predict {result.run_dir} TEST_EMBEDDINGS -o submission.csv",
        highlight=False, soft_wrap=True,
    )


def parse_seeds(text: str | None) -> list[int] | None:
    """"0,1,2" -> [0, 1, 2]."""
    from pipelines.core.errors import ConfigError

    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds '{text}' is not a comma-separated list of integers; e.g. --seeds 0,1,2") from None
