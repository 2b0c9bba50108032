"""`olymp report`: a train-head run's (or a blend's) score tables again, how they were obtained, and where its pictures are."""

from __future__ import annotations

from rich.table import Table

from cli.console import JsonOption, QuietOption, RunDirArgument, console, exit_on_error, quiet_output, summary_done


def report(
    run_dir: RunDirArgument,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Print a run's fold scores and per-class precision/recall/F1, and the paths of its plots.

    Example:  olymp report runs/lgbm
    """
    from cli.views import scores_table
    from pipelines.train.report import load_report

    with exit_on_error(), quiet_output(quiet):
        loaded = load_report(run_dir)
    if summary_done(loaded.summary(), json_out, quiet):
        return
    console.print(scores_table(loaded))
    if loaded.provenance:  # how the numbers above were obtained, in one line
        from pipelines.train.metrics import provenance_line

        console.print(f"how: {provenance_line(loaded.provenance)}", highlight=False, soft_wrap=True)
    if loaded.per_class is not None:
        table = Table(title="per class (out-of-fold)", title_justify="left")
        for column in loaded.per_class.columns:
            table.add_column(str(column), justify="left" if column == "class" else "right")
        for row in loaded.per_class.to_dict(orient="records"):  # multilabel adds average_precision
            table.add_row(*(_cell(column, row[column]) for column in loaded.per_class.columns))
        console.print(table)
    for kind, path in loaded.pictures.items():
        console.print(f"[bold]{kind:<13}[/] {path}", highlight=False, soft_wrap=True)


def _cell(column: str, value) -> str:
    if column in ("class", "support"):
        return str(value)
    return "-" if value != value else f"{value:.4f}"  # NaN: a label with no positive row
