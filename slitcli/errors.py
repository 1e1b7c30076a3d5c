"""The project's exceptions.

Every error a user can cause derives from `SlitcliError`; the command line turns it
into a one-line message and exit code 1. Messages name the file, HDU, column or key
at fault and what was expected.
"""

__all__ = ["SlitcliError", "ConfigError", "InputError", "OutputExistsError"]


class SlitcliError(Exception):
    """Base class of every error caused by user input or configuration."""


class ConfigError(SlitcliError, ValueError):
    """A configuration file or value is malformed, unknown, missing or out of range."""


class InputError(SlitcliError, ValueError):
    """An input data file is missing, unreadable or does not have the expected layout."""


class OutputExistsError(SlitcliError, FileExistsError):
    """An output file exists and overwriting was not asked for."""
