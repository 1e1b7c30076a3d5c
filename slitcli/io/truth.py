"""True redshifts and their join to a prediction catalogue on SOURCE_ID.

The truth is a sample file's SOURCES HDU or any ECSV/FITS catalogue with SOURCE_ID and
Z_TRUE; calibration and evaluation both read it here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from slitcli.errors import InputError
from slitcli.io.catalog import catalog_format, read_catalog

__all__ = ["PRED_COLUMNS", "TRUTH_COLUMNS", "read_truth", "join_truth", "check_redshifts"]

#: Columns a prediction catalogue must have.
PRED_COLUMNS = ("SOURCE_ID", "Z", "ZERR")
#: Columns a truth catalogue must have.
TRUTH_COLUMNS = ("SOURCE_ID", "Z_TRUE")


def _has_sources_hdu(path: Path) -> bool:
    if not path.is_file() or catalog_format(path) != "fits":
        return False
    try:
        with fits.open(path) as hdul:
            return "SOURCES" in hdul
    except Exception:  # unreadable: read_catalog reports it
        return False


def read_truth(path: str | Path, snr_column: str = "SNR_GI") -> Table:
    """Read the true redshifts: a sample file's SOURCES HDU, or any ECSV/FITS catalogue.

    Parameters
    ----------
    path : path
        Sample file or catalogue (a FITS one is read from ``SOURCES`` if it has one,
        else as `slitcli.io.catalog.read_catalog` picks).
    snr_column : str
        The signal-to-noise column, checked like Z_TRUE when the file has it.

    Raises
    ------
    InputError
        Missing or unreadable file, no SOURCE_ID or Z_TRUE column, no rows, or
        masked, NaN or infinite SOURCE_ID, Z_TRUE or `snr_column` values (named with
        the file, HDU, column and number of rows).
    """
    path = Path(path)
    hdu = "SOURCES" if _has_sources_hdu(path) else None
    table = read_catalog(path, TRUTH_COLUMNS, hdu=hdu, finite=(snr_column,))
    check_redshifts(table, f"{path}: HDU SOURCES" if hdu else str(path))
    return table


def check_redshifts(table: Table, where: str, column: str = "Z_TRUE") -> None:
    """Refuse redshifts at or below -1 (1 + z must be positive), naming `where`, the column and the rows."""
    bad = np.asarray(table[column], dtype=np.float64) <= -1.0
    if bad.any():
        msg = f"{where}: column {column} has {int(bad.sum())} value(s) <= -1 (first {float(np.asarray(table[column])[bad][0]):g}); a redshift must be > -1"
        raise InputError(msg)


def _unique_ids(table: Table, what: str) -> np.ndarray:
    ids = np.asarray(table["SOURCE_ID"])
    values, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        msg = f"the {what} repeat SOURCE_ID {values[counts > 1][0].item()}; each source must appear once"
        raise ValueError(msg)
    return ids


def join_truth(pred: Table, truth: Table, snr_column: str = "SNR_GI") -> Table:
    """Inner join of predictions and truth on SOURCE_ID, in the predictions' row order.

    Parameters
    ----------
    pred : Table
        SOURCE_ID, Z and ZERR; optionally ZWARN and `snr_column`; other columns are kept.
    truth : Table
        SOURCE_ID and Z_TRUE; optionally CLASS and `snr_column`.
    snr_column : str
        The signal-to-noise column: taken from `truth` if there, else from `pred`.

    Returns
    -------
    Table
        The predictions' columns plus Z_TRUE, CLASS (if in the truth) and `snr_column`
        (if in either). ``meta`` is the predictions' plus N_PRED, N_TRUTH and N_MATCHED.

    Raises
    ------
    ValueError
        Missing columns, repeated SOURCE_IDs, or no SOURCE_ID in common.
    """
    for table, what, required in ((pred, "predictions", PRED_COLUMNS), (truth, "truth", TRUTH_COLUMNS)):
        missing = [c for c in required if c not in table.colnames]
        if missing:
            msg = f"the {what} lack column(s) {', '.join(missing)}"
            raise ValueError(msg)
    pred_ids, truth_ids = _unique_ids(pred, "predictions"), _unique_ids(truth, "truth")
    if (pred_ids.dtype.kind in "US") != (truth_ids.dtype.kind in "US"):
        msg = f"SOURCE_ID is {pred_ids.dtype} in the predictions but {truth_ids.dtype} in the truth"
        raise ValueError(msg)
    _, ip, it = np.intersect1d(pred_ids, truth_ids, assume_unique=True, return_indices=True)
    if ip.size == 0:
        msg = f"no SOURCE_ID in common between the predictions ({len(pred)} rows) and the truth ({len(truth)} rows)"
        raise ValueError(msg)
    order = np.argsort(ip)
    ip, it = ip[order], it[order]
    joined = pred[ip]
    taken = ["Z_TRUE"] + [c for c in ("CLASS", snr_column) if c in truth.colnames]
    for name in taken:
        joined[name] = truth[name][it]
    joined.meta.update(N_PRED=len(pred), N_TRUTH=len(truth), N_MATCHED=int(ip.size))
    return joined
