"""Output files a pipeline can trust: refuse to clobber, write under a temporary name, publish atomically."""

from __future__ import annotations

import os
from pathlib import Path

from slitcli.errors import OutputExistsError

__all__ = ["check_output_path", "temporary_path"]


def check_output_path(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output unless `overwrite`; check the directory exists."""
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{path}: output exists; use --overwrite to replace it"
        raise OutputExistsError(msg)
    if not path.parent.is_dir():
        msg = f"{path}: output directory {path.parent} does not exist"
        raise OutputExistsError(msg)
    return path


def temporary_path(path: Path) -> Path:
    """A temporary name beside `path`, renamed into place when the file is complete."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
