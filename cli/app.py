"""The `olymp` command: registers one module per subcommand, nothing else."""

import typer

from cli import blend, extract, inspect, predict, recommend, report, run, train_head, weights

app = typer.Typer(
    name="olymp",
    help="Embedding pipelines for contests: extract → train-head → predict, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("extract")(extract.extract)
app.command("train-head")(train_head.train_head)
app.command("predict")(predict.predict)
app.command("blend")(blend.blend)
app.add_typer(weights.app, name="weights")
app.command("recommend")(recommend.recommend)
app.command("run")(run.run)
app.command("report")(report.report)
app.command("inspect")(inspect.inspect)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
