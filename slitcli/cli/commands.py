"""The Typer application: one subcommand per module of `slitcli.cli`."""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand

from slitcli import __version__
from slitcli.cli import augment as _augment
from slitcli.cli import calibrate as _calibrate
from slitcli.cli import cutout as _cutout
from slitcli.cli import evaluate as _evaluate
from slitcli.cli import predict as _predict
from slitcli.cli import simulate as _simulate
from slitcli.cli import train as _train

__all__ = ["app"]

class _Command(TyperCommand):
    """Help that shows an argument's placeholder (FILE...) without a Python type such as <list[Path]>."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type = lambda ctx: ""
        return params


app = typer.Typer(
    name="slitcli",
    help=(
        "Redshifts from 2D slitless spectroscopic images (CSST GV and GI bands).\n\n"
        "A survey pipeline in six steps: simulate cutouts (or bring your own), augment, "
        "train the Bayesian CNN, calibrate its uncertainties, predict redshifts, evaluate "
        "them against the truth. Run `slitcli COMMAND --help` for each.\n\n"
        "Data go to files, messages to stderr. Exit codes: 0 success, 1 bad input, "
        "configuration or file-system error (one line naming the file), 2 bad usage, "
        "130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command(name="simulate", cls=_Command, no_args_is_help=False)(_simulate.simulate)
app.command(name="augment", cls=_Command, no_args_is_help=True)(_augment.augment)
app.command(name="train", cls=_Command, no_args_is_help=True)(_train.train)
app.command(name="cutout", cls=_Command, no_args_is_help=True)(_cutout.cutout)
app.command(name="predict", cls=_Command, no_args_is_help=True)(_predict.predict)
app.command(name="calibrate", cls=_Command, no_args_is_help=True)(_calibrate.calibrate)
app.command(name="evaluate", cls=_Command, no_args_is_help=True)(_evaluate.evaluate)


def _version(value: bool):
    if value:
        typer.echo(f"slitcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """slitcli: redshifts from 2D slitless spectroscopic images."""
