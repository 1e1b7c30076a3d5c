"""Helpers shared by the subcommands: stderr console, error mapping, progress."""

from __future__ import annotations

import contextlib

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from slitcli.errors import SlitcliError

console = Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def user_errors():
    """Turn the project's errors into one line on stderr and exit code 1."""
    try:
        yield
    except SlitcliError as err:
        console.print(f"slitcli: error: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("slitcli: interrupted; no output written", markup=False)
        raise typer.Exit(130) from None


def progress_bar(quiet: bool) -> Progress:
    """A rich progress bar on stderr (disabled when `quiet`)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
