"""The `slitcli` command line: a thin layer that parses, loads config and calls the library.

Errors a user can cause (`slitcli.errors.SlitcliError`, and the operating system's
errors on the files named) become one line on stderr and exit code 1; usage errors exit
2; an interrupt, at any moment, one line and exit 130. The command modules import the
library (torch, astropy, numba) only inside the commands, so ``--help`` is quick.
"""

from __future__ import annotations

import sys

__all__ = ["app", "main", "INTERRUPTED"]

#: The line printed on Ctrl-C (train keeps its last checkpoint for --resume; see docs/formats.md).
INTERRUPTED = "slitcli: interrupted; no partial output left\n"


def __getattr__(name: str):
    # `from slitcli.cli import app` without importing typer when only `main` is needed.
    if name == "app":
        from slitcli.cli.commands import app

        return app
    raise AttributeError(name)


def main() -> None:
    """Console entry point: run the app, mapping interrupts and usage errors to exit codes."""
    try:
        from slitcli.cli import _common
        from slitcli.cli.commands import app
        from slitcli.cli._common import Abort, ClickException

        try:
            code = app(standalone_mode=False)
        except ClickException as err:  # usage errors: message and usage, exit 2
            err.show()
            code = err.exit_code
        except Abort:  # end of input at a prompt; slitcli never prompts
            sys.stderr.write("slitcli: error: aborted\n")
            code = 1
        if code == 130 and not _common.interrupt_reported:
            sys.stderr.write(INTERRUPTED)
    except KeyboardInterrupt:  # while the modules load
        sys.stderr.write(INTERRUPTED)
        code = 130
    sys.exit(code or 0)
