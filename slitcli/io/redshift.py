"""The shared vocabulary of a redshift catalogue: ZWARN bits, quantiles, source identity.

Both routes (the CNN in `slitcli.nn`, the template fit in `slitcli.classic`) and the
evaluation write or read these. This docstring is the one definition of what a
catalogue's Z, ZERR and quantiles mean; the rest of the code and the docs refer to it.

The predictive distribution
---------------------------
Each source's redshift is described in t = ln(1 + z) by a centre and a width::

    t_Z = ln(1 + Z),    s = ZERR / (1 + Z)

s is the half-width in t of the central 68.27% interval (the Gaussian 1-sigma level,
Phi(1) - Phi(-1)): the truth lies in [t_Z - s, t_Z + s] with probability 0.6827.
ZERR = (1 + Z) s is that half-width carried to z (to first order in s, since
dz = (1 + z) dt). The shape is a Gaussian in t or, where calibration chose heavier
tails, a Student t of ``dof`` degrees of freedom (the catalogue's ``ZDOF``; 0 means
Gaussian) scaled so that its 68.27% interval is still t_Z +- s (`half_width`). With
t tails ZERR is therefore *not* a standard deviation: the t has none for dof <= 2, and
for dof > 2 its standard deviation is s sqrt(dof / (dof - 2)) / t_dof^-1(Phi(1)), larger
than s (1.45 s for dof = 3, 1.24 s for dof = 4). Read ZERR as "the 68.27% half-width", never as a Gaussian sigma
to be scaled to other levels: the interval of any level c is +- `half_width`(c, dof) s.

Quantiles (Z025, Z160, Z500, Z840, Z975, `QUANTILES`) are those of that distribution,
mapped back to z and censored at z = 0 (`quantiles`)::

    Zq = max(0, exp(t_Z + k_q s) - 1),    k_q = standard_quantile(q, dof)

The probability the distribution puts below z = 0 (t < 0), where no source lies, sits
at z = 0: a quantile that would be negative is 0. Because every true redshift is >= 0,
censoring does not change which truths an interval holds.

A truth z_true is measured against the distribution by its normalised residual
(`slitcli.evaluation.metrics.normalised_residuals`)::

    u = (ln(1 + z_true) - t_Z) / s

coverage of level c is the fraction of sources with |u| <= half_width(c, dof), the
PIT is the distribution's CDF at u, and calibration (`slitcli.nn.calibration`) fits the
scale of s so that coverage matches c. For the CNN route (whose distribution is
symmetric about t_Z) this is the same as counting the truths between the published
quantiles: coverage_68 = fraction with Z160 <= z_true <= Z840, coverage_95 likewise with
Z025 and Z975. The template route's quantiles are read from its chi-square PDF on the
t grid (not from this formula; they never leave the grid, whose lower end is
z_min >= 0), Z is that PDF's best fit and ZERR / (1 + Z) half the width in t of its
central 68.27% interval; evaluate reads its Z, ZERR as a Gaussian in t (ZDOF absent).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

__all__ = ["ZWARN_BITS", "QUANTILES", "ODDS_WIDTH", "standard_quantile", "half_width", "quantiles", "odds", "odds_from_cdf", "SIGMA_LEVELS", "source_identity", "data_zwarn", "lost_columns", "MAX_LOST_COLUMNS"]

#: ZWARN bits: redrock's where the meaning is the same, slitcli's own in 16-23.
ZWARN_BITS = {"LITTLE_COVERAGE": 2, "Z_FITLIMIT": 32, "NODATA": 512, "POORDATA": 2048, "LARGE_EPISTEMIC": 1 << 16, "UNLIKE_TRAINING": 1 << 17}
#: Published quantile columns and their probability levels (eazy-py naming).
QUANTILES = {"Z025": 0.025, "Z160": 0.16, "Z500": 0.5, "Z840": 0.84, "Z975": 0.975}
#: Levels of the central 68.27% interval, Phi(-1) and Phi(1): ZERR / (1 + Z) is its half-width in ln(1+z).
SIGMA_LEVELS = (float(norm.cdf(-1.0)), float(norm.cdf(1.0)))


def standard_quantile(q, dof: float = np.inf) -> np.ndarray:
    """Quantile `q` of the predictive distribution of centre 0 and unit s (68.27% half-width): Gaussian, or a Student t (see `half_width`)."""
    q = np.asarray(q, dtype=np.float64)
    if not np.isfinite(dof):
        return norm.ppf(q)
    if dof <= 0:
        msg = f"the Student t needs dof > 0, got {dof}"
        raise ValueError(msg)
    return student_t.ppf(q, dof) / student_t.ppf(norm.cdf(1.0), dof)


def half_width(levels, dof: float = np.inf) -> np.ndarray:
    """Half-width, in units of s = ZERR / (1 + Z), of the central interval holding `levels` of the predictive distribution, in ln(1+z).

    Gaussian (`dof` infinite): Phi^-1(0.5 + level/2). Student t: t_dof^-1(0.5 + level/2)
    divided by t_dof^-1(Phi(1)), so that the 68.27% interval is +-1 s for every dof.
    """
    levels = np.asarray(levels, dtype=np.float64)
    if not np.all((levels > 0) & (levels < 1)):
        msg = "confidence levels must lie strictly between 0 and 1"
        raise ValueError(msg)
    return standard_quantile(0.5 + levels / 2.0, dof)


def quantiles(z, zerr, dof: float = np.inf, levels: dict = QUANTILES) -> dict:
    """The published quantiles of Z, ZERR: max(0, expm1(ln(1 + z) + k_q zerr / (1 + z))) (module docstring).

    Parameters
    ----------
    z, zerr : array_like
        Centre (> -1) and 68.27% half-width of the predictive distribution, in z.
    dof : float
        Student t degrees of freedom of its tails; inf: Gaussian.
    levels : dict
        Column name -> probability level; default `QUANTILES`.

    Returns
    -------
    dict
        Column name -> array of quantiles, each >= 0.
    """
    z, zerr = np.asarray(z, dtype=np.float64), np.asarray(zerr, dtype=np.float64)
    t, s = np.log1p(z), zerr / (1.0 + z)
    return {name: np.maximum(0.0, np.expm1(t + standard_quantile(q, dof) * s)) for name, q in levels.items()}


#: ODDS is the probability within +-ODDS_WIDTH (1 + Z) of Z (BPZ's odds, Benitez 2000).
ODDS_WIDTH = 0.02


def odds(z, zerr, dof: float = np.inf, width: float = ODDS_WIDTH) -> np.ndarray:
    """Probability of the predictive distribution of Z, ZERR (and `dof`) within +-`width` (1 + Z) of Z.

    The distribution is the catalogue's: centred on ln(1 + Z) in t = ln(1 + z), with 68.27%
    half-width ZERR / (1 + Z); the interval is [ln(1 - width), ln(1 + width)] about its centre.
    """
    from scipy.stats import t as student_t

    z, zerr = np.asarray(z, dtype=np.float64), np.asarray(zerr, dtype=np.float64)
    s = np.maximum(zerr / (1.0 + z), 1e-300)
    k = float(standard_quantile(SIGMA_LEVELS[1], dof))  # the standard distribution's Phi(1) quantile
    dist = student_t(dof) if np.isfinite(dof) else norm
    return dist.cdf(np.log1p(width) * k / s) - dist.cdf(np.log1p(-width) * k / s)


def odds_from_cdf(t_best: float, t_nodes: np.ndarray, cdf: np.ndarray, width: float = ODDS_WIDTH) -> float:
    """ODDS of a PDF given by its CDF at nodes `t_nodes` in t (linear between them), about `t_best`."""
    lo, hi = np.interp([t_best + np.log1p(-width), t_best + np.log1p(width)], t_nodes, cdf)
    return float(hi - lo)


#: LITTLE_COVERAGE: more than this fraction of a band's columns (wavelengths) have no usable
#: pixel in the cutout's central `COVERAGE_ROWS` rows (a spectrum running off the detector).
MAX_LOST_COLUMNS = 0.1
COVERAGE_ROWS = 5


def lost_columns(dq: np.ndarray) -> np.ndarray:
    """[n, n_band]: fraction of each band's columns with every pixel of the central `COVERAGE_ROWS` rows flagged in `dq` [n, n_band, ny, nx]."""
    centre = dq.shape[2] // 2
    rows = dq[:, :, max(centre - COVERAGE_ROWS // 2, 0) : centre + COVERAGE_ROWS // 2 + 1, :]
    return np.all(rows != 0, axis=2).mean(axis=2)


def data_zwarn(sci: np.ndarray, dq: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """ZWARN bits that depend on the data alone: NODATA (blank or fully flagged), POORDATA (SNR_GI < 1)
    and LITTLE_COVERAGE (`lost_columns` above `MAX_LOST_COLUMNS` in a band)."""
    zwarn = np.zeros(len(sci), np.int64)
    zwarn[np.any(lost_columns(dq) > MAX_LOST_COLUMNS, axis=1)] |= ZWARN_BITS["LITTLE_COVERAGE"]
    nodata = ~(np.abs(sci).reshape(len(sci), -1).max(axis=1) > 0) | np.all(dq != 0, axis=(1, 2, 3))
    zwarn[nodata] |= ZWARN_BITS["NODATA"]
    zwarn[snr < 1.0] |= ZWARN_BITS["POORDATA"]
    return zwarn


def source_identity(sources, start: int, n: int) -> dict:
    """SOURCE_ID, RA, DEC of sources `start:start+n` from the SOURCES table (running index and NaN without one)."""
    if sources is not None:
        return {c: np.asarray(sources[c][start : start + n]) for c in ("SOURCE_ID", "RA", "DEC")}
    return {"SOURCE_ID": np.arange(start, start + n), "RA": np.full(n, np.nan), "DEC": np.full(n, np.nan)}
