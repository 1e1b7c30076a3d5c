"""Predicted redshifts against the truth: join on SOURCE_ID and compute metrics per sample.

The samples are all sources, those above each SNR cut (``SNR_GI>=1``, ...) and, when the
truth has a CLASS column, each class over all SNR. Sources with ZWARN != 0 are kept in
every sample; each row counts them in ``n_zwarn``.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from slitcli.errors import InputError
from slitcli.evaluation.metrics import METRIC_KEYS, empty_metrics, ks_uniform, pdf_crps, pdf_pit, point_metrics
from slitcli.io.truth import PRED_COLUMNS, TRUTH_COLUMNS, join_truth, read_truth

__all__ = ["PRED_COLUMNS", "TRUTH_COLUMNS", "PDF_METRIC_KEYS", "read_truth", "read_predictions", "join_truth", "sample_masks", "metrics_table", "evaluate"]

def _class_labels(column) -> np.ndarray:
    values = np.asarray(column)
    if values.dtype.kind == "S":
        values = np.char.decode(values, "ascii", errors="replace")
    return np.char.strip(values.astype(str))


def _snr_label(snr_column: str, cut: float) -> str:
    return f"{snr_column}>={cut:g}"


def sample_masks(joined: Table, snr_cuts=(1, 3, 5, 10), snr_column: str = "SNR_GI") -> dict[str, np.ndarray]:
    """Boolean row masks of the evaluated samples, keyed by sample name.

    ``"all"``; ``"<snr_column>>=<cut>"`` per cut when `joined` has `snr_column`;
    ``"CLASS=<name>"`` per non-blank class (sorted) when it has CLASS.
    """
    masks = {"all": np.ones(len(joined), dtype=bool)}
    if snr_column in joined.colnames:
        snr = np.asarray(joined[snr_column], dtype=np.float64)
        for cut in snr_cuts:
            masks[_snr_label(snr_column, cut)] = snr >= cut
    if "CLASS" in joined.colnames:
        labels = _class_labels(joined["CLASS"])
        for name in sorted(set(labels) - {""}):
            masks[f"CLASS={name}"] = labels == name
    return masks


def _check_finite(joined: Table) -> None:
    for name in ("Z", "ZERR", "Z_TRUE"):
        values = np.asarray(joined[name], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            msg = f"column {name} has NaN or infinite values (SOURCE_ID {joined['SOURCE_ID'][bad[0]]})"
            raise ValueError(msg)
    zerr = np.asarray(joined["ZERR"], dtype=np.float64)
    if np.any(zerr < 0):
        msg = f"column ZERR has negative values (SOURCE_ID {joined['SOURCE_ID'][np.argmin(zerr)]})"
        raise ValueError(msg)


def predictive_dof(meta) -> float:
    """Degrees of freedom of the catalogue's predictive distribution: its ZDOF meta if > 0, else inf (Gaussian)."""
    dof = float(meta.get("ZDOF", 0.0) or 0.0)
    return dof if dof > 0 else np.inf


#: Coverage keys and the catalogue's quantile columns that bound their intervals.
INTERVALS = {"coverage_68": ("Z160", "Z840"), "coverage_95": ("Z025", "Z975")}

#: Metrics of the gridded PDFs, added to `metrics_table` when the predictions have them.
PDF_METRIC_KEYS = ("crps_mean", "pit_ks_pdf")


def metrics_table(joined: Table, snr_cuts=(1, 3, 5, 10), snr_column: str = "SNR_GI", pdf_grid=None) -> Table:
    """One row of `point_metrics` per sample of `sample_masks`, for a `join_truth` table.

    Columns: ``sample`` (str), every key of `slitcli.evaluation.metrics.METRIC_KEYS`, and ``n_zwarn``
    (sources with ZWARN != 0, 0 without a ZWARN column). A sample with no source has
    n = 0 and NaN metrics. Coverage is the fraction of truths inside the published
    intervals, Z160-Z840 and Z025-Z975, where the catalogue has those columns (for the
    Gaussian or t of Z, ZERR the same as from them); calibration error and PIT use the
    catalogue's predictive distribution (`predictive_dof`). With `pdf_grid` and a 2D ``ZPDF``
    column (`read_predictions`), also `PDF_METRIC_KEYS`: the mean CRPS [z] and the PIT's
    KS distance, both from the gridded PDFs.
    """
    _check_finite(joined)
    z_pred, zerr, z_true = (np.asarray(joined[c], dtype=np.float64) for c in ("Z", "ZERR", "Z_TRUE"))
    warned = np.asarray(joined["ZWARN"]) != 0 if "ZWARN" in joined.colnames else np.zeros(len(joined), dtype=bool)
    with_pdf = pdf_grid is not None and "ZPDF" in joined.colnames
    if with_pdf:
        pdf = np.asarray(joined["ZPDF"], np.float64)
        crps, pits = pdf_crps(pdf_grid, pdf, z_true), pdf_pit(pdf_grid, pdf, z_true)
    rows = []
    quantiles = all(c in joined.colnames for bounds in INTERVALS.values() for c in bounds)
    for name, mask in sample_masks(joined, snr_cuts, snr_column).items():
        values = point_metrics(z_pred[mask], zerr[mask], z_true[mask], predictive_dof(joined.meta)) if mask.any() else empty_metrics()
        if quantiles and mask.any():
            # The published intervals themselves: for a PDF that is not the Gaussian (or t) of Z, ZERR
            # (a p(z) head's, the template route's), the fraction between its quantiles.
            for key, (lo, hi) in INTERVALS.items():
                values[key] = float(np.mean((z_true[mask] >= np.asarray(joined[lo])[mask]) & (z_true[mask] <= np.asarray(joined[hi])[mask])))
        if with_pdf:
            values |= {"crps_mean": float(crps[mask].mean()), "pit_ks_pdf": ks_uniform(pits[mask])} if mask.any() else dict.fromkeys(PDF_METRIC_KEYS, float("nan"))
        rows.append({"sample": name, **values, "n_zwarn": int(np.count_nonzero(warned & mask))})
    columns = ["sample", *METRIC_KEYS, *(PDF_METRIC_KEYS if with_pdf else ()), "n_zwarn"]
    table = Table(rows=[[row[c] for c in columns] for row in rows], names=columns)
    table.meta.update(joined.meta)
    table.meta["SNRCOL"] = snr_column
    return table


def read_predictions(path):
    """The prediction catalogue (`read_catalog`) and, for a FITS one with ``ZPDF``, its PDF grid (else None).

    The PDFs ride along as a 2D column ``ZPDF``, so that joins keep them with their rows.
    """
    from slitcli.io.catalog import read_catalog
    from slitcli.io.zpdf import read_zpdf

    pred = read_catalog(path, PRED_COLUMNS)
    got = read_zpdf(path) if str(path).lower().endswith((".fits", ".fit", ".fits.gz")) else None
    if got is None:
        return pred, None
    grid, pdf = got
    if len(pdf) != len(pred):
        msg = f"{path}: HDU ZPDF has {len(pdf)} rows, REDSHIFTS {len(pred)}"
        raise InputError(msg)
    pred["ZPDF"] = pdf
    return pred, grid


def evaluate(pred: Table, truth: Table, snr_cuts=(1, 3, 5, 10), snr_column: str = "SNR_GI") -> Table:
    """Metrics of the predictions `pred` against `truth` per sample (see `metrics_table`).

    Joins on SOURCE_ID (`join_truth`) first. Raises ValueError on missing columns,
    repeated or disjoint SOURCE_IDs, non-finite Z, ZERR or Z_TRUE, or negative ZERR.
    """
    return metrics_table(join_truth(pred, truth, snr_column), snr_cuts, snr_column)
