"""The classic route: optimal 1D extraction, then a template chi-square redshift fit.

For each source and band the 1D spectrum is extracted (`slitcli.extract`) with the
cross-dispersion profile of the source's direct stamp. The model of that spectrum at
redshift z is a non-negative combination of the templates (`slitcli.classic.templates`),
each put through the same optics as the data:

1. the template's observed flux is integrated over quarter-pixel bins of the linear
   wavelength solution (WCS of the band) and times the band's sensitivity [e-/s];
2. the bins are shared between pixels as the dispersion shares a point source's light
   (linear interpolation, a tent of one pixel half-width), at half-pixel steps;
3. this point-source spectrum is smeared by the source's own extent along the
   dispersion, the kernel from its direct stamp.

Steps 1-2 depend only on the file (WCS, sensitivity) and z; step 3 on the source.
`smear` and `chi2_grid` do step 3 and the fit on whole arrays (the reference, in the
tests); the route itself runs them fused, point by point, in `slitcli.classic.chisq`.
The chi-square is minimised over the template coefficients (non-negative least
squares) on a grid in t = ln(1 + z): a coarse grid, then fine windows around the
best few minima. The redshift PDF is
exp(-(chi2 - chi2_min) / (2 s)), s = max(1, reduced chi2_min) times a calibrated
temperature (`TemplateFitConfig.temperature`; the template mismatch
is folded into the width), and the quantiles and `ZERR` come from it: the quantiles are
read from its CDF in t (so they stay inside [z_min, z_max]), Z is the best fit and
ZERR / (1 + Z) half the width in t of its central 68.27% interval, as
`slitcli.io.redshift` defines for every catalogue.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from astropy.table import Table, vstack
from scipy.optimize import nnls
from scipy.special import ndtr, ndtri

from slitcli.classic.chisq import chi2_jobs, lit_ranges
from slitcli.classic.nz_prior import nz_prior_t
from slitcli.classic.templates import TemplateBasis, load_templates
from slitcli.errors import ConfigError
from slitcli.extract import (
    data_snr,
    direct_profile,
    extract_optimal,
    sample_band_columns,
)
from slitcli.io.redshift import ODDS_WIDTH, QUANTILES, SIGMA_LEVELS, ZWARN_BITS, data_zwarn, odds_from_cdf, source_identity
from slitcli.io.samplefile import SampleReader
from slitcli.io.zpdf import normalise
from slitcli.snr_bins import check_per_bin, header_text, per_source

__all__ = ["TemplateFitConfig", "BandGeometry", "point_spectra", "smear", "chi2_grid", "smooth", "fit_redshift", "shift_fit", "under_prior", "fit_file", "fit_sample", "check_template_inputs", "catalog_meta", "ZWARN_SMALL_DELTA_CHI2"]

#: redrock's ZWARN bit for a best fit not clearly better than the next (DELTACHI2 < `min_delta_chi2`).
ZWARN_SMALL_DELTA_CHI2 = 4

#: Tent weights of the eight quarter-pixel bins within one pixel of a half-pixel position.
_TENT8 = np.array([1.0, 3.0, 5.0, 7.0, 7.0, 5.0, 3.0, 1.0]) / 8.0


@dataclass(frozen=True)
class TemplateFitConfig:
    """Settings of the template fit; steps are in t = ln(1 + z).

    Attributes
    ----------
    z_min, z_max : float
        Redshift range searched.
    step : float
        Step of the fine grid, on which the models are computed once per file.
    coarse_every : int
        The first pass uses every `coarse_every`-th fine grid point.
    n_candidates : int
        Best minima of the first pass searched on the fine grid.
    fine_window : int
        Each candidate's fine window reaches this many coarse steps either side of it
        (1 holds the minimum of a basin whose coarse minimum it is).
    min_delta_chi2 : float
        DELTACHI2 below this sets ZWARN bit 4 (as redrock).
    temperature : float or tuple of float
        Multiplies the PDF's scale s (`calibrate --template` fits it so that the intervals
        cover as claimed; 1: the chi-square as it is); a tuple: one per SNR_GI bin of
        `snr_edges`.
    error_floor : float or tuple of float
        Added in quadrature to the PDF's width [ln(1+z)]: the template mismatch a bright
        source's narrow chi-square does not see (`calibrate --template` fits it; 0: none);
        a tuple: one per bin.
    snr_edges : tuple of float
        Lower edges of the SNR_GI bins of a temperature and floor fitted per bin
        (`slitcli.snr_bins`); empty: one of each for all sources.
    sky_offset : bool
        Also fit a constant per band, of either sign: a sky level left in the cutouts
        (imperfect sky subtraction) is then not taken for continuum.
    offset : float
        The template basis's redshift offset [ln(1+z)]: the chi-square's minimum at t
        means ln(1 + z) = t - offset (`calibrate` fits it; `shift_fit`).
    nz_prior : (alpha, z0) or None
        A redshift prior n(z) ~ z^alpha exp(-(z/z0)^alpha) (`slitcli.classic.nz_prior`;
        `calibrate` fits it); None: flat in ln(1 + z), the PDF is the likelihood.
    """

    z_min: float = 0.0
    z_max: float = 2.0
    step: float = 0.0004
    coarse_every: int = 8
    n_candidates: int = 4
    fine_window: int = 1
    min_delta_chi2: float = 9.0
    temperature: float | tuple[float, ...] = 1.0
    error_floor: float | tuple[float, ...] = 0.0
    snr_edges: tuple[float, ...] = ()
    sky_offset: bool = False
    offset: float = 0.0
    nz_prior: tuple[float, float] | None = None

    def __post_init__(self):
        if not (0.0 <= self.z_min < self.z_max):
            msg = f"the template fit needs 0 <= z_min < z_max, got {self.z_min} and {self.z_max}"
            raise ConfigError(msg)
        temperature, floor = check_per_bin("the template fit", self.snr_edges, self.temperature, self.error_floor)
        if not (self.step > 0 and self.coarse_every >= 1 and self.n_candidates >= 1 and self.fine_window >= 1 and np.all(temperature > 0) and np.all(floor >= 0) and abs(self.offset) < 0.05):
            msg = "the template fit needs step > 0, coarse_every >= 1, n_candidates >= 1, fine_window >= 1, temperature > 0, error_floor >= 0 and |offset| < 0.05"
            raise ConfigError(msg)

    @property
    def per_bin(self) -> bool:
        """Whether the temperature and floor are one per SNR_GI bin (the PDF is then always `under_prior`'s)."""
        return bool(self.snr_edges)

    def likelihood_scales(self, snr) -> tuple[np.ndarray, np.ndarray]:
        """Each source's temperature and error floor [ln(1+z)] for its SNR_GI `snr`."""
        return per_source(self.temperature, self.snr_edges, snr), per_source(self.error_floor, self.snr_edges, snr)

    def grid(self) -> np.ndarray:
        """The fine grid of t = ln(1 + z)."""
        lo, hi = np.log1p(self.z_min), np.log1p(self.z_max)
        return np.linspace(lo, hi, int(np.ceil((hi - lo) / self.step)) + 1)


@dataclass(frozen=True)
class BandGeometry:
    """What the fit needs of one band of a sample file.

    Attributes
    ----------
    name : str
    nx : int
        Columns of the cutout.
    crval1_aa, cdelt1_aa, crpix1 : float
        Linear wavelength solution: lambda(x) = crval1 + cdelt1 (x + 1 - crpix1) for the
        0-based column x of a point source at the direct position [Angstrom].
    sens_wave_aa, sens : array
        Sensitivity [e-/s per erg/s/cm2/Angstrom] on its wavelengths [Angstrom].
    columns : array of int
        Columns fitted (those inside the band).
    margin : int
        Columns beyond each edge where the point-source spectrum is kept, at least half
        the direct stamp's width, so light smeared onto the cutout from outside is modelled.
    """

    name: str
    nx: int
    crval1_aa: float
    cdelt1_aa: float
    crpix1: float
    sens_wave_aa: np.ndarray
    sens: np.ndarray
    columns: np.ndarray
    margin: int

    def wavelength(self, x_pix: np.ndarray) -> np.ndarray:
        """Wavelength [Angstrom] at 0-based column position `x_pix`."""
        return self.crval1_aa + self.cdelt1_aa * (np.asarray(x_pix) + 1.0 - self.crpix1)

    @property
    def n_positions(self) -> int:
        """Number of half-pixel positions p = -margin + q/2 of the point-source spectrum."""
        return 2 * (self.nx + 2 * self.margin) + 1


def point_spectra(basis: TemplateBasis, geom: BandGeometry, z: np.ndarray) -> np.ndarray:
    """Point-source count-rate spectra of every template at each z: [nz, ntemplate, n_positions] [e-/s].

    Value q is what a detector column centred at p = -margin + q/2 receives from a
    point source at the direct position whose f_lambda is the template (unit amplitude).
    """
    n_bins = 4 * (geom.nx + 2 * geom.margin + 2)
    edges_x = -geom.margin - 1.0 + np.arange(n_bins + 1) / 4.0
    wave_edges = geom.wavelength(edges_x)
    centres = 0.5 * (wave_edges[1:] + wave_edges[:-1])
    sens = np.interp(centres, geom.sens_wave_aa, geom.sens, left=0.0, right=0.0)
    counts = basis.integrate_observed(wave_edges, z) * sens
    n_pos = geom.n_positions
    out = np.zeros((*counts.shape[:2], n_pos))
    for k, w in enumerate(_TENT8):
        out += w * counts[..., k : k + 2 * n_pos - 1 : 2]
    return out


def smear(spectra: np.ndarray, kernels_x: np.ndarray, geom: BandGeometry) -> np.ndarray:
    """Extracted-spectrum models [nsource, nz, ntemplate, ncolumns] (float32) of sources with along-dispersion kernels `kernels_x` [nsource, ws].

    Column i gets sum_j kernel_x[j] * spectra[..., 2 i + C - 2 j], C = ws - 1 + 2 margin:
    stamp column j sits (j - (ws - 1)/2) pixels from the direct position. Done as one
    strided, dilated 1D convolution (torch, float32), the sources as output channels.
    """
    kernels_x = np.atleast_2d(kernels_x)
    nsrc, ws = kernels_x.shape
    cols = geom.columns
    out = np.zeros((nsrc, *spectra.shape[:2], cols.size), np.float32)
    lit = np.nonzero(kernels_x.max(axis=0) > 0)[0]
    if lit.size == 0:
        return out
    j0, j1 = int(lit[0]), int(lit[-1])
    weights = torch.from_numpy(np.ascontiguousarray(kernels_x[:, j0 : j1 + 1][:, ::-1], dtype=np.float32)).unsqueeze(1)
    start = 2 * int(cols[0]) + ws - 1 + 2 * geom.margin - 2 * j1
    x = torch.from_numpy(np.ascontiguousarray(spectra[..., start:], dtype=np.float32)).view(-1, 1, spectra.shape[-1] - start)
    with torch.inference_mode():
        y = torch.nn.functional.conv1d(x, weights, stride=2, dilation=2)[..., : cols.size]
    out[:] = y.view(*spectra.shape[:2], nsrc, cols.size).permute(2, 0, 1, 3).numpy()
    return out


def trim_kernel(kernel_x: np.ndarray, keep: float = 0.999) -> np.ndarray:
    """`kernel_x` with the faint tails (1 - `keep` of its sum, half each side) set to zero."""
    total = kernel_x.sum()
    if total <= 0:
        return kernel_x
    cum = np.cumsum(kernel_x) / total
    tail = 0.5 * (1.0 - keep)
    return np.where((cum >= tail) & (np.concatenate([[0.0], cum[:-1]]) <= 1.0 - tail), kernel_x, 0.0)


def chi2_grid(models: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative least-squares chi-square at each grid point.

    Parameters
    ----------
    models : array [nz, ntemplate, npix]
        Template models.
    flux, ivar : array [npix]
        Data and inverse variance (0 for unusable pixels).

    Returns
    -------
    chi2 : array [nz]
    coeffs : array [nz, ntemplate]
        Non-negative template amplitudes.
    """
    sw = np.sqrt(ivar)
    a = models * sw
    norms = np.sqrt((a**2).sum(axis=-1))
    used = norms > 0
    a = np.divide(a, norms[..., None], out=np.zeros_like(a), where=used[..., None])
    b = flux * sw
    gram = a @ np.swapaxes(a, -1, -2)
    proj = a @ b
    k = gram.shape[-1]
    # Unused templates (no light in the band at this z) get a unit diagonal and zero
    # projection, so their coefficient is 0; a tiny ridge keeps Cholesky defined for
    # templates that are (nearly) collinear.
    gram[~used] = 0.0
    gram[..., np.arange(k), np.arange(k)] = np.where(used, gram[..., np.arange(k), np.arange(k)] * (1 + 1e-9) + 1e-12, 1.0)
    chol = np.linalg.cholesky(gram)
    rhs = np.linalg.solve(chol, proj[..., None])[..., 0]
    coeffs = np.zeros(proj.shape)
    for i in range(len(gram)):
        coeffs[i] = nnls(chol[i].T, rhs[i])[0]
    bb = float(b @ b)
    chi2 = bb - 2 * (coeffs * proj).sum(-1) + np.einsum("zk,zkl,zl->z", coeffs, gram, coeffs)
    scaled = np.divide(coeffs, norms, out=np.zeros_like(coeffs), where=used)
    return np.maximum(chi2, 0.0), scaled


def smooth(pdf_t: np.ndarray, step: float, floor: float) -> np.ndarray:
    """`pdf_t` on a uniform grid of `step` convolved with a Gaussian of sigma `floor` [ln(1+z)]: an error floor added in quadrature."""
    if floor <= 0:
        return pdf_t
    half = int(np.ceil(5.0 * floor / step))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / floor) ** 2)
    return np.convolve(pdf_t, kernel / kernel.sum(), mode="same")


def grid_likelihood(t_grid: np.ndarray, t_known: np.ndarray, chi_known: np.ndarray, chi2_min: float, scale: float, step: float, floor: float = 0.0) -> np.ndarray:
    """exp(-(chi2 - chi2_min) / (2 scale)) on `t_grid`: linear in t between the points searched
    `t_known`, 0 beyond them, widened by an error floor `floor` (`smooth` with grid step `step`)."""
    like = np.interp(t_grid, t_known, np.exp(-(chi_known - chi2_min) / (2 * scale)), left=0.0, right=0.0)
    return smooth(like, step, floor)


def normalised_cdf(t: np.ndarray, pdf: np.ndarray) -> np.ndarray:
    """The CDF of `pdf` at the nodes `t` (trapezoids between them), normalised to end at 1."""
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(t))])
    return cdf / cdf[-1]


def _local_minima(chi2: np.ndarray) -> np.ndarray:
    """Indices of local minima (edges included), best first."""
    left = np.concatenate([[np.inf], chi2[:-1]])
    right = np.concatenate([chi2[1:], [np.inf]])
    idx = np.nonzero((chi2 <= left) & (chi2 <= right))[0]
    return idx[np.argsort(chi2[idx])]


def _parabola(t: np.ndarray, chi2: np.ndarray, i: int) -> tuple[float, float]:
    """Vertex and curvature (d2chi2/dt2) of the parabola through points i-1, i, i+1."""
    if i <= 0 or i >= len(t) - 1:
        return float(t[i]), 0.0
    c = np.polyfit(t[i - 1 : i + 2] - t[i], chi2[i - 1 : i + 2], 2)
    if c[0] <= 0:
        return float(t[i]), 0.0
    vertex = float(np.clip(-c[1] / (2 * c[0]), t[i - 1] - t[i], t[i + 1] - t[i]))
    return float(t[i]) + vertex, 2.0 * float(c[0])


@dataclass(frozen=True)
class Search:
    """The chi-square of one source at the grid points searched (indices `known`), and its pixels."""

    known: np.ndarray
    chi2: np.ndarray
    npix: int

    def minimum(self, t_grid: np.ndarray) -> tuple[int, float, float]:
        """The best point: its index in `known`, and the vertex t and curvature d2chi2/dt2 of the
        parabola through it and its grid neighbours (the point itself and 0 where they were not searched)."""
        best = int(np.argmin(self.chi2))
        if 0 < best < self.known.size - 1 and self.known[best + 1] - self.known[best - 1] == 2:
            return best, *_parabola(t_grid[self.known], self.chi2, best)
        return best, float(t_grid[self.known[best]]), 0.0


@dataclass(frozen=True)
class RedshiftFit:
    """Result of `fit_redshift`: the best z, the PDF's quantiles and the fit's quality (and the chi-square searched)."""

    z: float
    quantiles: dict
    chi2: float
    delta_chi2: float
    npix: int
    at_limit: bool
    pdf_t: np.ndarray | None = None
    search: Search | None = None
    odds: float = float("nan")


def fine_indices(chi2_coarse: np.ndarray, n: int, config: TemplateFitConfig) -> np.ndarray:
    """Grid indices of the second pass: `fine_window` coarse steps either side of the `n_candidates` best minima of the first pass's chi-square."""
    coarse = coarse_indices(n, config)
    reach = config.fine_window * config.coarse_every
    minima = _local_minima(chi2_coarse)[: config.n_candidates]
    return np.unique(np.concatenate([np.arange(max(coarse[i] - reach, 0), min(coarse[i] + reach, n - 1) + 1) for i in minima]))


def coarse_indices(n: int, config: TemplateFitConfig) -> np.ndarray:
    """Indices of the first pass's grid points in a fine grid of `n` points (both ends included)."""
    return np.unique(np.concatenate([np.arange(0, n, config.coarse_every), [n - 1]]))


def dense_chi2(model_fn: Callable[[np.ndarray], np.ndarray], flux: np.ndarray, ivar: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A chi-square function for `fit_redshift` from template models (`model_fn(indices)` [n, ntemplate, npix]) and one spectrum (`chi2_grid`)."""
    return lambda index: chi2_grid(model_fn(index), flux, ivar)[0]


def fit_redshift(
    chi2_fn: Callable[[np.ndarray], np.ndarray],
    t_grid: np.ndarray,
    npix: int,
    config: TemplateFitConfig,
    coarse_chi2: np.ndarray | None = None,
    with_pdf: bool = False,
) -> RedshiftFit:
    """Fit one spectrum: coarse pass, fine windows, PDF.

    Parameters
    ----------
    chi2_fn : callable(indices) -> chi2 [n]
        The spectrum's chi-square at the grid points `t_grid[indices]`
        (`FileModels.chi2_fn`, or `dense_chi2`).
    t_grid : array
        The fine grid of t = ln(1 + z).
    npix : int
        Pixels with data (ivar > 0): the reduced chi-square's degrees of freedom + 1.
    coarse_chi2 : array, optional
        `chi2_fn(coarse_indices(t_grid.size, config))`, if already at hand.
    with_pdf : bool
        Also return the PDF at every point of `t_grid` (``pdf_t``, density in t, not
        normalised): exp(-(chi2 - chi2_min) / (2 s)) at the points searched, linear in t
        between them (as the quantiles are read), or, where the core is narrower than the grid
        resolves, its Gaussian of width max(sigma, step / 2).
    """
    n = t_grid.size
    coarse = coarse_indices(n, config)
    chi2_c = chi2_fn(coarse) if coarse_chi2 is None else coarse_chi2
    minima = _local_minima(chi2_c)
    half = 2 * config.coarse_every
    fine = fine_indices(chi2_c, n, config)
    chi2_f = chi2_fn(fine)
    chi2 = np.full(n, np.nan)
    chi2[coarse] = chi2_c
    chi2[fine] = chi2_f
    known = np.nonzero(np.isfinite(chi2))[0]
    t_known, chi_known = t_grid[known], chi2[known]
    best, t_best, curv = Search(known, chi_known, npix).minimum(t_grid)
    chi2_min = float(chi_known[best])
    scale = max(1.0, chi2_min / max(npix - 1, 1)) * config.temperature
    sigma = np.sqrt(2.0 * scale / curv) if curv > 0 else np.inf
    # The published levels and Phi(-+1), whose interval gives ZERR (`slitcli.io.redshift`).
    levels = (*QUANTILES.values(), *SIGMA_LEVELS)
    floor = config.error_floor
    narrow = sigma < 2 * config.step
    if narrow:
        # The PDF's core is narrower than the grid resolves: use its Gaussian shape
        # from the chi-square's curvature at the minimum, kept on the searched range.
        sigma = float(np.hypot(sigma, floor))
        quantiles = {q: float(np.expm1(np.clip(t_best + sigma * ndtri(q), t_grid[0], t_grid[-1]))) for q in levels}
        odds = float(ndtr(np.log1p(ODDS_WIDTH) / sigma) - ndtr(np.log1p(-ODDS_WIDTH) / sigma)) if sigma > 0 else 1.0
    elif floor > 0:
        # Widened by the floor: the PDF on the whole grid (linear between the points
        # searched, 0 beyond them), convolved with the floor's Gaussian.
        pdf = grid_likelihood(t_grid, t_known, chi_known, chi2_min, scale, config.step, floor)
        cdf = normalised_cdf(t_grid, pdf)
        quantiles = {q: float(np.expm1(np.interp(q, cdf, t_grid))) for q in levels}
        odds = odds_from_cdf(t_best, t_grid, cdf)
    else:
        cdf = normalised_cdf(t_known, np.exp(-(chi_known - chi2_min) / (2 * scale)))
        quantiles = {q: float(np.expm1(np.interp(q, cdf, t_known))) for q in levels}
        odds = odds_from_cdf(t_best, t_known, cdf)
    # DELTACHI2 as redrock: the next best distinct minimum (more than 0.01 in ln(1 + z) away).
    others = [i for i in minima if abs(t_grid[coarse[i]] - t_best) > 0.01]
    if others:
        near = np.abs(t_known - t_grid[coarse[others[0]]]) <= half * config.step
        delta = float(chi_known[near].min() - chi2_min)
    else:
        delta = float(chi_known.max() - chi2_min)
    at_limit = bool(t_best - t_grid[0] < half * config.step or t_grid[-1] - t_best < half * config.step)
    pdf_t = None
    if with_pdf:
        if narrow:  # sigma includes the floor here
            pdf_t = np.exp(-0.5 * ((t_grid - t_best) / max(sigma, 0.5 * config.step)) ** 2)
        elif floor > 0:
            pdf_t = pdf
        else:
            # Linear between the points searched, as the quantiles' CDF reads it.
            pdf_t = np.interp(t_grid, t_known, np.exp(-(chi_known - chi2_min) / (2 * scale)))
    fit = RedshiftFit(float(np.expm1(t_best)), quantiles, chi2_min, delta, npix, at_limit, pdf_t, Search(known, chi_known, npix), odds)
    return shift_fit(fit, config.offset, t_grid) if config.offset else fit


def under_prior(fits: list[RedshiftFit], prior_t: np.ndarray, t_grid: np.ndarray, config: TemplateFitConfig, snr=None) -> list[RedshiftFit]:
    """The fits' posteriors under the prior density `prior_t` (in t on `t_grid`; `config.nz_prior`), with the temperature, floor and offset of `config` (per source by its SNR_GI `snr` where `config` has them per bin).

    Z is the chi-square minimum of the basin holding the posterior's mode, the quantiles
    and ODDS the posterior's (`slitcli.classic.posterior.posterior`, as the hybrid route).
    """
    from slitcli.classic.posterior import posterior  # it builds on this module

    if snr is None and config.per_bin:
        msg = "a template fit calibrated per SNR_GI bin needs each source's SNR_GI"
        raise ValueError(msg)
    temperatures, floors = config.likelihood_scales(np.zeros(len(fits)) if snr is None else snr)
    return [posterior(f.search, prior_t, t_grid, float(t), 2 * config.coarse_every, float(floor), offset=config.offset).fit for f, t, floor in zip(fits, temperatures, floors, strict=True)]


def shift_fit(fit: RedshiftFit, offset: float, t_grid: np.ndarray) -> RedshiftFit:
    """`fit` with its redshift, quantiles and PDF moved by -`offset` in t = ln(1 + z) (the basis's offset, `TemplateFitConfig.offset`).

    The templates are not the galaxies: with the shipped CWW + Kinney basis the chi-square
    minimum of noiseless default mocks lies +0.0008 in ln(1 + z) (0.7 pixel) above the true
    redshift, while the simulator's own SEDs as the basis give 0 to 1e-7 (docs/template.md),
    so the offset is the basis's, fitted on held-out data as photometric-redshift codes fit
    their templates' offsets on spectroscopic samples (`slitcli.classic.posterior.fit_offset`).
    """
    quantiles = {q: float(np.expm1(np.log1p(v) - offset)) for q, v in fit.quantiles.items()}
    pdf_t = None if fit.pdf_t is None else np.interp(t_grid + offset, t_grid, fit.pdf_t, left=0.0, right=0.0)
    return dataclasses.replace(fit, z=float(np.expm1(np.log1p(fit.z) - offset)), quantiles=quantiles, pdf_t=pdf_t)


#: Packed point spectra and their lit ranges of the last two (templates, band geometries, grid, parity): a survey's files share them.
_GRID_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _grid_key(basis: TemplateBasis, geoms: list, t_grid: np.ndarray, parity: int) -> str:
    h = hashlib.sha256(repr((basis.names, parity)).encode())
    for geom in geoms:
        h.update(repr((geom.name, geom.nx, geom.crval1_aa, geom.cdelt1_aa, geom.crpix1, geom.margin)).encode())
        for array in (geom.sens_wave_aa, geom.sens):
            h.update(np.ascontiguousarray(array, np.float64).tobytes())
    h.update(np.ascontiguousarray(t_grid, np.float64).tobytes())
    return h.hexdigest()


def packed_sizes(geoms: list, parity: int) -> list[int]:
    """Length of each band's stretch of the packed axis: its half-pixel positions of `parity`."""
    return [len(range(parity, g.n_positions, 2)) for g in geoms]


def pack_spectra(basis: TemplateBasis, geoms: list, t_grid: np.ndarray, parity: int, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """`point_spectra` of every band on the whole grid, packed for `slitcli.classic.chisq`: [n_grid, n_template, n_packed] (float32), and their `lit_ranges`.

    Only the half-pixel positions of `parity` (those a stamp of width ``ws`` reads:
    parity = (ws - 1) % 2) are kept, and the bands lie end to end along the last axis.
    Computed in blocks to bound memory, and kept for the next file of the same geometry
    (4-5 s per band saved; 85 MB per band held).
    """
    key = _grid_key(basis, geoms, t_grid, parity)
    if key in _GRID_CACHE:
        return _GRID_CACHE[key]
    sizes = packed_sizes(geoms, parity)
    out = np.empty((t_grid.size, len(basis.names), sum(sizes)), np.float32)
    for geom, offset, size in zip(geoms, np.cumsum([0, *sizes[:-1]]), sizes, strict=True):
        for start in range(0, t_grid.size, block):
            out[start : start + block, :, offset : offset + size] = point_spectra(basis, geom, np.expm1(t_grid[start : start + block]))[..., parity::2]
    out.flags.writeable = False
    while len(_GRID_CACHE) >= 2:
        _GRID_CACHE.pop(next(iter(_GRID_CACHE)))
    _GRID_CACHE[key] = out, lit_ranges(out, sizes)
    return _GRID_CACHE[key]


def band_geometry(reader: SampleReader, band: str, stamp_width: int) -> BandGeometry:
    """The `BandGeometry` of `band` in an open sample file."""
    wcs = reader.header(band)
    wave, sens = reader.sensitivity(band)
    cols = sample_band_columns(reader, band)
    # The band's columns, as one contiguous run (what `smear` needs).
    cols = np.arange(reader.shape[1]) if cols is None or cols.size == 0 else np.arange(cols.min(), cols.max() + 1)
    return BandGeometry(band, reader.shape[1], wcs["CRVAL1"], wcs["CDELT1"], wcs["CRPIX1"], wave, sens, np.asarray(cols), stamp_width // 2 + 2)


def check_template_inputs(paths, bands: tuple[str, ...] = ("GV", "GI")) -> None:
    """Check that every sample file has the bands, WCS, sensitivities and DIRECT stamps the fit needs."""
    for path in paths:
        with SampleReader(path, bands) as reader:
            reader.direct(0, 1)
            for band in bands:
                reader.header(band)
                reader.sensitivity(band)


def catalog_meta(config: TemplateFitConfig) -> dict:
    """Provenance of a template-fit catalogue (keys of at most 8 characters)."""
    return {"METHOD": "template", "TEMPLATE": ",".join(load_templates().names), "ZMIN": config.z_min, "ZMAX": config.z_max, "ZSTEP": config.step, "TMPLTEMP": header_text(config.temperature), "TMPLFLOR": header_text(config.error_floor), "TMPLSNRB": header_text(config.snr_edges) if config.per_bin else "none", "TMPLOFFS": config.offset, "SKYOFFS": config.sky_offset, "TMPLNZA": config.nz_prior[0] if config.nz_prior else 0.0, "TMPLNZ0": config.nz_prior[1] if config.nz_prior else 0.0}


def fit_file(
    path,
    config: TemplateFitConfig,
    bands: tuple[str, ...] = ("GV", "GI"),
    *,
    batch_size: int = 64,
    contamination: str = "ignore",
    progress: Callable[[int, int], None] | None = None,
) -> Table:
    """Template-fit every source of one sample file (`fit_sample`).

    `contamination` ("ignore" or "subtract") is what the reader does with the file's
    ``<BAND>_CONTAM`` cubes (`slitcli.io.samplefile.SampleReader`).
    """
    with SampleReader(path, bands, contamination=contamination) as reader:
        return fit_sample(reader, config, bands, batch_size=batch_size, progress=progress)


@dataclass
class FileModels:
    """A sample's template machinery, made once per file: band geometries and packed point spectra on the fine grid.

    `packed` [n_grid, n_template, n_packed] (float32) are the templates put through each
    band's sensitivity and dispersion (steps 1-2 of the module's model; `pack_spectra`);
    `chi2_fn` and `fit_chunk` add a source's own smearing (step 3) and fit
    (`slitcli.classic.chisq`).
    """

    bands: tuple[str, ...]
    geoms: list
    t_grid: np.ndarray
    packed: np.ndarray
    lit: np.ndarray
    stamp_width: int
    ny: int
    sky_offset: bool = False

    @classmethod
    def from_reader(cls, reader, config: TemplateFitConfig, bands: tuple[str, ...]) -> FileModels:
        basis = load_templates()
        stamp_width = reader.direct(0, 1).shape[-1]
        geoms = [band_geometry(reader, b, stamp_width) for b in bands]
        t_grid = config.grid()
        packed, lit = pack_spectra(basis, geoms, t_grid, (stamp_width - 1) % 2)
        return cls(tuple(bands), geoms, t_grid, packed, lit, stamp_width, reader.shape[0], config.sky_offset)

    @property
    def gi(self) -> int:
        """Index of the band whose SNR is SNR_GI."""
        return self.bands.index("GI") if "GI" in self.bands else len(self.bands) - 1

    def _layout(self, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reversed taps of `kernel` [ws] and, per band, the packed index its column 0 reads with tap 0."""
        lit = np.nonzero(kernel > 0)[0]
        j0, j1 = (int(lit[0]), int(lit[-1])) if lit.size else (0, 0)
        taps = np.ascontiguousarray(kernel[j0 : j1 + 1][::-1], np.float64)
        offsets = np.cumsum([0, *packed_sizes(self.geoms, (self.stamp_width - 1) % 2)[:-1]])
        # Full half-pixel position of column c, tap m: 2 c0 + ws - 1 + 2 margin - 2 j1 + 2 (c + m) (see `smear`).
        bases = [o + (2 * int(g.columns[0]) + self.stamp_width - 1 + 2 * g.margin - 2 * j1) // 2 for o, g in zip(offsets, self.geoms, strict=True)]
        return taps, np.array(bases, np.int64)

    @property
    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        ncols = np.array([g.columns.size for g in self.geoms], np.int64)
        return ncols, np.concatenate([[0], np.cumsum(ncols)[:-1]]).astype(np.int64)

    def chi2_fn(self, kernel: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """The chi-square [n] at grid indices of one source (kernel [ws], extracted flux and ivar), for `fit_redshift`."""
        source = self._chunk(np.atleast_2d(kernel), [(flux, ivar)])
        ncols, offsets = self._columns

        def chi2(index):
            index = np.asarray(index, np.int64)
            return chi2_jobs(self.packed, self.lit, np.zeros(index.size, np.int64), index, source[0], ncols, offsets, *source[1:], self.sky_offset)

        return chi2

    def _chunk(self, kernels: np.ndarray, data: list) -> tuple:
        """A chunk's sources as `slitcli.classic.chisq` takes them: bases, taps, n_taps, flux, ivar."""
        layouts = [self._layout(k) for k in kernels]
        n_taps = np.array([t.size for t, _ in layouts], np.int64)
        taps = np.zeros((len(layouts), n_taps.max()))
        for s, (t, _) in enumerate(layouts):
            taps[s, : t.size] = t
        bases = np.array([b for _, b in layouts], np.int64)
        return bases, taps, n_taps, np.array([f for f, _ in data], np.float64), np.array([v for _, v in data], np.float64)

    def fit_chunk(self, kernels: np.ndarray, data: list, config: TemplateFitConfig, with_pdf: bool = False) -> list:
        """`fit_redshift` of a chunk's sources, both passes run as parallel calls over all of them."""
        bases, taps, n_taps, flux, ivar = self._chunk(kernels, data)
        ncols, offsets = self._columns
        n = self.t_grid.size
        coarse_index = coarse_indices(n, config)
        # Point-major: the chunk's sources read the same point spectra in turn, from cache.
        n_src = len(data)
        jobs = (np.tile(np.arange(n_src), coarse_index.size), np.repeat(coarse_index, n_src))
        coarse = chi2_jobs(self.packed, self.lit, *jobs, bases, ncols, offsets, taps, n_taps, flux, ivar, self.sky_offset).reshape(coarse_index.size, n_src).T
        fine = [fine_indices(c, n, config) for c in coarse]
        sources = np.repeat(np.arange(len(fine)), [f.size for f in fine])
        chi2 = np.split(chi2_jobs(self.packed, self.lit, sources, np.concatenate(fine), bases, ncols, offsets, taps, n_taps, flux, ivar, self.sky_offset), np.cumsum([f.size for f in fine])[:-1])

        def known(index, values):  # the fine pass, already computed, as fit_redshift asks for it
            return lambda asked: values[np.searchsorted(index, asked)]

        return [fit_redshift(known(fine[s], chi2[s]), self.t_grid, int((ivar[s] > 0).sum()), config, coarse[s], with_pdf=with_pdf) for s in range(len(fine))]

    def spectra_of(self, sci, err, dq, stamps):
        """Extracted spectra of a chunk: the along-dispersion kernels [n, ws] and per source (flux, ivar) [n_pixels]."""
        profiles = [direct_profile(stamp, self.ny, 0.5 * (self.ny - 1)) for stamp in stamps]
        kernels = np.array([trim_kernel(k) for _, k in profiles])
        data = []
        for n in range(len(sci)):
            fluxes, ivars = [], []
            for b, g in enumerate(self.geoms):
                flux, flux_err = extract_optimal(sci[n, b], err[n, b], dq[n, b], np.repeat(profiles[n][0][:, None], g.nx, axis=1))
                fluxes.append(flux[g.columns])
                ivars.append(np.where(np.isfinite(flux_err[g.columns]), 1.0 / flux_err[g.columns] ** 2, 0.0))
            data.append((np.concatenate(fluxes), np.concatenate(ivars)))
        return kernels, data


def fit_columns(fits: list[RedshiftFit], sci, dq, snr, config: TemplateFitConfig, t_grid: np.ndarray | None = None) -> dict:
    """Catalogue columns of a chunk's fits (as `slitcli.nn.predict`, plus CHI2, DELTACHI2, NPIXELS; ZPDF with `t_grid`)."""
    z = np.array([f.z for f in fits])
    q = {k: np.array([f.quantiles[v] for f in fits]) for k, v in QUANTILES.items()}
    # ZERR / (1 + Z): half the width in ln(1+z) of the PDF's central 68.27% interval.
    lo, hi = (np.log1p([f.quantiles[v] for f in fits]) for v in SIGMA_LEVELS)
    zerr = 0.5 * (hi - lo) * (1.0 + z)
    delta = np.array([f.delta_chi2 for f in fits])
    zwarn = data_zwarn(sci, dq, snr)
    zwarn[np.array([f.at_limit for f in fits])] |= ZWARN_BITS["Z_FITLIMIT"]
    zwarn[delta < config.min_delta_chi2] |= ZWARN_SMALL_DELTA_CHI2
    columns = {"Z": z, "ZERR": zerr, "ZERR_EPI": np.zeros(len(sci)), "ZERR_ALE": zerr, **q, "ODDS": np.array([f.odds for f in fits]), "SNR_GI": snr, "ZWARN": zwarn}
    columns |= {"CHI2": [f.chi2 for f in fits], "DELTACHI2": delta, "NPIXELS": [f.npix for f in fits]}
    if t_grid is not None:
        z_grid = np.expm1(t_grid)
        columns["ZPDF"] = normalise(z_grid, np.stack([f.pdf_t for f in fits]) / (1.0 + z_grid)).astype(np.float32)
    return columns


def fit_sample(
    reader,
    config: TemplateFitConfig,
    bands: tuple[str, ...] = ("GV", "GI"),
    *,
    batch_size: int = 64,
    pdf: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Table:
    """Template-fit every source of an open sample (a `SampleReader` or a ``FieldSample``); the catalogue rows (columns as `slitcli.nn.predict`).

    ``meta["NBADPIX"]`` counts the bad pixels flagged on reading (`slitcli.io.samplefile.mask_bad_pixels`).
    With `pdf`, a 2D column ``ZPDF``: each source's p(z) on the redshifts of the fit's grid
    (`slitcli.io.zpdf`: density per unit z, unit integral).
    """
    models = FileModels.from_reader(reader, config, bands)
    # A prior, or a temperature per SNR_GI bin: each fit's PDF is its posterior (flat prior without n(z)).
    as_posterior = config.nz_prior is not None or config.per_bin
    prior_t = None if not as_posterior else nz_prior_t(models.t_grid, *config.nz_prior) if config.nz_prior else np.ones_like(models.t_grid)
    search_config = dataclasses.replace(config, temperature=1.0, error_floor=0.0, snr_edges=()) if config.per_bin else config
    sources = reader.sources()
    rows = []
    for start, sci, err, dq in reader.iter_chunks(batch_size):
        snr = data_snr(sci, err, dq, models.gi, models.geoms[models.gi].columns)
        kernels, data = models.spectra_of(sci, err, dq, reader.direct(start, start + len(sci)))
        fits = models.fit_chunk(kernels, data, search_config, with_pdf=pdf and not as_posterior)
        if as_posterior:
            fits = under_prior(fits, prior_t, models.t_grid, config, snr)
        columns = fit_columns(fits, sci, dq, snr, config, models.t_grid if pdf else None)
        rows.append(Table({**source_identity(sources, start, len(sci)), **columns}))
        if progress:
            progress(start + len(sci), reader.n)
    table = vstack(rows)  # SampleReader refuses a file without sources
    # Pixels with non-finite SCI or ERR <= 0 / non-finite, flagged DO_NOT_USE and neutralised on reading.
    table.meta["NBADPIX"] = reader.bad_pixels
    return table
