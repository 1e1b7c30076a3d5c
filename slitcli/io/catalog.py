"""Catalogue files: ECSV or FITS tables with units and descriptions from one YAML table.

`write_catalog` picks the format from the extension (``.ecsv``, ``.fits``/``.fit``/
``.fits.gz``), fills every known column's unit and description from
``slitcli/data/columns.yaml``, writes under a temporary name and renames into place.
`read_catalog` reads either and checks required columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from slitcli.errors import InputError
from slitcli.io.columns import column_description, column_unit
from slitcli.io.files import check_output_path, temporary_path

__all__ = ["write_catalog", "read_catalog", "catalog_format"]

_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits"}


def catalog_format(path: str | Path) -> str:
    """Astropy table format for `path` by its extension."""
    name = Path(path).name.lower()
    for ext, fmt in _FORMATS.items():
        if name.endswith(ext):
            return fmt
    msg = f"{path}: unknown catalogue extension; use .ecsv or .fits"
    raise InputError(msg)


def write_catalog(table: Table, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write `table` atomically as ECSV or FITS, with units and descriptions."""
    fmt = catalog_format(path)
    path = check_output_path(path, overwrite)
    table = table.copy(copy_data=False)
    for name in table.colnames:
        try:
            unit, description = column_unit(name), column_description(name)
        except KeyError:
            continue
        table[name].unit = unit or None
        table[name].description = description
    tmp = temporary_path(path)
    try:
        table.write(tmp, format=fmt, overwrite=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_catalog(path: str | Path, required: tuple[str, ...] = (), *, hdu: str | int | None = None) -> Table:
    """Read an ECSV or FITS catalogue and check it has the `required` columns and rows."""
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: file not found"
        raise InputError(msg)
    fmt = catalog_format(path)
    kwargs = {"hdu": hdu} if (fmt == "fits" and hdu is not None) else {}
    try:
        table = Table.read(path, format=fmt, **kwargs)
    except Exception as err:  # astropy raises many types for corrupt files
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else err.__class__.__name__
        msg = f"{path}: cannot read as a {fmt} table ({first})"
        raise InputError(msg) from None
    missing = [c for c in required if c not in table.colnames]
    if missing:
        msg = f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}"
        raise InputError(msg)
    if len(table) == 0:
        msg = f"{path}: catalogue has no rows"
        raise InputError(msg)
    for c in required:
        if table[c].dtype.kind == "f" and not np.all(np.isfinite(table[c])):
            msg = f"{path}: column {c} has NaN or infinite values"
            raise InputError(msg)
    return table
