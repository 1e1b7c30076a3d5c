"""A redshift prior for the template route: the survey's n(z) in BPZ's form, fitted to held-out redshifts.

A chi-square minimum at a redshift where hardly any galaxy of the survey lies (a noise
spike taken for a line at z = 0.05 or z = 1.9) should need more evidence than one where
most lie. BPZ (Benitez 2000, ApJ 536, 571, eq. 19) multiplies the template likelihood by

    n(z) ~ z^alpha exp(-(z / z0)^alpha)    [per unit z],

fitted to a spectroscopic sample; BPZ also lets z0 grow with magnitude, which slitcli
leaves out (a sample file need not carry a magnitude). `calibrate --template` fits alpha
and z0 by maximum likelihood to the validation sample's true redshifts (`fit_nz`) and the
model card keeps them; the template route's PDF is then the posterior under this prior
(`slitcli.classic.posterior.posterior`), Z the chi-square minimum of its mode's basin.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from slitcli.errors import InputError

__all__ = ["nz_density", "fit_nz", "nz_prior_t"]

_Z_NORM = np.linspace(0.0, 6.0, 6001)  # where the density is normalised (per unit z)


def nz_density(z: np.ndarray, alpha: float, z0: float) -> np.ndarray:
    """BPZ's n(z) = z^alpha exp(-(z/z0)^alpha) per unit z, normalised to unit integral over z >= 0."""
    def shape(x):
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
        return x**alpha * np.exp(-((x / z0) ** alpha))

    return shape(z) / np.trapezoid(shape(_Z_NORM), _Z_NORM)


def fit_nz(z_true: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (alpha, z0) of `nz_density` for the redshifts `z_true` (at least 20, all > 0)."""
    z = np.asarray(z_true, dtype=np.float64)
    z = z[np.isfinite(z)]
    if z.size < 20 or np.any(z <= 0):
        msg = f"an n(z) prior needs at least 20 redshifts, all > 0 (got {z.size}, {int(np.sum(z <= 0))} <= 0)"
        raise InputError(msg)

    def nll(p):
        alpha, z0 = np.exp(p)
        return -np.sum(np.log(nz_density(z, alpha, z0) + 1e-300))

    start = np.log([2.0, max(float(np.median(z)), 0.05)])
    best = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-6, "maxiter": 2000})
    alpha, z0 = np.exp(best.x)
    return float(alpha), float(z0)


def nz_prior_t(t_grid: np.ndarray, alpha: float, z0: float) -> np.ndarray:
    """The n(z) prior as a density in t = ln(1 + z) on `t_grid`: n(z) (1 + z)."""
    z = np.expm1(t_grid)
    return nz_density(z, alpha, z0) * (1.0 + z)
