"""The `slitcli` command line: a thin layer that parses, loads config and calls the library.

Errors a user can cause (`slitcli.errors.SlitcliError`) become one line on stderr
and exit code 1; usage errors exit 2; an interrupt exits 130.
"""

from __future__ import annotations

import sys

import typer

from slitcli import __version__
from slitcli.cli import augment as _augment
from slitcli.cli import calibrate as _calibrate
from slitcli.cli import evaluate as _evaluate
from slitcli.cli import predict as _predict
from slitcli.cli import simulate as _simulate
from slitcli.cli import train as _train

app = typer.Typer(
    name="slitcli",
    help=(
        "Redshifts from 2D slitless spectroscopic images (CSST GV and GI bands).\n\n"
        "Data go to files, messages to stderr. Exit codes: 0 success, 1 bad input or "
        "configuration, 2 bad usage, 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command(name="simulate", no_args_is_help=False)(_simulate.simulate)
app.command(name="augment", no_args_is_help=True)(_augment.augment)
app.command(name="train", no_args_is_help=True)(_train.train)
app.command(name="predict", no_args_is_help=True)(_predict.predict)
app.command(name="calibrate", no_args_is_help=True)(_calibrate.calibrate)
app.command(name="evaluate", no_args_is_help=True)(_evaluate.evaluate)


def _version(value: bool):
    if value:
        typer.echo(f"slitcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """slitcli: redshifts from 2D slitless spectroscopic images."""


def main() -> None:
    """Console entry point."""
    sys.exit(app(standalone_mode=True))
