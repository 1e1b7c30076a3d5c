"""The hybrid route: the CNN's p(z) as the prior, the template chi-square as the likelihood.

Each route fails where the other holds (docs/results.md): the template fit places lines
to a fraction of a pixel but now and then locks onto a wrong minimum far away; the CNN is
rarely far off but cannot place a line finely. Their product keeps both strengths:

    p(t | data) ~ p_CNN(t) x exp(-(chi2(t) - chi2_min) / (2 s)),   t = ln(1 + z),

with p_CNN the CNN's calibrated predictive density (`slitcli.io.zpdf.predictive_pdf`,
uncensored: no spike at z = 0) and
the likelihood that of the template fit (`slitcli.classic.template_fit`: s = max(1,
reduced chi2_min) times `HybridConfig.temperature`). The chi-square is computed only where
the prior has mass: over the grid points where p_CNN exceeds `prior_floor` of its peak,
widened by `margin_t` on each side, and widened again (up to `max_widen` times) while the
likelihood's best point lies at an edge of that range (the two routes disagree: search
on towards the template's minimum). The template fit's coarse-then-fine search runs
inside the range, so a source costs a fraction of a full template scan.

Z is the chi-square minimum (refined by a parabola) of the basin that holds the posterior's
mode, when it lies within the posterior's 68% half-width of the mode (else the mode): the
prior picks the basin, the template fit places the line within it; the quantiles and
ZERR come from the posterior as for every catalogue
(`slitcli.io.redshift`); ``ZAGREE`` = p_CNN at the template's best redshift over p_CNN's
peak (1: the routes agree; near 0: the template's best fit is one the CNN excludes),
``Z_CNN`` and ``ZERR_CNN`` are the prior's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table, vstack

from slitcli.classic.template_fit import (
    FileModels,
    RedshiftFit,
    TemplateFitConfig,
    _local_minima,
    _parabola,
    chi2_grid,
    fit_columns,
)
from slitcli.errors import ConfigError
from slitcli.extract import data_snr
from slitcli.io.redshift import QUANTILES, SIGMA_LEVELS, source_identity
from slitcli.io.zpdf import predictive_pdf

__all__ = ["HybridConfig", "HybridCalibration", "search_range", "search_chi2", "posterior", "fit_posterior", "iter_searches", "hybrid_sample", "coverage", "fit_temperature", "calibrate_hybrid"]


@dataclass(frozen=True)
class HybridConfig:
    """Settings of the hybrid route.

    Attributes
    ----------
    prior_floor : float
        Grid points where the CNN prior is below this fraction of its peak are not
        searched (1e-3: 3.7 sigma of a Gaussian prior).
    margin_t : float
        Searched beyond those points on each side [ln(1+z)] (safety margin).
    max_widen : int
        Times the range is widened by `margin_t` while the chi-square's best point lies at
        its edge.
    temperature : float
        Multiplies the likelihood's scale s (> 1 widens it; `calibrate` fits it).
    """

    prior_floor: float = 1e-3
    margin_t: float = 0.02
    max_widen: int = 8
    temperature: float = 1.0

    def __post_init__(self):
        if not (0.0 < self.prior_floor < 1.0 and self.margin_t >= 0.0 and self.max_widen >= 0 and self.temperature > 0):
            msg = "the hybrid route needs 0 < prior_floor < 1, margin_t >= 0, max_widen >= 0 and temperature > 0"
            raise ConfigError(msg)


def search_range(prior_t: np.ndarray, t_grid: np.ndarray, config: HybridConfig) -> tuple[int, int]:
    """First and last grid index searched for a prior density `prior_t` on `t_grid`."""
    peak = float(np.max(prior_t))
    if not peak > 0:
        return 0, t_grid.size - 1
    mass = np.nonzero(prior_t >= config.prior_floor * peak)[0]
    lo = int(np.searchsorted(t_grid, t_grid[mass[0]] - config.margin_t))
    hi = int(np.searchsorted(t_grid, t_grid[mass[-1]] + config.margin_t, side="right")) - 1
    return max(lo, 0), min(hi, t_grid.size - 1)


def _likelihood(t_grid, t_known, chi_known, chi2_min, scale, t_best, sigma, step) -> np.ndarray:
    """The likelihood on the grid: linear in t between the points searched, or, where its core is
    narrower than the grid resolves, its Gaussian of width max(sigma, step / 2) (as the template route)."""
    if sigma < 2 * step:
        return np.exp(-0.5 * ((t_grid - t_best) / max(sigma, 0.5 * step)) ** 2)
    like = np.interp(t_grid, t_known, np.exp(-(chi_known - chi2_min) / (2 * scale)), left=0.0, right=0.0)
    return like


@dataclass(frozen=True)
class Search:
    """The chi-square of one source at the grid points searched (indices `known`), and its pixels."""

    known: np.ndarray
    chi2: np.ndarray
    npix: int


def search_chi2(model_fn, t_grid: np.ndarray, flux: np.ndarray, ivar: np.ndarray, prior_t: np.ndarray, fit_config: TemplateFitConfig, config: HybridConfig) -> Search:
    """The template chi-square inside the prior's range (`search_range`), widened while its best point is at an edge.

    `model_fn(indices)` gives the template models at grid points (`FileModels.model_fn`).
    Within the range: the template fit's coarse grid, then fine windows around its
    `n_candidates` best minima.
    """
    n = t_grid.size
    step = float(t_grid[1] - t_grid[0])
    every, half = fit_config.coarse_every, 2 * fit_config.coarse_every
    widen = max(1, int(round(config.margin_t / step)))
    lo, hi = search_range(prior_t, t_grid, config)
    chi2 = np.full(n, np.nan)

    def search(indices):
        todo = indices[np.isnan(chi2[indices])]
        if todo.size:
            chi2[todo] = chi2_grid(model_fn(todo), flux, ivar)[0]

    for k in range(config.max_widen + 1):
        coarse = np.unique(np.concatenate([np.arange(lo, hi + 1, every), [hi]]))
        search(coarse)
        minima = _local_minima(chi2[coarse])
        fine = np.unique(np.concatenate([np.arange(max(coarse[i] - half, lo), min(coarse[i] + half, hi) + 1) for i in minima[: fit_config.n_candidates]]))
        search(fine)
        best = int(np.nanargmin(chi2))
        at_lo, at_hi = best - lo < half and lo > 0, hi - best < half and hi < n - 1
        if not (at_lo or at_hi) or k == config.max_widen:
            break
        lo, hi = (max(lo - widen, 0), hi) if at_lo else (lo, min(hi + widen, n - 1))
    known = np.nonzero(np.isfinite(chi2))[0]
    return Search(known, chi2[known], int((ivar > 0).sum()))


@dataclass(frozen=True)
class HybridFit:
    """`RedshiftFit` of the posterior, with the template's best redshift and the prior there."""

    fit: RedshiftFit
    z_template: float
    agreement: float
    n_searched: int


def posterior(search: Search, prior_t: np.ndarray, t_grid: np.ndarray, temperature: float = 1.0, half: int = 16) -> HybridFit:
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
    fit = RedshiftFit(float(np.expm1(t_z)), quantiles, chi2_min, delta, search.npix, at_limit, post)
    agreement = float(np.interp(t_like, t_grid, prior_t) / prior_t.max()) if prior_t.max() > 0 else 0.0
    return HybridFit(fit, float(np.expm1(t_like)), agreement, int(known.size))


def fit_posterior(model_fn, t_grid, flux, ivar, prior_t, fit_config: TemplateFitConfig, config: HybridConfig) -> HybridFit:
    """`search_chi2`, then `posterior` at the configured temperature."""
    found = search_chi2(model_fn, t_grid, flux, ivar, prior_t, fit_config, config)
    return posterior(found, prior_t, t_grid, config.temperature, 2 * fit_config.coarse_every)


def iter_searches(bundle, reader, predict_config, fit_config: TemplateFitConfig, config: HybridConfig, bands=("GV", "GI"), *, batch_size: int = 16, progress=None):
    """The CNN over the whole sample, then each chunk's chi-square searches inside the priors' ranges.

    Yields ``(start, sci, dq, snr, cnn_rows, prior, searches)`` per chunk: the CNN's rows
    (`slitcli.nn.predict.predict_sample`, with `predict_config`), the priors [n, n_grid]
    (density in t on `fit_config.grid()`) and one `Search` per source.
    """
    from slitcli.nn.predict import predict_sample

    cnn = predict_sample(bundle, reader, predict_config)
    models = FileModels.from_reader(reader, fit_config, bands)
    z_grid = np.expm1(models.t_grid)
    for start, sci, err, dq in reader.iter_chunks(batch_size):
        stop = start + len(sci)
        rows = cnn[start:stop]
        # Density in t: per unit z times dz/dt = 1 + z; uncensored (the catalogue's PDF puts
        # the mass below z = 0 in a spike at z = 0, which would pull the posterior's mode there).
        prior = predictive_pdf(np.asarray(rows["Z"]), np.asarray(rows["ZERR"]), z_grid, bundle.tail_dof, censor=False) * (1.0 + z_grid)
        snr = data_snr(sci, err, dq, models.gi, models.geoms[models.gi].columns)
        kernels, data = models.spectra_of(sci, err, dq, reader.direct(start, stop))
        searches = [search_chi2(models.model_fn(kernels[n]), models.t_grid, flux, ivar, prior[n], fit_config, config) for n, (flux, ivar) in enumerate(data)]
        yield start, sci, dq, snr, rows, prior, searches
        if progress:
            progress(stop, reader.n)


def hybrid_sample(bundle, reader, predict_config, fit_config: TemplateFitConfig, config: HybridConfig, bands=("GV", "GI"), *, batch_size: int = 16, pdf: bool = False, progress=None) -> Table:
    """The hybrid route on an open sample (a `SampleReader` or ``FieldSample``): catalogue rows.

    Columns as the template route, plus ``Z_CNN``, ``ZERR_CNN`` (the prior's), ``ZTEMPL``
    (the chi-square minimum searched), ``ZAGREE`` and ``NSEARCH`` (grid points computed).
    """
    t_grid = fit_config.grid()
    sources = reader.sources()
    rows, bad_pixels = [], 0
    for start, sci, dq, snr, cnn, prior, searches in iter_searches(bundle, reader, predict_config, fit_config, config, bands, batch_size=batch_size, progress=progress):
        bad_pixels = cnn.meta["NBADPIX"]  # of the CNN's pass over the sample (the template's pass reads the same pixels again)
        fits = [posterior(found, prior[n], t_grid, config.temperature, 2 * fit_config.coarse_every) for n, found in enumerate(searches)]
        columns = fit_columns([f.fit for f in fits], sci, dq, snr, fit_config, t_grid if pdf else None)
        columns |= {
            "Z_CNN": np.asarray(cnn["Z"]), "ZERR_CNN": np.asarray(cnn["ZERR"]), "ZTEMPL": [f.z_template for f in fits],
            "ZAGREE": [f.agreement for f in fits], "NSEARCH": [f.n_searched for f in fits],
        }
        rows.append(Table({**source_identity(sources, start, len(sci)), **columns}))
    table = vstack(rows)
    table.meta["NBADPIX"] = bad_pixels
    return table


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
class HybridCalibration:
    """What `calibrate_hybrid` fitted: the temperature and the 68%/95% coverage before (T = 1) and after."""

    temperature: float
    coverage_before: tuple[float, float]
    coverage_after: tuple[float, float]
    n: int


def calibrate_hybrid(bundle, reader, predict_config, fit_config: TemplateFitConfig | None = None, *, min_snr: float = 1.0, progress=None) -> HybridCalibration:
    """Fit the hybrid route's likelihood temperature on a held-out sample with Z_TRUE (`fit_temperature`).

    Uses the sources with SNR_GI >= `min_snr`; writes ``hybrid_temperature`` into
    ``bundle.card["calibration"]`` (re-calibrating the CNN afterwards resets it: the
    hybrid's posterior depends on the CNN's calibration).
    """
    from slitcli.errors import InputError

    fit_config = fit_config or TemplateFitConfig()
    t_grid = fit_config.grid()
    sources = reader.sources()
    if sources is None or "Z_TRUE" not in sources.colnames:
        msg = f"{getattr(reader, 'path', 'the sample')}: HDU SOURCES has no Z_TRUE column; calibration needs the true redshifts"
        raise InputError(msg)
    t_true = np.log1p(np.asarray(sources["Z_TRUE"], float))
    searches, priors, keep = [], [], []
    for start, _sci, _dq, snr, _cnn, prior, found in iter_searches(bundle, reader, predict_config, fit_config, HybridConfig(), tuple(bundle.bands), progress=progress):
        for n, s in enumerate(found):
            if snr[n] >= min_snr:
                searches.append(s)
                priors.append(prior[n])
                keep.append(start + n)
    if len(keep) < 10:
        msg = f"{getattr(reader, 'path', 'the sample')}: {len(keep)} sources with SNR_GI >= {min_snr:g}; the hybrid temperature needs at least 10"
        raise InputError(msg)
    before = coverage(searches, priors, t_grid, t_true[keep], 1.0)
    temperature, after = fit_temperature(searches, priors, t_grid, t_true[keep])
    bundle.card.setdefault("calibration", {})["hybrid_temperature"] = temperature
    return HybridCalibration(temperature, tuple(float(c) for c in before), tuple(float(c) for c in after), len(keep))
