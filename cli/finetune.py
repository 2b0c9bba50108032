"""`olymp finetune`: fine-tune a backbone per CV fold on raw files -> run directory + fold scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.console import JsonOption, QuietOption, console, err_console, exit_on_error, quiet_output
from cli.views import scores_table


def finetune(
    inputs: Annotated[Path, typer.Argument(help="A folder of images or audio clips (recursive) or a CSV/Parquet listing with id,path.",
                                           exists=True, show_default=False, metavar="INPUTS")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory to create (or resume, when a run there was interrupted).")],
    labels: Annotated[Optional[Path], typer.Option("--labels", "-l", help="CSV with an id column and a target column (ids as train-head takes them).",
                                                   exists=True, dir_okay=False)] = None,
    labels_from_folders: Annotated[bool, typer.Option("--labels-from-folders", help="No CSV: each file's parent folder name is its class.")] = False,
    id_col: Annotated[str, typer.Option("--id-col", help="Id column of the labels CSV.")] = "id",
    target_col: Annotated[str, typer.Option("--target-col", help="Target column of the labels CSV (classes).")] = "label",
    group_col: Annotated[Optional[str], typer.Option("--group-col", help="Rows sharing this column's value stay in one fold (e.g. ESC-10's fold column).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="binary | multiclass (default: inferred).")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="Reported first: auc logloss accuracy f1_macro.")] = None,
    modality: Annotated[str, typer.Option("--modality", help="auto (from the file extensions) | image | audio (log-mel images).")] = "auto",
    folds: Annotated[int, typer.Option("--folds", min=2, help="Number of CV folds (the same labels, --seed and --group-col give train-head's folds).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds, the inner split, the new head and the augmentation.")] = 42,
    folds_from: Annotated[Optional[Path], typer.Option("--folds-from", help="Reuse this run's folds.csv (same ids), so OOF predictions blend.",
                                                       exists=True, file_okay=False, metavar="RUN_DIR")] = None,
    backbone: Annotated[str, typer.Option("--backbone", help="timm or catalog image backbone (audio: on log-mel images).")] = "efficientnet_lite0",
    weights: Annotated[Optional[str], typer.Option("--weights", help="Weights file (.safetensors/.pt), or 'random' for smoke tests. Default: offline auto (packaged Lite0, HF cache).")] = None,
    train_layers: Annotated[str, typer.Option("--train-layers", help="all, or N: the top N stages + the new head (BatchNorm frozen below). "
                                              "With N the frozen part is computed once per input and view and cached (cached mode: minutes on a CPU); "
                                              "all trains end to end (a GPU).")] = "2",
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Input side in pixels (default: the model's). Small images (e.g. 32-100 px photos) "
                                                      "train much faster at a lower one, e.g. --resolution 128.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="At most this many epochs per fold (early stopping may end sooner).")] = 10,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=2, help="Default: 32 on CPU; on a GPU the largest that fits (from 256 down).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate of the trained stages.")] = 3e-4,
    head_lr_mult: Annotated[float, typer.Option("--head-lr-mult", help="The new head learns this many times faster.")] = 10.0,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay (not on norms and biases).")] = 0.01,
    schedule: Annotated[str, typer.Option("--schedule", help="cosine (linear warm-up, then cosine) | onecycle.")] = "cosine",
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", help="Cross-entropy label smoothing.")] = 0.1,
    grad_clip: Annotated[float, typer.Option("--grad-clip", help="Clip the gradient norm to this (0: off).")] = 1.0,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Early stopping: epochs without a better inner-split loss.")] = 3,
    stop_share: Annotated[float, typer.Option("--stop-share", help="Share of each fold's training part held out for early stopping (never the fold's own rows).")] = 0.15,
    hflip: Annotated[bool, typer.Option("--hflip", help="Images: random horizontal flips (off by default: orientation may carry meaning); allows predict --tta hflip.")] = False,
    auto_augment: Annotated[Optional[str], typer.Option("--auto-augment", help="Images: timm policy, e.g. rand-m9-mstd0.5 (RandAugment) or original (AutoAugment).")] = None,
    mixup: Annotated[float, typer.Option("--mixup", help="Mixup alpha (0: off), e.g. 0.2 (cached mode: mixes the cached features).")] = 0.0,
    cutmix: Annotated[float, typer.Option("--cutmix", help="CutMix alpha (0: off).")] = 0.0,
    views: Annotated[int, typer.Option("--views", min=1, help="Cached mode: augmented views computed per input; epochs draw among them.")] = 4,
    spec_augment: Annotated[bool, typer.Option("--spec-augment/--no-spec-augment", help="Audio: SpecAugment time and frequency masks.")] = True,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="With --train-layers N: recompute the frozen part every step (fresh augmentation each epoch; slow on a CPU).")] = False,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Where cached mode keeps the frozen part's outputs (default: RUN_DIR/feature_cache).", file_okay=False)] = None,
    window: Annotated[Optional[float], typer.Option("--window", help="Audio: seconds per window (default 5); a clip's windows are averaged.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")] = "auto",
    workers: Annotated[Optional[int], typer.Option("--workers", min=0, help="Image decode processes (default: 0 on CPU, 4 on a GPU).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=2, help="Train on a stratified, seed-fixed subsample of N rows (smoke runs).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished finetune run in -o (the feature cache is kept).")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fine-tune a backbone with K-fold CV on raw files; save folds, out-of-fold predictions, scores and one network per fold.

    CPU, top stages:  olymp finetune data/train --labels train.csv -o runs/ft --train-layers 2 --resolution 128 --epochs 8

    GPU, end to end:  olymp finetune data/train --labels train.csv -o runs/ft --train-layers all --epochs 15 --hflip --mixup 0.2

    Audio:            olymp finetune clips/ --labels labels.csv --group-col fold -o runs/ft-audio --train-layers 2
    """
    from pipelines.finetune.config import FinetuneConfig
    from pipelines.finetune.finetune import finetune as run_finetune

    shown = err_console if json_out else console

    def on_progress(kind: str, message: str, data: dict | None = None) -> None:
        if kind == "warning":
            err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
        elif kind == "task":
            shown.print(f"[bold]finetune[/] {message}", highlight=False, soft_wrap=True)
        elif kind == "fold":
            shown.print(f"[bold]{message}[/]", highlight=False)
        else:  # epoch, round, cache: progress lines on stderr
            err_console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)

    with exit_on_error(), quiet_output(quiet):
        config = FinetuneConfig(
            inputs=str(inputs), labels=None if labels is None else str(labels), output=str(output), modality=modality,
            id_col=id_col, target_col=target_col, group_col=group_col, labels_from_folders=labels_from_folders,
            task=task, metric=metric, folds=folds, seed=seed, folds_from=None if folds_from is None else str(folds_from),
            backbone=backbone, weights=weights, train_layers=train_layers, resolution=resolution, epochs=epochs,
            batch_size=batch_size, lr=lr, head_lr_mult=head_lr_mult, weight_decay=weight_decay, schedule=schedule,
            label_smoothing=label_smoothing, grad_clip=grad_clip, patience=patience, stop_share=stop_share,
            hflip=hflip, auto_augment=auto_augment, mixup=mixup, cutmix=cutmix, views=views, spec_augment=spec_augment,
            cache=not no_cache, cache_dir=None if cache_dir is None else str(cache_dir), device=device, workers=workers,
            window=window, overwrite=overwrite, limit=limit,
        )
        result = run_finetune(config, on_progress=None if quiet else on_progress)

    if json_out:
        typer.echo(json.dumps(result.summary(), indent=2))
        return
    if quiet:
        return
    console.print(scores_table(result))
    errors = f", {result.n_errors} unreadable files left out (errors.csv)" if result.n_errors else ""
    console.print(
        f"run saved to [bold]{result.run_dir}[/] (manifest.json, folds.csv, oof.csv, scores.json, fold-K/ networks){errors} "
        f"in {result.seconds:.1f}s ({result.mode} mode, {result.device}); next: olymp predict {result.run_dir} TEST_FILES -o submission.csv",
        highlight=False, soft_wrap=True,
    )
