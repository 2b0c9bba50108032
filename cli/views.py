"""Views shared by several cli commands (rich renderables built from pipelines results)."""

from __future__ import annotations

from rich.table import Table

from cli.console import score_text


def scores_table(result) -> Table:
    from pipelines.train.metrics import GREATER_IS_BETTER

    table = Table(title=f"{result.head} · {result.task} · {len(result.fold_scores)} folds · {result.n_rows} rows")
    table.add_column("fold")
    table.add_column("rows", justify="right")
    iteration_key, iteration_name = (
        ("best_epoch", "epoch") if any("best_epoch" in fold for fold in result.fold_scores) else ("best_iteration", "trees")
    )
    has_iterations = any(iteration_key in fold for fold in result.fold_scores)
    if has_iterations:
        table.add_column(iteration_name, justify="right")
    for i, name in enumerate(result.metrics):
        arrow = "↑" if GREATER_IS_BETTER[name] else "↓"
        table.add_column(f"[bold]{name}[/] {arrow}" if i == 0 else f"{name} {arrow}", justify="right")
    for fold in result.fold_scores:
        cells = [str(fold["fold"]), str(fold["n_valid"])]
        if has_iterations:
            cells.append(str(fold.get(iteration_key, "")))
        table.add_row(*cells, *(score_text(fold[name]) for name in result.metrics))
    pad = [""] if has_iterations else []
    table.add_section()
    table.add_row(
        "mean ± std", str(result.n_rows), *pad,
        *(f"{score_text(result.mean[n])} ± {score_text(result.std[n])}" for n in result.metrics),
    )
    table.add_row("all oof", str(result.n_rows), *pad, *(score_text(result.oof[n]) for n in result.metrics))
    return table
