"""Point-estimate and uncertainty metrics of predicted redshifts against true ones.

Every function takes 1D float arrays of the same length: `z_pred` (predicted redshift, Z),
`zerr` (ZERR) and `z_true`; all are dimensionless. Throughout,
``dz = z_pred - z_true``. Empty input raises ValueError.

The uncertainty metrics (coverage, calibration curve and error, PIT) measure the truth
against the catalogue's predictive distribution as `slitcli.io.redshift` defines it: in
t = ln(1 + z), centred on ln(1 + z_pred), with 68.27% half-width s = zerr / (1 + z_pred),
Gaussian by default or, with ``dof`` finite, a Student t of `dof` degrees of freedom
(the catalogue's ZDOF) with the same 68.27% interval. The normalised residual is
``u = (ln(1 + z_true) - ln(1 + z_pred)) / s`` (`normalised_residuals` returns |u|);
`half_width` gives the interval of any level in units of s. The calibration
(`slitcli.nn.calibration`) fits on these same residuals.

The definitions are the usual photometric-redshift ones (e.g. Miao et al. 2026); the
`point_metrics` dictionary also carries the names LSST DESC's ``qp`` package uses.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, t as student_t

from slitcli.io.redshift import half_width, standard_quantile

__all__ = [
    "DEFAULT_LEVELS",
    "METRIC_KEYS",
    "pdf_pit",
    "pdf_crps",
    "ks_uniform",
    "sigma_nmad",
    "outlier_fraction",
    "bias_median",
    "bias_mean",
    "mean_zerr",
    "normalised_residuals",
    "half_width",
    "standard_quantile",
    "coverage",
    "calibration_curve",
    "calibration_error",
    "pit",
    "pit_ks",
    "point_metrics",
    "empty_metrics",
]

#: Confidence levels of the calibration curve and error: 0.10, 0.11, ..., 0.99.
DEFAULT_LEVELS = np.linspace(0.1, 0.99, 90)

#: Keys of `point_metrics`, in report order (the last three are qp aliases).
METRIC_KEYS = (
    "n",
    "sigma_nmad",
    "outlier_frac_002",
    "outlier_frac_015",
    "bias_median",
    "bias_mean",
    "mean_zerr",
    "coverage_68",
    "coverage_95",
    "calibration_error",
    "pit_ks",
    "point_stats_sigma_mad",
    "point_outlier_rate",
    "point_bias",
)


def _arrays(*arrays) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    if any(a.ndim != 1 for a in out) or len({a.size for a in out}) != 1:
        msg = f"inputs must be 1D arrays of one length, got shapes {', '.join(str(a.shape) for a in out)}"
        raise ValueError(msg)
    if out[0].size == 0:
        msg = "no sources: the input arrays are empty"
        raise ValueError(msg)
    return out


def _scaled_residuals(z_pred, z_true) -> np.ndarray:
    z_pred, z_true = _arrays(z_pred, z_true)
    return (z_pred - z_true) / (1.0 + z_true)


def sigma_nmad(z_pred, z_true) -> float:
    """Normalised median absolute deviation: 1.48 median(|dz - median(dz)| / (1 + z_true))."""
    z_pred, z_true = _arrays(z_pred, z_true)
    dz = z_pred - z_true
    return float(1.48 * np.median(np.abs(dz - np.median(dz)) / (1.0 + z_true)))


def outlier_fraction(z_pred, z_true, threshold: float) -> float:
    """Fraction of sources with |dz| / (1 + z_true) > `threshold` (0.02 and 0.15 are reported)."""
    return float(np.mean(np.abs(_scaled_residuals(z_pred, z_true)) > threshold))


def bias_median(z_pred, z_true) -> float:
    """Median of dz / (1 + z_true)."""
    return float(np.median(_scaled_residuals(z_pred, z_true)))


def bias_mean(z_pred, z_true) -> float:
    """Mean of dz / (1 + z_true)."""
    return float(np.mean(_scaled_residuals(z_pred, z_true)))


def mean_zerr(zerr, z_true) -> float:
    """Mean of zerr / (1 + z_true): the typical predicted uncertainty on the dz/(1+z) scale."""
    zerr, z_true = _arrays(zerr, z_true)
    return float(np.mean(zerr / (1.0 + z_true)))


def _signed_residuals(z_pred, zerr, z_true) -> np.ndarray:
    """u = (ln(1 + z_true) - ln(1 + z_pred)) / (zerr / (1 + z_pred)); 0 where the logs are equal, +-inf where zerr = 0."""
    z_pred, zerr, z_true = _arrays(z_pred, zerr, z_true)
    if not np.all(np.isfinite(zerr) & (zerr >= 0)):
        msg = "zerr must be finite and >= 0"
        raise ValueError(msg)
    if not (np.all(z_pred > -1) and np.all(z_true > -1)):
        msg = "z_pred and z_true must be > -1 (the residual is in ln(1 + z))"
        raise ValueError(msg)
    dt = np.log1p(z_true) - np.log1p(z_pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dt == 0, 0.0, dt * (1.0 + z_pred) / zerr)


def normalised_residuals(z_pred, zerr, z_true) -> np.ndarray:
    """|u| = |ln(1 + z_true) - ln(1 + z_pred)| / (zerr / (1 + z_pred)) per source (module docstring).

    How many 68.27% half-widths the truth lies away, in ln(1 + z). A source with zerr = 0
    gets 0 when z_pred = z_true and +inf otherwise, so that ``r <= k`` means exactly
    that the truth lies within +-k zerr / (1 + z_pred) of ln(1 + z_pred), for every finite k > 0.

    Raises
    ------
    ValueError
        If any zerr is negative or not finite, or a redshift is <= -1.
    """
    return np.abs(_signed_residuals(z_pred, zerr, z_true))


def coverage(z_pred, zerr, z_true, level: float, dof: float = np.inf) -> float:
    """Fraction of sources with |u| <= half_width(level, dof), u the normalised residual in ln(1 + z).

    For a calibrated predictive distribution this equals `level` (0.68 and 0.95 are reported).
    For truths >= 0 it is the fraction between the published quantiles of the level
    (`slitcli.io.redshift.quantiles`): Z160-Z840 for 0.68, Z025-Z975 for 0.95.
    """
    r = normalised_residuals(z_pred, zerr, z_true)
    return float(np.mean(r <= half_width(level, dof)))


def calibration_curve(z_pred, zerr, z_true, levels=DEFAULT_LEVELS, dof: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Coverage at each confidence level.

    Returns
    -------
    levels, coverages : ndarray
        The levels (default 0.10 to 0.99 in steps of 0.01) and the fraction of sources
        inside the central interval of each; calibrated uncertainties give the diagonal.
    """
    levels = np.asarray(levels, dtype=np.float64)
    r = np.sort(normalised_residuals(z_pred, zerr, z_true))
    return levels, np.searchsorted(r, half_width(levels, dof), side="right") / r.size


def calibration_error(z_pred, zerr, z_true, levels=DEFAULT_LEVELS, dof: float = np.inf) -> float:
    """Root mean square over `levels` of coverage(level) - level (0 when calibrated).

    This is the RMS, not the mean absolute, deviation of the calibration curve from
    the diagonal, on the default levels 0.10, 0.11, ..., 0.99.
    """
    levels, cov = calibration_curve(z_pred, zerr, z_true, levels, dof)
    return float(np.sqrt(np.mean((cov - levels) ** 2)))


def pit(z_pred, zerr, z_true, dof: float = np.inf) -> np.ndarray:
    """Probability integral transform: the predictive CDF evaluated at the truth, per source.

    Phi(u), or the scaled Student t's CDF with `dof` finite, for the normalised residual u.
    Uniform on [0, 1] when the uncertainties are calibrated. zerr = 0 gives 0.5 when
    dz = 0, else 0 or 1.
    """
    u = _signed_residuals(z_pred, zerr, z_true)
    if not np.isfinite(dof):
        return norm.cdf(u)
    return student_t.cdf(u * student_t.ppf(norm.cdf(1.0), dof), dof)


def pit_ks(z_pred, zerr, z_true, dof: float = np.inf) -> float:
    """Kolmogorov-Smirnov distance of the PIT values from the uniform distribution on [0, 1].

    max over i of max(i/n - u_(i), u_(i) - (i-1)/n) for the sorted PIT values u.
    """
    return ks_uniform(pit(z_pred, zerr, z_true, dof))


def ks_uniform(u) -> float:
    """Kolmogorov-Smirnov distance of values `u` from the uniform distribution on [0, 1]."""
    u = np.sort(np.asarray(u, np.float64))
    i = np.arange(1, u.size + 1)
    return float(max(np.max(i / u.size - u), np.max(u - (i - 1) / u.size)))


def pdf_pit(grid, pdf, z_true) -> np.ndarray:
    """PIT of gridded PDFs: each row's CDF (trapezoid on `grid`) at its `z_true` [n]."""
    cdf = _pdf_cdf(grid, pdf)
    return np.array([np.interp(z, grid, c) for z, c in zip(np.asarray(z_true, np.float64), cdf, strict=True)])


def pdf_crps(grid, pdf, z_true) -> np.ndarray:
    """CRPS [z] of gridded PDFs: the integral over the grid of (F(z) - [z >= z_true])^2, F the row's CDF.

    Exact for the piecewise-linear CDF on the grid, with the cell holding z_true split
    there; a truth past the grid adds (distance past its end) x (1 - F)^2 or F^2 there (0 and 1).
    """
    grid = np.asarray(grid, np.float64)
    out = np.empty(len(pdf))
    for i, (z, c) in enumerate(zip(np.asarray(z_true, np.float64), _pdf_cdf(grid, pdf), strict=True)):
        zz = np.sort(np.append(grid, np.clip(z, grid[0], grid[-1])))
        f = np.interp(zz, grid, c)
        step = (zz >= z).astype(np.float64)
        # (F - H)^2 is piecewise quadratic between nodes: Simpson's rule on each cell is exact for it.
        lo, hi = f[:-1] - step[:-1], f[1:] - step[:-1]
        mid = 0.5 * (lo + hi)
        out[i] = float(np.sum(np.diff(zz) * (lo**2 + 4 * mid**2 + hi**2) / 6.0))
        out[i] += max(grid[0] - z, 0.0) * 1.0 + max(z - grid[-1], 0.0) * 1.0
    return out


def _pdf_cdf(grid, pdf) -> np.ndarray:
    pdf = np.atleast_2d(np.asarray(pdf, np.float64))
    cells = 0.5 * (pdf[:, 1:] + pdf[:, :-1]) * np.diff(grid)[None, :]
    cdf = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(cells, axis=1)], axis=1)
    return cdf / np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)


def point_metrics(z_pred, zerr, z_true, dof: float = np.inf) -> dict:
    """Every metric of this module for one sample, keyed as `METRIC_KEYS`.

    Returns
    -------
    dict
        ``n`` (int) and floats: ``sigma_nmad``, ``outlier_frac_002`` and
        ``outlier_frac_015`` (|dz|/(1+z) > 0.02, 0.15), ``bias_median``, ``bias_mean``,
        ``mean_zerr``, ``coverage_68``, ``coverage_95``, ``calibration_error`` (RMS),
        ``pit_ks``; and the qp aliases ``point_stats_sigma_mad`` (= sigma_nmad),
        ``point_outlier_rate`` (= outlier_frac_015), ``point_bias`` (= bias_median).
    """
    z_pred, zerr, z_true = _arrays(z_pred, zerr, z_true)
    out = {
        "n": int(z_pred.size),
        "sigma_nmad": sigma_nmad(z_pred, z_true),
        "outlier_frac_002": outlier_fraction(z_pred, z_true, 0.02),
        "outlier_frac_015": outlier_fraction(z_pred, z_true, 0.15),
        "bias_median": bias_median(z_pred, z_true),
        "bias_mean": bias_mean(z_pred, z_true),
        "mean_zerr": mean_zerr(zerr, z_true),
        "coverage_68": coverage(z_pred, zerr, z_true, 0.68, dof),
        "coverage_95": coverage(z_pred, zerr, z_true, 0.95, dof),
        "calibration_error": calibration_error(z_pred, zerr, z_true, dof=dof),
        "pit_ks": pit_ks(z_pred, zerr, z_true, dof),
    }
    out["point_stats_sigma_mad"] = out["sigma_nmad"]
    out["point_outlier_rate"] = out["outlier_frac_015"]
    out["point_bias"] = out["bias_median"]
    return out


def empty_metrics() -> dict:
    """`point_metrics` of a sample with no sources: n = 0 and NaN for every metric."""
    return {key: 0 if key == "n" else float("nan") for key in METRIC_KEYS}
