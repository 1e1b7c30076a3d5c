"""Catalogue files: ECSV or FITS tables with units and descriptions from one YAML table.

`write_catalog` picks the format from the extension (``.ecsv``, ``.fits``/``.fit``/
``.fits.gz``), fills every known column's unit and description from
``slitcli/data/columns.yaml``, adds ``SWVERS`` and ``DATE`` (``SOURCE_DATE_EPOCH`` when
set) to the metadata, writes under a temporary name and renames into place. A FITS
catalogue is an empty PRIMARY HDU and one binary table (``EXTNAME = 'REDSHIFTS'`` by
default, as DESI's redshift catalogues) with ``TUNITn``, ``TCOMMn`` (each column's
description, shown by TOPCAT/STILTS), a comment on every card (``keywords.yaml``) and
``CHECKSUM``/``DATASUM`` in both HDUs. `read_catalog` reads either and checks required columns.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from slitcli import __version__
from slitcli.errors import InputError
from slitcli.io.columns import column_description, column_unit, keyword_comment
from slitcli.io.files import atomic_output, check_output_path
from slitcli.io.fitsmeta import CHECKSUM_COMMENT, DATASUM_COMMENT, file_date, needs_longstrn, short_description, write_checksums

__all__ = ["write_catalog", "read_catalog", "catalog_format", "check_finite", "table_hdu"]

_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits"}


def catalog_format(path: str | Path) -> str:
    """Astropy table format for `path` by its extension."""
    name = Path(path).name.lower()
    for ext, fmt in _FORMATS.items():
        if name.endswith(ext):
            return fmt
    msg = f"{path}: unknown catalogue extension; use .ecsv or .fits"
    raise InputError(msg)


def write_catalog(table: Table, path: str | Path, *, overwrite: bool = False, extname: str = "REDSHIFTS", pdf_grid=None) -> Path:
    """Write `table` atomically as ECSV or FITS, with units, descriptions, ``SWVERS`` and ``DATE``.

    Parameters
    ----------
    table : Table
        The catalogue; columns named in ``columns.yaml`` get its unit and description.
    path : path
        ``.ecsv`` or ``.fits`` (``.fit``, ``.fits.gz``).
    overwrite : bool
        Replace an existing `path`.
    extname : str
        ``EXTNAME`` of the FITS table HDU.
    pdf_grid : array, optional
        With a 2D column ``ZPDF`` in `table` (densities on this grid of redshifts): FITS
        only, written as the ``ZGRID`` and ``ZPDF`` HDUs (`slitcli.io.zpdf`), not as a column.
    """
    fmt = catalog_format(path)
    path = check_output_path(path, overwrite)
    table = table.copy(copy_data=False)
    pdf = None
    if "ZPDF" in table.colnames:
        if fmt != "fits" or pdf_grid is None:
            msg = f"{path}: redshift PDFs (ZPDF) go to a FITS catalogue with their grid; ECSV keeps the point columns"
            raise ValueError(msg)
        pdf = np.asarray(table["ZPDF"])
        table.remove_column("ZPDF")
    for name in table.colnames:
        try:
            unit, description = column_unit(name), column_description(name)
        except KeyError:
            continue
        table[name].unit = unit or None
        table[name].description = description
    table.meta.update({"ORIGIN": "slitcli", "SWVERS": __version__, "DATE": file_date()})
    with atomic_output(path, overwrite) as tmp:
        if fmt == "fits":
            with warnings.catch_warnings():
                # A long meta value leaves no room for all of its comment: astropy cuts it, as it should.
                warnings.filterwarnings("ignore", "Card is too long, comment will be truncated")
                hdul = _fits_catalog(table, extname)
                if pdf is not None:
                    from slitcli.io.zpdf import zpdf_hdus

                    for hdu in zpdf_hdus(pdf_grid, pdf):
                        hdu.header["CHECKSUM"] = ("0" * 16, CHECKSUM_COMMENT)
                        hdu.header["DATASUM"] = ("0", DATASUM_COMMENT)
                        hdul.append(hdu)
                hdul.writeto(tmp, overwrite=True)
            write_checksums(tmp)
        else:
            table.write(tmp, format=fmt, overwrite=True)
    return path


_COLUMN_CARDS = {
    "TFORM": "Data format of column {}",
    "TUNIT": "Unit of column {}",
    "TDIM": "Array shape of column {}",
    "TNULL": "Value of an undefined element of column {}",
    "TDISP": "Display format of column {}",
    "TSCAL": "Scale of column {}",
    "TZERO": "Zero point of column {}",
}


def _card_value(value):
    """A meta value as a FITS card value (lists joined by commas, anything else not scalar as text)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _card(key: str, value, comment: str):
    """An astropy Card with its whole comment: a string that leaves no room for it continues on a CONTINUE card."""
    from astropy.io import fits

    if len(key) > 8:
        return fits.Card(f"HIERARCH {key}", value, comment)
    text = value.replace("'", "''") if isinstance(value, str) else None
    if text is None or len(f"{key:<8}= '{text:<8}' / {comment}") <= 80 or len(comment) > 65:
        return fits.Card(key, value, comment)
    chunks, start = [], 0
    while start < len(text):
        stop = min(start + 67, len(text))
        if text[start:stop].count("'") % 2:  # never split a doubled quote
            stop -= 1
        chunks.append(text[start:stop])
        start = stop
    lines = [f"{key:<8}= '{chunks[0]}&'", *(f"CONTINUE  '{c}&'" for c in chunks[1:]), f"CONTINUE  '' / {comment}"]
    return fits.Card.fromstring("".join(line.ljust(80) for line in lines))


def _fits_catalog(table: Table, extname: str):
    """PRIMARY + one binary table HDU of `table`, every card commented, checksum cards to fill.

    The table HDU is astropy's own (so that `Table.read` restores units and descriptions
    from its serialized-column COMMENT cards), with the metadata added here as cards.
    """
    from astropy.io import fits

    bare = Table(table, copy=False)
    bare.meta = {}
    buffer = io.BytesIO()
    bare.write(buffer, format="fits")
    hdu = fits.HDUList.fromstring(buffer.getvalue())[1]
    header = hdu.header
    for i, name in enumerate(table.colnames, start=1):
        description = table[name].description or ""
        header.comments[f"TTYPE{i}"] = short_description(description) if description else f"Column {i}"
        for prefix, comment in _COLUMN_CARDS.items():
            if f"{prefix}{i}" in header:
                header.comments[f"{prefix}{i}"] = comment.format(name)
    header["EXTNAME"] = (extname, keyword_comment("EXTNAME"))
    cards = [(f"TCOMM{i}", table[name].description, f"Description of column {name}") for i, name in enumerate(table.colnames, start=1) if table[name].description]
    cards += [(key.upper(), _card_value(value), keyword_comment(key)) for key, value in table.meta.items()]
    if needs_longstrn([(v, c) for _, v, c in cards]):
        header["LONGSTRN"] = ("OGIP 1.0", "The OGIP long string convention may be used")
    for card in cards:
        header.append(_card(*card))
    primary = fits.PrimaryHDU()
    primary.header.comments["EXTEND"] = "FITS dataset may contain extensions"
    for key in ("ORIGIN", "SWVERS", "DATE"):
        primary.header[key] = (table.meta[key], keyword_comment(key))
    for h in (primary.header, header):
        h["CHECKSUM"] = ("0" * 16, CHECKSUM_COMMENT)
        h["DATASUM"] = ("0", DATASUM_COMMENT)
    return fits.HDUList([primary, hdu])



#: Cards that describe the FITS file, not the catalogue: not carried into a table's meta.
_FILE_CARDS = ("EXTNAME", "LONGSTRN", "CHECKSUM", "DATASUM")


def _fold_fits_cards(table: Table) -> None:
    """Turn ``TCOMMn`` cards into column descriptions and drop the file's own cards from the meta."""
    for i, name in enumerate(table.colnames, start=1):
        description = table.meta.pop(f"TCOMM{i}", None)
        if description and not table[name].description:
            table[name].description = description
    for key in _FILE_CARDS:
        table.meta.pop(key, None)


def read_catalog(path: str | Path, required: tuple[str, ...] = (), *, hdu: str | int | None = None, finite: tuple[str, ...] = ()) -> Table:
    """Read an ECSV or FITS catalogue and check it has the `required` columns and rows.

    A FITS catalogue is read from HDU `hdu`, else from ``REDSHIFTS``, else from the
    first table HDU with the `required` columns, else from the first table HDU; errors
    name it. Masked, NaN or infinite values in `required` columns, and in those of the
    optional `finite` columns the table has, are refused (`check_finite`).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: file not found"
        raise InputError(msg)
    fmt = catalog_format(path)
    where = str(path)
    try:
        if fmt == "fits":
            # Always name the HDU: astropy warns when it has to pick among several tables.
            hdu, label = table_hdu(path, required) if hdu is None else (hdu, str(hdu))
            where = f"{path}: HDU {label}"
            table = Table.read(path, format=fmt, hdu=hdu)
        else:
            table = Table.read(path, format=fmt)
    except InputError:
        raise
    except Exception as err:  # astropy raises many types for corrupt files
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else err.__class__.__name__
        msg = f"{where}: cannot read as a {fmt} table ({first})"
        raise InputError(msg) from None
    if fmt == "fits":
        _fold_fits_cards(table)
    missing = [c for c in required if c not in table.colnames]
    if missing:
        msg = f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}"
        raise InputError(msg)
    if len(table) == 0:
        msg = f"{where}: catalogue has no rows"
        raise InputError(msg)
    check_finite(table, where, (*required, *finite))
    return table


def table_hdu(path: Path, required: tuple[str, ...]) -> tuple[int, str]:
    """Index and label of the table HDU to read: ``REDSHIFTS`` if there is one, else the
    first table HDU with the `required` columns, else the first table HDU."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            tables = [(i, h.name or str(i), h.columns.names) for i, h in enumerate(hdul) if isinstance(h, (fits.BinTableHDU, fits.TableHDU))]
    except Exception as err:  # astropy raises many types for corrupt files
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else err.__class__.__name__
        msg = f"{path}: cannot read as a fits table ({first})"
        raise InputError(msg) from None
    if not tables:
        msg = f"{path}: no table HDU; expected a binary table with columns {', '.join(required) or 'of a catalogue'}"
        raise InputError(msg)
    for i, label, names in tables:
        if label == "REDSHIFTS":
            return i, label
    for i, label, names in tables:
        if all(c in names for c in required):
            return i, label
    return tables[0][:2]


def check_finite(table: Table, where: str, columns) -> None:
    """Refuse masked, NaN or infinite values in those of `columns` that `table` has.

    Astropy masks NaN when it reads a FITS table and the empty fields of an ECSV file,
    so both count. Raises `InputError` naming `where` (file and HDU), the column, how
    many rows and the first SOURCE_IDs (or row indices, 0-based) at fault.
    """
    for name in columns:
        if name not in table.colnames:
            continue
        column = table[name]
        bad = np.ma.getmaskarray(column).copy()
        if column.dtype.kind in "fc":
            bad |= ~np.isfinite(np.asarray(column))
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            rows = np.flatnonzero(bad)[:3]
            if "SOURCE_ID" in table.colnames and name != "SOURCE_ID" and not np.ma.getmaskarray(table["SOURCE_ID"])[rows].any():
                first = "SOURCE_ID " + ", ".join(str(v) for v in np.asarray(table["SOURCE_ID"])[rows])
            else:
                first = "row index " + ", ".join(str(r) for r in rows)
            more = ", ..." if n_bad > len(rows) else ""
            msg = f"{where}: column {name} has NaN, infinite or masked values in {n_bad} of {len(table)} rows ({first}{more}); remove or fill those rows"
            raise InputError(msg)
