"""The shared vocabulary of a redshift catalogue: ZWARN bits, quantiles, source identity.

Both routes (the CNN in `slitcli.nn`, the template fit in `slitcli.classic`) and the
evaluation write or read these. The predictive distribution of a source is Gaussian or,
where calibration chose heavier tails, a Student t of `dof` degrees of freedom, in
t = ln(1 + z); ZERR / (1 + Z) is its 68.27% half-width in t (`half_width`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

__all__ = ["ZWARN_BITS", "QUANTILES", "standard_quantile", "half_width", "source_identity", "data_zwarn"]

#: ZWARN bits: redrock's where the meaning is the same, slitcli's own in 16-23.
ZWARN_BITS = {"Z_FITLIMIT": 32, "NODATA": 512, "POORDATA": 2048, "LARGE_EPISTEMIC": 1 << 16}
QUANTILES = {"Z025": 0.025, "Z160": 0.16, "Z500": 0.5, "Z840": 0.84, "Z975": 0.975}



def standard_quantile(q, dof: float = np.inf) -> np.ndarray:
    """Quantile `q` of the predictive distribution of zero mean and unit zerr: Gaussian, or a Student t (see `half_width`)."""
    q = np.asarray(q, dtype=np.float64)
    if not np.isfinite(dof):
        return norm.ppf(q)
    if dof <= 0:
        msg = f"the Student t needs dof > 0, got {dof}"
        raise ValueError(msg)
    return student_t.ppf(q, dof) / student_t.ppf(norm.cdf(1.0), dof)


def half_width(levels, dof: float = np.inf) -> np.ndarray:
    """Half-width, in units of zerr, of the central interval holding `levels` of the predictive distribution.

    Gaussian (`dof` infinite): Phi^-1(0.5 + level/2). Student t: t_dof^-1(0.5 + level/2)
    divided by t_dof^-1(Phi(1)), so that the 68.27% interval is +-1 zerr.
    """
    levels = np.asarray(levels, dtype=np.float64)
    if not np.all((levels > 0) & (levels < 1)):
        msg = "confidence levels must lie strictly between 0 and 1"
        raise ValueError(msg)
    return standard_quantile(0.5 + levels / 2.0, dof)


def data_zwarn(sci: np.ndarray, dq: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """ZWARN bits that depend on the data alone: NODATA (blank or fully flagged) and POORDATA (SNR_GI < 1)."""
    zwarn = np.zeros(len(sci), np.int64)
    nodata = ~(np.abs(sci).reshape(len(sci), -1).max(axis=1) > 0) | np.all(dq != 0, axis=(1, 2, 3))
    zwarn[nodata] |= ZWARN_BITS["NODATA"]
    zwarn[snr < 1.0] |= ZWARN_BITS["POORDATA"]
    return zwarn


def source_identity(sources, start: int, n: int) -> dict:
    """SOURCE_ID, RA, DEC of sources `start:start+n` from the SOURCES table (running index and NaN without one)."""
    if sources is not None:
        return {c: np.asarray(sources[c][start : start + n]) for c in ("SOURCE_ID", "RA", "DEC")}
    return {"SOURCE_ID": np.arange(start, start + n), "RA": np.full(n, np.nan), "DEC": np.full(n, np.nan)}
