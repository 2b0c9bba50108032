"""The `olymp` command: registers one module per subcommand, and turns every failure into one line."""

import errno
import warnings
from typing import Annotated

import typer
import typer.core
from typer.core import TyperGroup

import cli.help_format  # noqa: F401  (flags without `<bool>` in --help)
from cli import blend, extract, finetune, inspect, predict, recommend, report, run, train_head, weights
from cli.console import debug_enabled, err_console, error_text, print_error

# The click typer runs on: its own vendored copy in recent typer, the `click` package before.
_click = getattr(typer.core, "_click", None) or typer.core.click
_click_errors = _click.exceptions
_EXITS = tuple({
    typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt,
    *(getattr(_click_errors, name) for name in ("Exit", "Abort") if hasattr(_click_errors, name)),
})


def _usage_line(error) -> str:
    """A click/typer usage error (unknown option, missing argument, bad value) as one line with the fix."""
    ctx = error.ctx
    where = f"; see: {ctx.command_path} --help" if ctx is not None else ""
    return f"{error.format_message().rstrip('.')}{where}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings from libraries as one yellow line on stderr (silenced by --quiet)."""
    text = " ".join(str(message).split())
    err_console.print(f"warning: {category.__name__}: {text}", style="yellow", highlight=False, soft_wrap=True, markup=False)


class OlympGroup(TyperGroup):
    """The top-level group: usage errors, OSErrors and unexpected exceptions become one red line and
    exit status 1 (OlympErrors already are, in cli.console.exit_on_error). OLYMP_DEBUG=1 lets them
    through with their traceback. Lives in the group, so `olymp ...` and CliRunner(app) both get it."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _one_line_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with _one_line_errors(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return super().invoke(ctx)


class _one_line_errors:
    """Context manager behind OlympGroup (a class, so `return` inside `with` works on every Python)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is None or isinstance(error, _EXITS):
            return False
        if type(error).__name__ == "NoArgsIsHelpError":  # click >= 8.2; its help was printed already
            raise typer.Exit(0) from None  # asking for help is no failure
        if isinstance(error, _click_errors.UsageError):
            print_error(_usage_line(error))
            raise typer.Exit(1) from None
        if isinstance(error, _click_errors.ClickException):
            print_error(error.format_message())
            raise typer.Exit(1) from None
        if not isinstance(error, Exception) or debug_enabled():
            return False
        if isinstance(error, BrokenPipeError) or getattr(error, "errno", None) == errno.EPIPE:
            return False  # `olymp ... | head`: typer exits quietly, as shell tools do
        print_error(error_text(error))
        raise typer.Exit(1) from None


app = typer.Typer(
    name="olymp",
    cls=OlympGroup,
    help="Embedding pipelines for contests: extract → train-head → predict, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from pipelines.core.versions import package_versions

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
app.command("finetune")(finetune.finetune)
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
