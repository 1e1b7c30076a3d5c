"""Redshift PDFs on a shared grid: what ``predict --pdf`` writes as the catalogue's ``ZPDF``.

Every source's p(z) is tabulated on one grid of redshifts, uniform in t = ln(1 + z)
(steps of at most `DEFAULT_STEP_T` = 0.0004 from z = 0 to `DEFAULT_Z_MAX` = 2: 2748
points, the template route's default fine grid), as a density per unit z [1/z] that integrates to 1 by
the trapezoid rule on that grid. A FITS catalogue holds it in two image HDUs after
``REDSHIFTS``:

- ``ZGRID``: the grid's redshifts [n_grid], float64 (``ZGRIDVAR`` = 'z');
- ``ZPDF``: the densities [n_source, n_grid], float32, in the row order of ``REDSHIFTS``.

This is qp's interpolated ensemble as it stands::

    qp.Ensemble(qp.interp, data=dict(xvals=ZGRID, yvals=ZPDF))

(`qp.interp` renormalises each row, a no-op here). The CNN route's PDF is its calibrated
predictive distribution (`slitcli.io.redshift`: a Gaussian or Student t in t, censored at
z = 0, the censored mass at the grid's first point); the template route's is its
chi-square PDF exp(-(chi2 - chi2_min) / (2 s)) read at the grid points. ECSV catalogues
keep the point columns only.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from slitcli.errors import InputError

__all__ = ["DEFAULT_STEP_T", "DEFAULT_Z_MAX", "z_grid", "normalise", "predictive_pdf", "pdf_quantiles", "read_zpdf", "zpdf_hdus"]

#: Step of the grid in t = ln(1 + z), and its last redshift.
DEFAULT_STEP_T = 0.0004
DEFAULT_Z_MAX = 2.0


def z_grid(z_max: float = DEFAULT_Z_MAX, step_t: float = DEFAULT_STEP_T) -> np.ndarray:
    """Redshifts from 0 to `z_max`, uniform in t = ln(1 + z) with steps of at most `step_t` (the template fit's grid)."""
    hi = np.log1p(z_max)
    return np.expm1(np.linspace(0.0, hi, int(np.ceil(hi / step_t)) + 1))


def normalise(grid: np.ndarray, pdf: np.ndarray) -> np.ndarray:
    """`pdf` [..., n_grid] scaled to unit trapezoid integral over `grid` (rows of zero integral stay zero)."""
    area = np.trapezoid(pdf, grid, axis=-1)
    return np.divide(pdf, area[..., None], out=np.zeros_like(pdf, dtype=np.float64), where=area[..., None] > 0)


def predictive_pdf(z, zerr, grid: np.ndarray, dof: float = np.inf, censor: bool = True) -> np.ndarray:
    """Densities per unit z [n, n_grid] of the catalogue's predictive distribution (`slitcli.io.redshift`).

    A Gaussian (or Student t of `dof`) in t centred on ln(1 + Z) with 68.27% half-width
    ZERR / (1 + Z), carried to z (density / (1 + z)); the mass below z = 0 is put in the
    first grid cell (the censoring of the quantile columns) and the mass beyond the grid
    in the last (a quantile past the grid reads as its end), and each row is normalised
    on the grid. Without `censor` the mass beyond the ends is left out (the density
    itself, as the hybrid route's prior needs: no spike at z = 0).
    """
    z, zerr = np.atleast_1d(np.asarray(z, np.float64)), np.atleast_1d(np.asarray(zerr, np.float64))
    t_grid = np.log1p(grid)[None, :]
    t0, s = np.log1p(z)[:, None], np.maximum(zerr / (1.0 + z), 1e-12)[:, None]
    # s is the 68.27% half-width: the distribution's scale is s / k, k the standard
    # distribution's quantile at Phi(1) (1 for the Gaussian).
    k = float(student_t.ppf(norm.cdf(1.0), dof)) if np.isfinite(dof) else 1.0
    u = (t_grid - t0) * k / s
    dist = student_t(dof) if np.isfinite(dof) else norm
    density_t = dist.pdf(u) * k / s
    below, above = dist.cdf(-t0 * k / s)[:, 0], dist.sf((t_grid[0, -1] - t0) * k / s)[:, 0]
    pdf = density_t / (1.0 + grid)[None, :]
    # The mass beyond each end as a spike in the end cell (integral `below`, `above`), so
    # that every quantile the grid can hold is the catalogue's.
    if censor:
        pdf[:, 0] += 2.0 * below / (grid[1] - grid[0])
        pdf[:, -1] += 2.0 * above / (grid[-1] - grid[-2])
    return normalise(grid, pdf)


def pdf_quantiles(grid: np.ndarray, pdf: np.ndarray, levels) -> np.ndarray:
    """Quantiles [n, len(levels)] of each row's PDF, from its trapezoid CDF interpolated linearly."""
    pdf = np.atleast_2d(pdf)
    cells = 0.5 * (pdf[:, 1:] + pdf[:, :-1]) * np.diff(grid)[None, :]
    cdf = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(cells, axis=1)], axis=1)
    cdf /= np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)
    return np.array([[np.interp(q, c, grid) for q in np.atleast_1d(levels)] for c in cdf])


def zpdf_hdus(grid: np.ndarray, pdf: np.ndarray) -> list:
    """The ``ZGRID`` and ``ZPDF`` image HDUs (astropy) of a catalogue."""
    from astropy.io import fits

    g = fits.ImageHDU(np.asarray(grid, np.float64), name="ZGRID")
    g.header["BUNIT"] = ("", "Redshift (dimensionless)")
    g.header["ZGRIDVAR"] = ("z", "The grid is in redshift z")
    g.header["ZSTEPT"] = (float(np.log1p(grid[1]) - np.log1p(grid[0])), "Grid step in ln(1+z)")
    p = fits.ImageHDU(np.asarray(pdf, np.float32), name="ZPDF")
    p.header["BUNIT"] = ("", "Probability density per unit redshift")
    p.header["ZGRIDEXT"] = ("ZGRID", "HDU of the grid (axis 1)")
    p.header["ROWSOF"] = ("REDSHIFTS", "Rows are those of this HDU, in order")
    p.header["COMMENT"] = "p(z) on ZGRID, trapezoid integral 1: qp.Ensemble(qp.interp, data=dict(xvals=ZGRID, yvals=ZPDF))"
    return [g, p]


def read_zpdf(path) -> tuple[np.ndarray, np.ndarray] | None:
    """(grid, pdf) of a FITS catalogue's ZGRID and ZPDF HDUs, or None if it has none."""
    from astropy.io import fits

    with fits.open(path) as h:
        names = [x.name for x in h]
        if "ZPDF" not in names:
            return None
        if "ZGRID" not in names:
            msg = f"{path}: HDU ZPDF without its grid HDU ZGRID"
            raise InputError(msg)
        grid, pdf = np.asarray(h["ZGRID"].data, np.float64), np.asarray(h["ZPDF"].data, np.float64)
    if pdf.ndim != 2 or pdf.shape[1] != grid.size:
        msg = f"{path}: HDU ZPDF is {pdf.shape}, expected n_source x {grid.size} (the ZGRID points)"
        raise InputError(msg)
    return grid, pdf
