"""The template basis of the classic route: galaxy continua plus emission lines.

Continua: the six empirical CWW + Kinney templates of Benitez (2004) as shipped by
desc-bpz (``slitcli/data/templates``; independent of the simulator's SED library).
Lines: one template per line group, Gaussian in the rest frame, fixed ratios
within a group. A spectrum is a non-negative combination of the templates.

Everything is kept as a cumulative integral on a uniform rest-frame grid, so the
integral of any template over any wavelength bin is two look-ups: this is what makes
narrow lines land on the detector with the right flux whatever the bin width.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy.special import ndtr

__all__ = ["TemplateBasis", "load_templates", "CONTINUUM_NAMES", "LINE_GROUPS"]

CONTINUUM_NAMES = ("El_B2004a", "Sbc_B2004a", "Scd_B2004a", "Im_B2004a", "SB3_B2004a", "SB2_B2004a")

#: Emission-line groups: name -> ((vacuum rest wavelength [Angstrom], relative flux), ...).
LINE_GROUPS = {
    "OII": ((3727.09, 1.0), (3729.88, 1.0)),
    "NeIII": ((3869.86, 1.0),),
    "Hgamma": ((4341.68, 1.0),),
    "Hbeta": ((4862.68, 1.0),),
    "OIII": ((4960.30, 1.0), (5008.24, 2.98)),
    "Halpha": ((6564.61, 1.0),),
    "NII": ((6549.86, 1.0), (6585.27, 2.95)),
    "SII": ((6718.29, 1.0), (6732.67, 1.0)),
}

_REST_MIN_AA, _REST_MAX_AA, _REST_STEP_AA = 900.0, 13000.0, 0.5


@dataclass(frozen=True)
class TemplateBasis:
    """Cumulative rest-frame templates on a uniform grid.

    Attributes
    ----------
    names : tuple of str
        Template names, continua first.
    rest_wave_aa : array [nwave]
        Uniform rest-frame grid [Angstrom].
    cumulative : array [ntemplate, nwave]
        Integral of each template's f_lambda from the grid's start [flux unit x Angstrom].
        Continua are scaled to a mean f_lambda of 1 over 4000-8000 Angstrom, lines to a
        total flux of 1.
    """

    names: tuple[str, ...]
    rest_wave_aa: np.ndarray
    cumulative: np.ndarray

    def integrate(self, rest_edges_aa: np.ndarray) -> np.ndarray:
        """Integral of each template over consecutive rest-frame bins: [ntemplate, *edges.shape[:-1], nedges - 1]."""
        pos = (np.asarray(rest_edges_aa, dtype=np.float64) - self.rest_wave_aa[0]) / _REST_STEP_AA
        pos = np.clip(pos, 0.0, self.rest_wave_aa.size - 1.000001)
        i = pos.astype(np.int64)
        f = pos - i
        at_edges = self.cumulative[:, i] * (1.0 - f) + self.cumulative[:, i + 1] * f
        return np.diff(at_edges, axis=-1)

    def integrate_observed(self, obs_edges_aa: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Integral of each template's observed f_lambda(lambda) = f_rest(lambda/(1+z)) over observed bins.

        Parameters
        ----------
        obs_edges_aa : array [nedges]
            Observed-frame bin edges [Angstrom], increasing.
        z : array [nz]
            Redshifts.

        Returns
        -------
        array [nz, ntemplate, nedges - 1]
            [flux unit x Angstrom]; (1 + z) times the rest-frame bin integrals.
        """
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        rest_edges = obs_edges_aa[None, :] / (1.0 + z[:, None])
        return np.moveaxis(self.integrate(rest_edges), 0, 1) * (1.0 + z)[:, None, None]


def _read_sed(name: str) -> tuple[np.ndarray, np.ndarray]:
    text = resources.files("slitcli").joinpath("data", "templates", f"{name}.sed").read_text()
    table = np.loadtxt(text.splitlines())
    return table[:, 0], table[:, 1]


@functools.cache
def load_templates(line_sigma_aa: float = 2.0) -> TemplateBasis:
    """The shipped basis: six continua and the `LINE_GROUPS`, lines of rest-frame width `line_sigma_aa` (Gaussian sigma)."""
    grid = np.arange(_REST_MIN_AA, _REST_MAX_AA + 0.5 * _REST_STEP_AA, _REST_STEP_AA)
    rows, names = [], []
    for name in CONTINUUM_NAMES:
        wave, flam = _read_sed(name)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (flam[1:] + flam[:-1]) * np.diff(wave))])
        norm_band = (wave >= 4000.0) & (wave <= 8000.0)
        scale = np.trapezoid(flam[norm_band], wave[norm_band]) / (wave[norm_band][-1] - wave[norm_band][0])
        rows.append(np.interp(grid, wave, cum) / scale)
        names.append(name)
    for name, lines in LINE_GROUPS.items():
        total = sum(r for _, r in lines)
        rows.append(sum(r / total * ndtr((grid - w) / line_sigma_aa) for w, r in lines))
        names.append(name)
    return TemplateBasis(names=tuple(names), rest_wave_aa=grid, cumulative=np.array(rows))
