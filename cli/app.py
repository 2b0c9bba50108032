"""The `olymp` command: registers one module per subcommand, nothing else."""

from typing import Annotated

import typer

import cli.help_format  # noqa: F401  (flags without `<bool>` in --help)
from cli import blend, extract, inspect, predict, recommend, report, run, train_head, weights

app = typer.Typer(
    name="olymp",
    help="Embedding pipelines for contests: extract → train-head → predict, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from pipelines.versions import package_versions

        typer.echo(f"olymp {package_versions()['olymp']}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print olymp's version and exit.")
    ] = False,
) -> None:
    """Embedding pipelines for contests: extract → train-head → predict, offline."""


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
