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

import dataclasses
from dataclasses import dataclass

import numpy as np

from slitcli.classic.nz_prior import fit_nz, nz_prior_t
from slitcli.classic.template_fit import (
    FileModels,
    RedshiftFit,
    Search,
    TemplateFitConfig,
    _local_minima,
    _parabola,
    grid_likelihood,
    normalised_cdf,
)
from slitcli.errors import InputError
from slitcli.extract import data_snr
from slitcli.io.redshift import QUANTILES, SIGMA_LEVELS, odds_from_cdf
from slitcli.snr_bins import SNR_EDGES, bin_groups, per_source

__all__ = ["PosteriorFit", "posterior", "posterior_density", "coverage", "MIN_MODE_ODDS", "FAINT_SNR", "FLOORS", "TEMPERATURES", "MIN_BIN_SOURCES", "fit_temperature_by_snr", "fit_temperature", "fit_offset", "OFFSET_SNR", "OFFSET_WINDOW", "TemperatureFit", "calibrate_temperature", "calibrate_template"]


def _likelihood(t_grid, t_known, chi_known, chi2_min, scale, t_best, sigma, step, floor) -> np.ndarray:
    """The likelihood on the grid (`grid_likelihood`: linear in t between the points searched, 0
    outside them, widened by the error floor), or, where its core is narrower than the grid
    resolves, its Gaussian of width max(sigma, step / 2) and the floor (as the template route)."""
    if sigma < 2 * step:
        return np.exp(-0.5 * ((t_grid - t_best) / np.hypot(max(sigma, 0.5 * step), floor)) ** 2)
    return grid_likelihood(t_grid, t_known, chi_known, chi2_min, scale, step, floor)


@dataclass(frozen=True)
class PosteriorFit:
    """`RedshiftFit` of the posterior, with the template's best redshift and the prior there."""

    fit: RedshiftFit
    z_template: float
    agreement: float
    n_searched: int


#: For a source fainter than FAINT_SNR (SNR_GI), the hybrid's Z is taken about the posterior's
#: mode where its ODDS there is at least MIN_MODE_ODDS, else about its median.
MIN_MODE_ODDS = 0.5
FAINT_SNR = 3.0


def posterior_density(search: Search, prior_t: np.ndarray, t_grid: np.ndarray, temperature: float = 1.0, floor: float = 0.0, mismatch: float = 0.0, offset: float = 0.0) -> np.ndarray:
    """The normalised posterior density in t on `t_grid` of `posterior` (its arguments), without the catalogue's summaries."""
    step = float(t_grid[1] - t_grid[0])
    ib, t_like, curv = search.minimum(t_grid)
    chi2_min = float(search.chi2[ib])
    scale = max(1.0, chi2_min / max(search.npix - 1, 1)) * temperature
    sigma = np.sqrt(2.0 * scale / curv) if curv > 0 else np.inf
    like = _likelihood(t_grid, t_grid[search.known] - offset, search.chi2, chi2_min, scale, t_like - offset, sigma, step, floor)
    if mismatch > 0:
        like = (1.0 - mismatch) * like / like.max() + mismatch
    post = prior_t * like
    if not np.any(post > 0):  # the likelihood's core lies where the prior is numerically 0: trust the data
        post = like
    return post / np.trapezoid(post, t_grid)


def posterior(search: Search, prior_t: np.ndarray, t_grid: np.ndarray, temperature: float = 1.0, half: int = 16, floor: float = 0.0, mismatch: float = 0.0, faint: bool = False, offset: float = 0.0) -> PosteriorFit:
    """The posterior of one source from its chi-square `search` and prior `prior_t` (density in t on `t_grid`).

    The likelihood's scale is s = max(1, reduced chi2_min) x `temperature`, and it is
    widened by an error floor `floor` in t added in quadrature (`smooth`); `half` grid steps
    from an end of the grid, the mode sets Z_FITLIMIT. With `mismatch` > 0 the likelihood
    is (1 - mismatch) L / max(L) + mismatch: the chance that the templates do not describe
    the source, for which the data say nothing about z (the hybrid route's; under a flat
    prior it would spread mass over the whole grid). `faint` (SNR_GI < `FAINT_SNR`): where
    the mode holds under `MIN_MODE_ODDS` of the mass, Z is taken about the median.
    `offset`: the template basis's redshift offset (`TemplateFitConfig.offset`): the
    chi-square computed at grid point t is the likelihood of ln(1 + z) = t - offset.
    """
    n = t_grid.size
    step = float(t_grid[1] - t_grid[0])
    known, chi_known = search.known, search.chi2
    t_known = t_grid[known] - offset
    ib, t_like, _curv = search.minimum(t_grid)
    t_like -= offset
    chi2_min = float(chi_known[ib])
    post = posterior_density(search, prior_t, t_grid, temperature, floor, mismatch, offset)
    k = int(np.argmax(post))
    t_mode = float(t_grid[k])
    if 0 < k < n - 1 and np.all(post[k - 1 : k + 2] > 0):
        lp = np.log(post[k - 1 : k + 2])
        c = lp[0] - 2 * lp[1] + lp[2]
        if c < 0:
            t_mode += float(np.clip(0.5 * (lp[0] - lp[2]) / c, -1.0, 1.0)) * step
    cdf = normalised_cdf(t_grid, post)
    levels = (*QUANTILES.values(), *SIGMA_LEVELS)
    quantiles = {q: float(np.expm1(np.interp(q, cdf, t_grid))) for q in levels}
    # Z: the chi-square minimum of the basin the posterior chose, when it lies within the
    # posterior's 68% half-width of the mode. The prior picks the basin (which line is
    # which); within it the template fit places the line more finely than the product,
    # which the broader prior would pull towards the CNN's estimate. Where no chi-square
    # minimum is that close (the prior dominates: faint sources), Z is the mode. For a faint
    # source whose mode holds under MIN_MODE_ODDS of the mass within +-0.02 (1 + z) (a
    # narrow spike of its noisy chi-square, away from the bulk), the same is done about the
    # median. Not for bright ones: there a narrow spike is a line, and a posterior split
    # between the routes would put the median between them.
    minima = _local_minima(chi_known)
    half_width = 0.5 * (np.log1p(quantiles[SIGMA_LEVELS[1]]) - np.log1p(quantiles[SIGMA_LEVELS[0]]))

    def basin_near(t_centre: float) -> float:
        nearest = int(minima[np.argmin(np.abs(t_known[minima] - t_centre))])
        basin_ok = 0 < nearest < known.size - 1 and known[nearest + 1] - known[nearest - 1] == 2
        t_basin = _parabola(t_known, chi_known, nearest)[0] if basin_ok else float(t_known[nearest])
        return t_basin if abs(t_basin - t_centre) <= half_width else t_centre

    t_z = basin_near(t_mode)
    if faint and odds_from_cdf(t_z, t_grid, cdf) < MIN_MODE_ODDS:
        t_z = basin_near(float(np.interp(0.5, cdf, t_grid)))
    others = [i for i in minima if abs(t_known[i] - t_like) > 0.01]
    delta = float(chi_known[others[0]] - chi2_min) if others else float(chi_known.max() - chi2_min)
    at_limit = bool(t_z - t_grid[0] < half * step or t_grid[-1] - t_z < half * step)
    fit = RedshiftFit(float(np.expm1(t_z)), quantiles, chi2_min, delta, search.npix, at_limit, post, search, odds_from_cdf(t_z, t_grid, cdf))
    agreement = float(np.interp(t_like, t_grid, prior_t) / prior_t.max()) if prior_t.max() > 0 else 0.0
    return PosteriorFit(fit, float(np.expm1(t_like)), agreement, int(known.size))


def _inside(searches, priors, t_grid, t_true, temperature, floor, levels, mismatch=0.0, scales=None, offset=0.0) -> np.ndarray:
    """[n_source, n_level]: whether each true t lies in its posterior's central interval at each level (temperature x `scales[n]`; `floor` one or one per source)."""
    inside = np.zeros((len(searches), len(levels)), bool)
    scales = np.ones(len(searches)) if scales is None else np.asarray(scales, float)
    floors = np.broadcast_to(np.asarray(floor, float), (len(searches),))
    for n, (found, prior) in enumerate(zip(searches, priors, strict=True)):
        post = posterior_density(found, prior, t_grid, temperature * scales[n], float(floors[n]), mismatch, offset)
        u = np.interp(t_true[n], t_grid, normalised_cdf(t_grid, post))  # the PIT of the truth
        inside[n] = np.abs(u - 0.5) <= 0.5 * np.asarray(levels)
    return inside


def coverage(searches, priors, t_grid: np.ndarray, t_true: np.ndarray, temperature: float, levels=(0.6827, 0.9545), floor: float = 0.0, mismatch: float = 0.0) -> np.ndarray:
    """Fraction of sources whose true t lies in the posterior's central interval at each of `levels`."""
    return _inside(searches, priors, t_grid, t_true, temperature, floor, levels, mismatch).mean(axis=0)


#: The central intervals' levels that calibration holds: 68.27% and 95.45%.
LEVELS = np.array([0.6827, 0.9545])
#: Error floors [ln(1+z)] that `fit_temperature` tries: 0, then 0.25 to 8 times a 0.0004 grid step.
FLOORS = (0.0, 0.0001, 0.0002, 0.0003, 0.0004, 0.0006, 0.0008, 0.0012, 0.0016, 0.0024, 0.0032)
#: Likelihood temperatures that `fit_temperature` tries: 0.5 x 2^(k/4), 0.5 to 64 (the hybrid's
#: faintest sources want the likelihood almost flat: the CNN's prior has seen the same data).
TEMPERATURES = tuple(0.5 * 2.0 ** (np.arange(29) / 4))


def fit_temperature(searches, priors, t_grid: np.ndarray, t_true: np.ndarray, temperatures=TEMPERATURES, levels=(0.6827, 0.9545), groups=None, floors=FLOORS, mismatch: float = 0.0, scales=None, offset: float = 0.0) -> tuple[float, float, np.ndarray]:
    """The likelihood temperature and error floor whose posteriors cover the truth as often as they claim.

    Minimises the largest |coverage - level| over `levels` and over the source subsets
    `groups` (boolean masks; default all sources; for example SNR_GI >= 1, >= 3 and >= 5:
    the temperature widens every source's likelihood in proportion, the floor mostly the
    bright ones' narrow cores, so both are needed to cover faint and bright sources alike)
    over every pair of `temperatures` and `floors` (source n's temperature is T x
    `scales[n]`, default 1), the likelihood moved by `offset` (`posterior`). Returns T, the
    floor and the coverages of all sources.
    """
    groups = [np.ones(len(searches), bool)] if groups is None else [np.asarray(g, bool) for g in groups]
    best = None
    for temperature in temperatures:
        for floor in floors:
            inside = _inside(searches, priors, t_grid, t_true, float(temperature), float(floor), levels, mismatch, scales, offset)
            worst = max(float(np.max(np.abs(inside[g].mean(axis=0) - np.asarray(levels)))) for g in groups if g.any())
            if best is None or worst < best[0]:
                best = (worst, float(temperature), float(floor), inside.mean(axis=0))
    return best[1], best[2], best[3]


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature, error floor and offset [ln(1+z)] and the 68%/95% coverage before (T = 1, no floor, no offset) and after, on `n` sources.

    With `snr_edges` (a fit by SNR_GI bin, `slitcli.snr_bins`), `temperature` and
    `error_floor` are tuples, one value per bin, and `worst_miss` is the largest
    |coverage - level| of any bin (grouped as fitted) after the fit.
    """

    temperature: float | tuple[float, ...]
    coverage_before: tuple[float, float]
    coverage_after: tuple[float, float]
    n: int
    error_floor: float | tuple[float, ...] = 0.0
    offset: float = 0.0
    nz_prior: tuple[float, float] | None = None
    snr_edges: tuple[float, ...] = ()
    worst_miss: float = float("nan")

    def describe(self) -> str:
        """The temperature and floor in words, per SNR_GI bin where there are bins."""
        if not self.snr_edges:
            return f"temperature {self.temperature:.3g}, error floor {self.error_floor:g}"
        edges = self.snr_edges
        bins = [f"SNR_GI < {edges[1]:g}", *(f"SNR_GI {lo:g}-{hi:g}" for lo, hi in zip(edges[1:-1], edges[2:], strict=True)), f"SNR_GI {edges[-1]:g}+"]
        return "temperature, error floor " + "; ".join(f"{b}: {t:.3g}, {f:g}" for b, t, f in zip(bins, self.temperature, self.error_floor, strict=True))


#: `fit_offset` uses the sources with SNR_GI >= OFFSET_SNR whose chi-square minimum lies within
#: OFFSET_WINDOW in ln(1 + z) of the truth (catastrophic failures say nothing of the offset).
OFFSET_SNR = 5.0
OFFSET_WINDOW = 0.01


def fit_offset(searches, t_grid: np.ndarray, t_true: np.ndarray, snr) -> float:
    """The template basis's redshift offset [ln(1+z)]: the median of (chi-square minimum - true t) over bright sources (`OFFSET_SNR`, `OFFSET_WINDOW`); 0 with fewer than 10 of them.

    With the shipped CWW + Kinney basis the minimum of noiseless default mocks lies +0.0008
    above the truth (the simulator's own SEDs as the basis give 0 to 1e-7): the templates'
    features are not the galaxies', a bias as large as the scatter at SNR_GI >= 10 that no
    temperature or floor can absorb (docs/template.md).
    """
    t_min = np.array([found.minimum(t_grid)[1] for found in searches])
    residual = t_min - np.asarray(t_true, float)
    use = (np.asarray(snr, float) >= OFFSET_SNR) & (np.abs(residual) < OFFSET_WINDOW)
    return float(np.median(residual[use])) if use.sum() >= 10 else 0.0


#: A SNR_GI bin with fewer held-out sources shares its neighbours' temperature and floor
#: (`fit_temperature_by_snr`): at 250 sources a 68% coverage is known to +-0.03 and a 95%
#: one to +-0.014 (one binomial sigma), as closely as calibration is asked to hold them.
#: With 100 (until 2026-12-06) a field calibration of 748 sources fitted its three bright
#: bins on 64-107 sources each, and its 95% intervals held 0.94 there but 0.91 on other fields.
MIN_BIN_SOURCES = 250


def fit_temperature_by_snr(searches, priors, t_grid: np.ndarray, t_true: np.ndarray, snr, snr_edges=SNR_EDGES, min_sources: int = MIN_BIN_SOURCES, mismatch: float = 0.0, scales=None, offset: float = 0.0, temperatures=TEMPERATURES, floors=FLOORS) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray]:
    """`fit_temperature` per SNR_GI bin of `snr_edges` (bins grouped by `slitcli.snr_bins.group_bins`).

    One temperature for all sources over-covers the bright end and under-covers the faint
    one (docs/template.md, "Calibration by SNR"), so each bin gets its own. Returns the
    temperatures and floors, one per bin, and with them whether each source's truth lies in
    its 68% and 95% intervals ([n_source, 2]).
    """
    snr = np.asarray(snr, float)
    bin_t, bin_floor = [0.0] * len(snr_edges), [0.0] * len(snr_edges)
    scales = np.ones(len(searches)) if scales is None else np.asarray(scales, float)
    for group, mask in bin_groups(snr_edges, snr, min_sources):
        members = np.nonzero(mask)[0]
        pick = [searches[n] for n in members], [priors[n] for n in members]
        temperature, floor, _ = fit_temperature(*pick, t_grid, np.asarray(t_true)[members], temperatures, floors=floors, mismatch=mismatch, scales=scales[members], offset=offset)
        for k in group:
            bin_t[k], bin_floor[k] = temperature, floor
    inside = _inside(searches, priors, t_grid, t_true, 1.0, per_source(bin_floor, snr_edges, snr), LEVELS, mismatch, scales * per_source(bin_t, snr_edges, snr), offset)
    return tuple(bin_t), tuple(bin_floor), inside


def calibrate_temperature(searches, priors, t_grid, t_true, groups=None, mismatch: float = 0.0, scales=None, offset: float = 0.0, snr=None) -> TemperatureFit:
    """`fit_temperature` (with the likelihood moved by `offset`; with `snr`, `fit_temperature_by_snr` instead) and the coverage at T = 1, no floor and no offset for comparison."""
    if len(searches) < 10:
        msg = f"{len(searches)} sources with SNR_GI above the cut; a temperature needs at least 10"
        raise InputError(msg)
    before = _inside(searches, priors, t_grid, t_true, 1.0, 0.0, LEVELS, mismatch, scales).mean(axis=0)
    if snr is not None:
        temperature, floor, inside = fit_temperature_by_snr(searches, priors, t_grid, t_true, snr, mismatch=mismatch, scales=scales, offset=offset)
        worst = max(float(np.max(np.abs(inside[mask].mean(axis=0) - LEVELS))) for _, mask in bin_groups(SNR_EDGES, np.asarray(snr, float), MIN_BIN_SOURCES))
        return TemperatureFit(temperature, tuple(float(c) for c in before), tuple(float(c) for c in inside.mean(axis=0)), len(searches), floor, offset, snr_edges=SNR_EDGES, worst_miss=worst)
    temperature, floor, after = fit_temperature(searches, priors, t_grid, t_true, groups=groups, mismatch=mismatch, scales=scales, offset=offset)
    return TemperatureFit(temperature, tuple(float(c) for c in before), tuple(float(c) for c in after), len(searches), floor, offset)


def true_t(reader) -> np.ndarray:
    """ln(1 + Z_TRUE) of an open sample's sources; `InputError` if it has none."""
    sources = reader.sources()
    if sources is None or "Z_TRUE" not in sources.colnames:
        msg = f"{getattr(reader, 'path', 'the sample')}: HDU SOURCES has no Z_TRUE column; calibration needs the true redshifts"
        raise InputError(msg)
    return np.log1p(np.asarray(sources["Z_TRUE"], float))


def calibrate_template(reader, config: TemplateFitConfig | None = None, bands=("GV", "GI"), *, min_snr: float = 1.0, batch_size: int = 64, progress=None, fixed: TemplateFitConfig | None = None) -> TemperatureFit:
    """Fit the template route's n(z) prior, offset, temperature and error floor on a held-out sample with Z_TRUE (sources with SNR_GI >= `min_snr`).

    The n(z) prior (`slitcli.classic.nz_prior.fit_nz`, to those sources' true redshifts)
    and the offset (`fit_offset`) first; then, with both applied, the temperature and floor
    of the template route's posteriors per SNR_GI bin (`fit_temperature_by_snr`: one pair
    for all sources under-covered the brightest, 68% coverage 0.62 at SNR_GI >= 10 on the
    routes study's default sample). With `fixed` (a config holding the card's n(z) prior and
    offset: a second calibration, on cutouts of another kind), only T and the floor are fitted.
    """
    config = config or TemplateFitConfig()
    t_all = true_t(reader)
    models = FileModels.from_reader(reader, config, bands)
    searches, keep, snrs = [], [], []
    for start, sci, err, dq in reader.iter_chunks(batch_size):
        snr = data_snr(sci, err, dq, models.gi, models.geoms[models.gi].columns)
        kernels, data = models.spectra_of(sci, err, dq, reader.direct(start, start + len(sci)))
        for n, fit in enumerate(models.fit_chunk(kernels, data, config)):
            if snr[n] >= min_snr:
                searches.append(fit.search)
                keep.append(start + n)
                snrs.append(snr[n])
        if progress:
            progress(start + len(sci), reader.n)
    nz = fit_nz(np.expm1(t_all[keep])) if fixed is None else fixed.nz_prior
    priors = [nz_prior_t(models.t_grid, *nz) if nz else np.ones_like(models.t_grid)] * len(searches)
    offset = fit_offset(searches, models.t_grid, t_all[keep], snrs) if fixed is None else fixed.offset
    fit = calibrate_temperature(searches, priors, models.t_grid, t_all[keep], offset=offset, snr=snrs)
    return dataclasses.replace(fit, nz_prior=nz)
