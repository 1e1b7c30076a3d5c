"""Units and descriptions of catalogue columns (``slitcli/data/columns.yaml``) and comments of header keywords (``keywords.yaml``)."""

from __future__ import annotations

import functools
from importlib import resources

import yaml

__all__ = ["column_unit", "column_description", "keyword_comment"]


@functools.lru_cache(maxsize=1)
def _columns() -> dict:
    return yaml.safe_load((resources.files("slitcli") / "data" / "columns.yaml").read_text())


def column_unit(name: str) -> str:
    """Astropy unit string of column `name` ('' when dimensionless)."""
    return _columns()[name]["unit"]


def column_description(name: str) -> str:
    """One-line description of column `name`."""
    return _columns()[name]["description"]


@functools.lru_cache(maxsize=1)
def _keywords() -> dict:
    return yaml.safe_load((resources.files("slitcli") / "data" / "keywords.yaml").read_text())


def keyword_comment(name: str) -> str:
    """FITS comment of header keyword `name`; a generic one for a keyword the table does not know."""
    return _keywords().get(name.upper(), "slitcli run metadata")
