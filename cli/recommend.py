"""`olymp recommend`: which backbone for this data, machine and time budget?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.console import JsonOption, QuietOption, console, err_console, exit_on_error
from pipelines.core.durations import format_duration
from pipelines.select.recommend import TIME_LABELS, TIME_LEGEND, Recommendation, RecommendConfig
from pipelines.select.trial import recommend_and_trial as run_recommend


def recommend(
    data_path: Annotated[Optional[Path], typer.Argument(help="Folder or CSV/Parquet listing to probe (optional with --modality and --n-items).", exists=True)] = None,
    modality: Annotated[Optional[str], typer.Option(help="image | audio (default: from the files).")] = None,
    n_items: Annotated[Optional[int], typer.Option(min=1, help="Dataset size (default: files counted).")] = None,
    priority: Annotated[str, typer.Option(help="balanced | quality | speed | baseline")] = "balanced",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda: where extraction will run.")] = "auto",
    time_budget: Annotated[Optional[str], typer.Option(help="Time for the whole extraction: 90s, 30m, 2h.")] = None,
    deploy: Annotated[str, typer.Option(help="cloud | edge | mobile")] = "cloud",
    task: Annotated[str, typer.Option(help="classification | detection | segmentation")] = "classification",
    all_entries: Annotated[bool, typer.Option("--all", help="List every candidate, don't-use entries last.")] = False,
    top: Annotated[int, typer.Option(min=1, help="Candidates shown.")] = 5,
    measure: Annotated[bool, typer.Option(help="Time a few batches of each top candidate and the decoding of a sample of DATA_PATH on this machine (random weights); the rest are calibrated to that speed.")] = False,
    measure_top: Annotated[int, typer.Option(min=1, help="With --measure: how many top candidates to time.")] = 5,
    trial: Annotated[Optional[Path], typer.Option(help="Labels CSV (id,label): score the routes that run here with every fast head on a sample of your data.", exists=True, dir_okay=False)] = None,
    labels_from_folders: Annotated[bool, typer.Option("--labels-from-folders", help="Bake-off like --trial, each file's parent folder its class (no CSV).")] = False,
    trial_size: Annotated[Optional[int], typer.Option(min=6, help="Labelled items in the trial sample (stratified; default: what fits --time-budget, else 10 min).")] = None,
    trial_top: Annotated[int, typer.Option(min=1, help="Routes in the trial (the best ranked available ones).")] = 4,
    trial_layers: Annotated[str, typer.Option(help="Images: the --layers variant tried for each backbone ('' for none).")] = "-2,-1",
    trial_heads: Annotated[Optional[str], typer.Option(help="Heads to score, e.g. logreg,mlp (default: logreg, mlp, and lgbm when its estimated time fits).")] = None,
    trial_cache: Annotated[Optional[Path], typer.Option(help="Keep each route's extraction here and reuse it next time (default: a temp folder).", file_okay=False)] = None,
    trial_weights: Annotated[Optional[str], typer.Option(help="Bake-off weights: default offline auto; 'random' for smoke tests.")] = None,
    group_col: Annotated[Optional[str], typer.Option(help="Column of the --trial CSV whose rows stay in one fold (e.g. a speaker or a recording).")] = None,
    id_col: Annotated[str, typer.Option(help="Id column of the --trial CSV.")] = "id",
    target_col: Annotated[str, typer.Option(help="Label column of the --trial CSV.")] = "label",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Rank catalog backbones for your data, machine and time budget; print the extract command.

    Example:  olymp recommend data/train --time-budget 10m

    Without data:  olymp recommend --modality audio --n-items 5000 --priority speed
    """
    config = RecommendConfig(
        data_path=str(data_path) if data_path else None, modality=modality, n_items=n_items, priority=priority,
        device=device, time_budget=time_budget, deploy=deploy, task=task, show_all=all_entries, top=top,
        measure=measure, measure_top=measure_top, trial_labels=str(trial) if trial else None,
        trial_from_folders=labels_from_folders, trial_size=trial_size, trial_top=trial_top,
        trial_weights=trial_weights, trial_layers=trial_layers,
        trial_heads=[h.strip() for h in trial_heads.split(",") if h.strip()] if trial_heads else None,
        trial_cache=str(trial_cache) if trial_cache else None, group_col=group_col, id_col=id_col, target_col=target_col,
    )
    progress = None if as_json or quiet else (lambda message: err_console.print(f"[dim]{message}[/]", highlight=False))
    with exit_on_error():
        result = run_recommend(config, on_progress=progress)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
        return
    if quiet:  # only the extract command to run, for $(olymp recommend data --quiet)
        if result.command:
            typer.echo(result.command)
        return
    render(result)


def render(result: Recommendation) -> None:
    c, probe = result.constraints, result.probe
    if probe is not None:
        console.print(f"[bold]data[/]      {probe_line(probe)}", highlight=False, soft_wrap=True)
    budget = format_duration(c.time_budget_s) if c.time_budget_s else "none"
    console.print(
        f"[bold]for[/]       {c.n_items:,} {c.modality} items, priority {c.priority}, {c.device}, budget {budget}, "
        f"{c.deploy}, {c.task}", highlight=False,
    )
    table = Table(show_lines=False)
    for column in ("#", "backbone", "why", "time", "dim", "weights offline"):
        table.add_column(column, overflow="fold")
    for x in result.candidates:
        label = TIME_LABELS.get(x.time_source, x.time_source)
        time_text = "-" if x.estimated_seconds is None else f"~{format_duration(x.estimated_seconds)} ({label})"
        if x.fits_budget is False:
            time_text = f"[red]{time_text}[/]"
        name = f"[dim]{x.name}[/]" if x.avoid or not x.available else f"[bold]{x.name}[/]"
        weights = x.weights_offline if x.available else f"[yellow]{x.weights_offline}[/]"
        table.add_row(str(x.rank), name, "; ".join(x.reasons), time_text, str(x.entry.embedding_dim), weights)
    console.print(table)
    for source in dict.fromkeys(x.time_source for x in result.candidates if x.estimated_seconds is not None):
        if source in TIME_LEGEND:
            console.print(f"[dim]time: {TIME_LEGEND[source]}[/]", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}", highlight=False, soft_wrap=True)
    if result.trial is not None:
        render_trial(result.trial)
    if result.command:
        console.print("[bold]next[/]:", highlight=False)
        console.print(result.command, highlight=False, soft_wrap=True, markup=False)
        if result.train_command:
            console.print(result.train_command, highlight=False, soft_wrap=True, markup=False)
        if result.finetune_command:  # fine-tuning pays here: on the head's folds, then blended with it
            console.print(f"# fine-tuning end to end fits here (~{format_duration(result.finetune.seconds)} on "
                          f"{result.finetune.device}, estimated); then blend it with the head run:",
                          highlight=False, soft_wrap=True, markup=False)
            console.print(result.finetune_command, highlight=False, soft_wrap=True, markup=False)
            console.print(result.blend_command, highlight=False, soft_wrap=True, markup=False)
    if result.finetune_hint and not result.finetune_command:
        console.print(f"[yellow]note[/]: {result.finetune_hint}", highlight=False, soft_wrap=True)


def render_trial(trial) -> None:
    """The bake-off: every route x head, mean ± std over the same folds, the winner first."""
    grouped = f", folds grouped by {trial.grouped_by}" if trial.grouped_by else ""
    console.print(f"[bold]trial[/]     {trial.sample} of {trial.labelled} labelled rows ({trial.size_reason}), "
                  f"{trial.folds} folds{grouped}, {trial.metric}", highlight=False, soft_wrap=True)
    table = Table(show_lines=False)
    for column in ("route", "head", f"{trial.metric} (mean ± std)", "extract / item", "fit"):
        table.add_column(column, overflow="fold")
    order = sorted(trial.rows, key=lambda r: (r.mean is None, -(r.mean or 0.0) if trial.greater_is_better else (r.mean or 0.0)))
    for row in order:
        won = trial.winner is row
        if row.mean is None:
            table.add_row(f"[dim]{row.route}[/]", row.head, f"[dim]skipped: {row.skipped}[/]", "", "")
            continue
        per_item = "cached" if row.extract_cached else f"{1000 * row.extract_seconds_per_item:.0f} ms"
        score = f"{row.mean:.4f} ± {row.std:.4f}"
        table.add_row(f"[bold green]{row.route}[/]" if won else row.route, row.head,
                      f"[bold green]{score}[/] (winner)" if won else score, per_item, f"{row.fit_seconds:.1f} s")
    console.print(table)
    for note in trial.notes:
        console.print(f"[yellow]note[/]: {note}", highlight=False, soft_wrap=True)


def probe_line(probe) -> str:
    parts = [f"{probe.n_items:,} {probe.modality} files ({', '.join(f'{k} {v}' for k, v in probe.extensions.items())})"]
    if probe.image_size_median:
        w, h = probe.image_size_median
        parts.append(f"median {w}×{h} px")
    if probe.duration_median_s is not None:
        rates = ", ".join(f"{rate} Hz" for rate in probe.sample_rates)
        parts.append(f"median {probe.duration_median_s:g} s, max {probe.duration_max_s:g} s, {rates}")
    parts.append(f"{probe.unreadable} of {probe.sampled} sampled unreadable")
    return "; ".join(parts)
