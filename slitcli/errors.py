"""The project's exceptions.

Every error a user can cause derives from `SlitcliError`; the command line turns it
into a one-line message and exit code 1. Messages name the file, HDU, column or key
at fault and what was expected.
"""

__all__ = ["SlitcliError", "ConfigError", "InputError", "OutputExistsError", "OutputError"]


class SlitcliError(Exception):
    """Base class of every error caused by user input or configuration."""


class ConfigError(SlitcliError, ValueError):
    """A configuration file or value is malformed, unknown, missing or out of range."""


class InputError(SlitcliError, ValueError):
    """An input data file is missing, unreadable or does not have the expected layout."""


class OutputExistsError(SlitcliError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class OutputError(SlitcliError):
    """An output cannot be written where asked, or writing it failed (disk full, read-only, ...).

    Parameters
    ----------
    path : path
        The output as the user named it (never a temporary file).
    reason : str
        One line: the operating system's reason (``No space left on device``) or the refusal.
    """

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):
        return (type(self), (self.path, self.reason))
