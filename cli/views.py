"""Views shared by several cli commands (rich renderables built from pipelines results)."""

from __future__ import annotations

from rich.table import Table

from cli.console import score_text


def scores_table(result) -> Table:
    from pipelines.data.metrics import GREATER_IS_BETTER

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


def tuning_table(result) -> Table | None:
    """Per fold: the parameters tuning chose, how the search's best fared against the defaults,
    its inner-validation score next to the defaults', how many candidates were scored (of how
    many, under --time-budget) and the seconds it took; None when the run was not tuned."""
    from pipelines.heads.tuning import describe_params

    records = [(fold, record) for fold, record in enumerate(getattr(result, "tuning", None) or []) if record]
    if not records:
        return None
    metric = records[0][1].get("metric", result.metric)
    table = Table(title=f"tuning (inner split of each fold's training part, {metric})", title_justify="left")
    for name, justify in (("fold", "left"), ("chosen", "left"), ("check", "left"), (f"inner {metric}", "right"),
                          ("defaults", "right"), ("tried", "right"), ("s", "right")):
        table.add_column(name, justify=justify)
    for fold, record in records:
        chosen = record.get("skipped") or describe_params(record.get("params") or {})
        table.add_row(
            str(fold), chosen, check_text(record), score_text(record.get("inner_score")),
            score_text(record.get("default_inner_score")), tried_text(record), f"{record.get('seconds', 0):.1f}",
        )
    return table


def check_text(record: dict) -> str:
    """How the search's best fared against the defaults: "" (it was the defaults), "confirmed",
    or why the defaults were kept: the best did not beat them on 84% of the bootstrap resamples
    ("no clear win"), or did not again on a second inner split ("lost on 2nd split")."""
    proposed, second = record.get("proposed"), record.get("confirmation") or {}
    if not proposed:
        return ""
    if proposed == (record.get("params") or {}):
        return "confirmed" if second else ""
    return "lost on 2nd split" if second else "no clear win"


def tried_text(record: dict) -> str:
    tried = str(record.get("tried", ""))
    if record.get("budget_s") is not None and "of" in record:
        tried += f" of {record['of']}"
    return tried


def head_choice_table(result) -> Table | None:
    """--head auto: every candidate head's OOF score and seconds, the winner marked."""
    choice = getattr(result, "head_choice", None)
    if not choice:
        return None
    metric = choice["metric"]
    table = Table(title=f"--head auto: candidates on the same folds (oof {metric})", title_justify="left")
    for name, justify in (("head", "left"), (f"oof {metric}", "right"), ("s", "right"), ("", "left")):
        table.add_column(name, justify=justify)
    for candidate in choice["candidates"]:
        won = "winner" if candidate["head"] == choice["winner"] else ""
        table.add_row(candidate["head"], score_text(candidate["oof"][metric]), f"{candidate['seconds']:.1f}", won)
    for head, why in (choice.get("left_out") or {}).items():
        table.add_row(head, "-", "-", f"left out: {why}")
    return table
