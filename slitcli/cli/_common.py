"""Helpers shared by the subcommands: logging on stderr, error mapping, progress.

Messages go through the ``slitcli`` logger: rich's handler on a terminal, plain lines
otherwise (a batch log). Nothing is printed as rich markup or with emoji codes, so a
path such as ``a:smile:[b].fits`` prints as written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
import warnings

import typer

from slitcli.errors import SlitcliError

from slitcli.cli import INTERRUPTED

try:  # typer >= 0.26 bundles click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

Abort = typer.Abort

__all__ = [
    "Abort",
    "ClickException",
    "QUIET",
    "VERBOSE",
    "command",
    "console",
    "log",
    "progress_bar",
    "log_bad_pixels",
]

log = logging.getLogger("slitcli")

#: Set once an interrupt has been reported, so that `slitcli.cli.main` does not repeat it.
interrupt_reported = False

QUIET = typer.Option(False, "--quiet", "-q", help="Only errors and warnings on stderr: no progress, no summary.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Also debugging details and library warnings on stderr.")


_CONSOLE = []


def _console():
    """The one stderr console, made on first use (rich is imported only when something is printed)."""
    if not _CONSOLE:
        from rich.console import Console

        # stderr=True looks sys.stderr up at each write, so a test runner's capture works.
        _CONSOLE.append(Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False))
    return _CONSOLE[0]


class _LazyConsole:
    def __getattr__(self, name):
        return getattr(_console(), name)


console = _LazyConsole()


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"slitcli: {record.levelname.lower()}: {text}"
        if record.levelno < logging.INFO:
            return f"slitcli: debug: {text}"
        return text


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Send the ``slitcli`` logger to stderr: WARNING with `quiet`, DEBUG with `verbose`, else INFO."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    if _is_terminal():
        from rich.logging import RichHandler

        handler = RichHandler(console=_console(), show_time=False, show_path=False, show_level=False, markup=False, rich_tracebacks=False, highlighter=None)
        handler.setFormatter(_PlainFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PlainFormatter())
    log.addHandler(handler)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    log.debug("%s: %s (%s:%s)", category.__name__, message, os.path.basename(filename), lineno)


def _error_line(text: str) -> None:
    sys.stderr.write(f"slitcli: error: {text}\n")
    sys.stderr.flush()


def _os_error_text(err: OSError) -> str:
    """``<file>: <reason>``, one line (a library's message may have several)."""
    text = str(err).strip()
    reason = err.strerror or (text.splitlines()[0] if text else err.__class__.__name__)
    return f"{err.filename}: {reason}" if err.filename is not None else reason


@contextlib.contextmanager
def command(quiet: bool = False, verbose: bool = False):
    """Run a subcommand's body: set up logging, route library warnings, map errors to exit codes.

    The project's errors and the operating system's (disk full, no permission, ...)
    become one line ``slitcli: error: ...`` and exit code 1; an interrupt one line and
    exit code 130. Library warnings are debugging details: shown only with `verbose`.
    """
    global interrupt_reported
    setup_logging(quiet, verbose)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            from slitcli import __version__
            from slitcli.io.fitsmeta import file_date

            log.debug("slitcli %s, Python %s, %s", __version__, platform.python_version(), " ".join(sys.argv))
            file_date()  # a malformed SOURCE_DATE_EPOCH stops the run before any work
            yield
        except SlitcliError as err:
            _error_line(str(err))
            raise typer.Exit(1) from None
        except OSError as err:
            _error_line(_os_error_text(err))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            sys.stderr.write(INTERRUPTED)
            interrupt_reported = True
            raise typer.Exit(130) from None


def log_bad_pixels(n: int) -> None:
    """Report the bad pixels the readers flagged (`slitcli.io.samplefile.mask_bad_pixels`)."""
    if n:
        log.info("%d bad pixels (SCI NaN or infinite, or ERR <= 0, NaN or infinite): flagged DO_NOT_USE, SCI set to 0", n)


class _LineProgress:
    """Progress for a log file: a plain line each 10% or 30 s, at most one per second.

    Jobs that take under a second print nothing but their summary.
    """

    def __init__(self):
        self.tasks = {}

    def add_task(self, description: str, total=None, **_):
        now = time.monotonic()
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": 0, "start": now, "last": now, "decile": 0}
        return len(self.tasks) - 1

    def update(self, task_id, *, completed=None, total=None, description=None, advance=None, **_):
        t = self.tasks[task_id]
        if total is not None:
            t["total"] = total
        if description is not None:
            t["description"] = description
        if advance is not None:
            t["completed"] += advance
        if completed is not None:
            t["completed"] = completed
        now = time.monotonic()
        decile = int(10 * t["completed"] / t["total"]) if t["total"] else 0
        due = decile > t["decile"] or now - t["last"] >= 30.0
        if due and now - t["last"] >= 1.0:
            t["decile"], t["last"] = decile, now
            done = f"{t['completed']}/{t['total']} ({100 * t['completed'] / t['total']:.0f}%)" if t["total"] else f"{t['completed']}"
            log.info("%s: %s, %.0f s", t["description"], done, now - t["start"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _NoProgress(_LineProgress):
    def update(self, *args, **kwargs):
        pass


def progress_bar(quiet: bool):
    """A rich progress bar on a terminal, plain lines in a log, nothing when `quiet`."""
    if quiet:
        return _NoProgress()
    if not _is_terminal():
        return _LineProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_console(),
        transient=False,
    )
