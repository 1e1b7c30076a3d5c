"""The template likelihood as a redshift PDF, times a prior, and the temperature that calibrates it.

The template fit's chi-square at the grid points searched (`slitcli.classic.template_fit.Search`)
gives a likelihood exp(-(chi2 - chi2_min) / (2 s T)) in t = ln(1 + z), s = max(1, reduced
chi2_min); times a prior density on the grid (flat for the template route, the CNN's for
the hybrid route, `slitcli.hybrid`) it is a posterior. Neither the chi-square's s nor a
network's prior knows how far the templates are from real galaxies, so the temperature T
is fitted on held-out data: the one whose posteriors' central 68% and 95% intervals hold the
true redshift as often as they claim (`fit_temperature`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slitcli.classic.template_fit import (
    FileModels,
    RedshiftFit,
    Search,
    TemplateFitConfig,
    _local_minima,
    _parabola,
    coarse_indices,
    fit_redshift,
)
from slitcli.errors import InputError
from slitcli.extract import data_snr
from slitcli.io.redshift import QUANTILES, SIGMA_LEVELS, odds_from_cdf

__all__ = ["PosteriorFit", "posterior", "coverage", "fit_temperature", "TemperatureFit", "calibrate_temperature", "calibrate_template"]


def _likelihood(t_grid, t_known, chi_known, chi2_min, scale, t_best, sigma, step) -> np.ndarray:
    """The likelihood on the grid: linear in t between the points searched, or, where its core is
    narrower than the grid resolves, its Gaussian of width max(sigma, step / 2) (as the template route)."""
    if sigma < 2 * step:
        return np.exp(-0.5 * ((t_grid - t_best) / max(sigma, 0.5 * step)) ** 2)
    like = np.interp(t_grid, t_known, np.exp(-(chi_known - chi2_min) / (2 * scale)), left=0.0, right=0.0)
    return like


@dataclass(frozen=True)
class PosteriorFit:
    """`RedshiftFit` of the posterior, with the template's best redshift and the prior there."""

    fit: RedshiftFit
    z_template: float
    agreement: float
    n_searched: int


def posterior(search: Search, prior_t: np.ndarray, t_grid: np.ndarray, temperature: float = 1.0, half: int = 16) -> PosteriorFit:
    """The posterior of one source from its chi-square `search` and prior `prior_t` (density in t on `t_grid`).

    The likelihood's scale is s = max(1, reduced chi2_min) x `temperature`; `half` grid
    steps from an end of the grid, the mode sets Z_FITLIMIT.
    """
    n = t_grid.size
    step = float(t_grid[1] - t_grid[0])
    known, chi_known = search.known, search.chi2
    t_known = t_grid[known]
    ib = int(np.argmin(chi_known))
    chi2_min = float(chi_known[ib])
    scale = max(1.0, chi2_min / max(search.npix - 1, 1)) * temperature
    neighbours = 0 < ib < known.size - 1 and known[ib + 1] - known[ib - 1] == 2
    t_like, curv = _parabola(t_known, chi_known, ib) if neighbours else (float(t_known[ib]), 0.0)
    sigma = np.sqrt(2.0 * scale / curv) if curv > 0 else np.inf
    like = _likelihood(t_grid, t_known, chi_known, chi2_min, scale, t_like, sigma, step)
    like[: known[0]] = 0.0
    like[known[-1] + 1 :] = 0.0
    post = prior_t * like
    if not np.any(post > 0):  # the likelihood's core lies where the prior is numerically 0: trust the data
        post = like
    post = post / np.trapezoid(post, t_grid)
    k = int(np.argmax(post))
    t_mode = float(t_grid[k])
    if 0 < k < n - 1 and np.all(post[k - 1 : k + 2] > 0):
        lp = np.log(post[k - 1 : k + 2])
        c = lp[0] - 2 * lp[1] + lp[2]
        if c < 0:
            t_mode += float(np.clip(0.5 * (lp[0] - lp[2]) / c, -1.0, 1.0)) * step
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (post[1:] + post[:-1]) * np.diff(t_grid))])
    cdf /= cdf[-1]
    levels = (*QUANTILES.values(), *SIGMA_LEVELS)
    quantiles = {q: float(np.expm1(np.interp(q, cdf, t_grid))) for q in levels}
    # Z: the chi-square minimum of the basin the posterior chose, when it lies within the
    # posterior's 68% half-width of the mode. The prior picks the basin (which line is
    # which); within it the template fit places the line more finely than the product,
    # which the broader prior would pull towards the CNN's estimate. Where no chi-square
    # minimum is that close (the prior dominates: faint sources), Z is the mode.
    minima = _local_minima(chi_known)
    nearest = int(minima[np.argmin(np.abs(t_known[minima] - t_mode))])
    basin_ok = 0 < nearest < known.size - 1 and known[nearest + 1] - known[nearest - 1] == 2
    t_basin = _parabola(t_known, chi_known, nearest)[0] if basin_ok else float(t_known[nearest])
    half_width = 0.5 * (np.log1p(quantiles[SIGMA_LEVELS[1]]) - np.log1p(quantiles[SIGMA_LEVELS[0]]))
    t_z = t_basin if abs(t_basin - t_mode) <= half_width else t_mode
    others = [i for i in minima if abs(t_known[i] - t_like) > 0.01]
    delta = float(chi_known[others[0]] - chi2_min) if others else float(chi_known.max() - chi2_min)
    at_limit = bool(t_z - t_grid[0] < half * step or t_grid[-1] - t_z < half * step)
    fit = RedshiftFit(float(np.expm1(t_z)), quantiles, chi2_min, delta, search.npix, at_limit, post, search, odds_from_cdf(t_z, t_grid, cdf))
    agreement = float(np.interp(t_like, t_grid, prior_t) / prior_t.max()) if prior_t.max() > 0 else 0.0
    return PosteriorFit(fit, float(np.expm1(t_like)), agreement, int(known.size))


def coverage(searches, priors, t_grid: np.ndarray, t_true: np.ndarray, temperature: float, levels=(0.6827, 0.9545)) -> np.ndarray:
    """Fraction of sources whose true t lies in the posterior's central interval at each of `levels`."""
    inside = np.zeros((len(searches), len(levels)), bool)
    for n, (found, prior) in enumerate(zip(searches, priors, strict=True)):
        post = posterior(found, prior, t_grid, temperature).fit.pdf_t
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (post[1:] + post[:-1]) * np.diff(t_grid))])
        cdf /= cdf[-1]
        u = np.interp(t_true[n], t_grid, cdf)  # the PIT of the truth
        inside[n] = np.abs(u - 0.5) <= 0.5 * np.asarray(levels)
    return inside.mean(axis=0)


def fit_temperature(searches, priors, t_grid: np.ndarray, t_true: np.ndarray, temperatures=None, levels=(0.6827, 0.9545)) -> tuple[float, np.ndarray]:
    """The likelihood temperature whose posteriors cover the truth as often as they claim.

    Minimises the largest |coverage - level| over `levels` on the grid `temperatures`
    (default 0.5 x 2^(k/4), 0.5 to 64); returns it and its coverages.
    """
    temperatures = 0.5 * 2.0 ** (np.arange(29) / 4) if temperatures is None else np.asarray(temperatures, float)
    results = [coverage(searches, priors, t_grid, t_true, float(T), levels) for T in temperatures]
    worst = [np.max(np.abs(c - np.asarray(levels))) for c in results]
    k = int(np.argmin(worst))
    return float(temperatures[k]), results[k]




@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and the 68%/95% coverage before (T = 1) and after, on `n` sources."""

    temperature: float
    coverage_before: tuple[float, float]
    coverage_after: tuple[float, float]
    n: int


def calibrate_temperature(searches, priors, t_grid, t_true) -> TemperatureFit:
    """`fit_temperature` with the coverage at T = 1 for comparison."""
    if len(searches) < 10:
        msg = f"{len(searches)} sources with SNR_GI above the cut; a temperature needs at least 10"
        raise InputError(msg)
    before = coverage(searches, priors, t_grid, t_true, 1.0)
    temperature, after = fit_temperature(searches, priors, t_grid, t_true)
    return TemperatureFit(temperature, tuple(float(c) for c in before), tuple(float(c) for c in after), len(searches))


def true_t(reader) -> np.ndarray:
    """ln(1 + Z_TRUE) of an open sample's sources; `InputError` if it has none."""
    sources = reader.sources()
    if sources is None or "Z_TRUE" not in sources.colnames:
        msg = f"{getattr(reader, 'path', 'the sample')}: HDU SOURCES has no Z_TRUE column; calibration needs the true redshifts"
        raise InputError(msg)
    return np.log1p(np.asarray(sources["Z_TRUE"], float))


def calibrate_template(reader, config: TemplateFitConfig | None = None, bands=("GV", "GI"), *, min_snr: float = 1.0, batch_size: int = 16, progress=None) -> TemperatureFit:
    """Fit the template route's temperature on a held-out sample with Z_TRUE (sources with SNR_GI >= `min_snr`).

    The template route's PDF is its likelihood under a flat prior in t, so the fit is
    `fit_temperature` with flat priors over the chi-square the fit searched.
    """
    config = config or TemplateFitConfig()
    t_all = true_t(reader)
    models = FileModels.from_reader(reader, config, bands)
    coarse_index = coarse_indices(models.t_grid.size, config)
    searches, keep = [], []
    for start, sci, err, dq in reader.iter_chunks(batch_size):
        snr = data_snr(sci, err, dq, models.gi, models.geoms[models.gi].columns)
        kernels, data = models.spectra_of(sci, err, dq, reader.direct(start, start + len(sci)))
        coarse = models.coarse_chi2(coarse_index, kernels, data)
        for n, (flux, ivar) in enumerate(data):
            if snr[n] >= min_snr:
                searches.append(fit_redshift(models.chi2_fn(kernels[n], flux, ivar), models.t_grid, int((ivar > 0).sum()), config, coarse[n]).search)
                keep.append(start + n)
        if progress:
            progress(start + len(sci), reader.n)
    flat = [np.ones_like(models.t_grid)] * len(searches)
    return calibrate_temperature(searches, flat, models.t_grid, t_all[keep])
