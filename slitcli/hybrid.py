"""The hybrid route: the CNN's p(z) as the prior, the template chi-square as the likelihood.

Each route fails where the other holds (docs/results.md): the template fit places lines
to a fraction of a pixel but now and then locks onto a wrong minimum far away; the CNN is
rarely far off but cannot place a line finely. Their product keeps both strengths:

    p(t | data) ~ p_CNN(t) x exp(-(chi2(t) - chi2_min) / (2 s)),   t = ln(1 + z),

with p_CNN the CNN's calibrated predictive density (`slitcli.io.zpdf.predictive_pdf`,
uncensored: no spike at z = 0) and
the likelihood that of the template fit (`slitcli.classic.template_fit`: s = max(1,
reduced chi2_min) times `HybridConfig.temperature`), plus a flat part of height
`HybridConfig.template_mismatch` (the chance that no template describes the source).
Where the routes disagree beyond their errors (OODSCORE k > 1), the prior's width is
multiplied by k and the temperature by k^2, up to `max_widen_ood` (`widening`). Where
the spectrum runs off the detector (ZWARN ``LITTLE_COVERAGE``), a cutout the network never
saw in training (on such field cutouts its sigma_NMAD was 0.23 at SNR_GI >= 3 against the
template fit's 0.017), the prior is the population's n(z) instead (`population_prior`). The
chi-square is computed only where
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
``Z_CNN`` and ``ZERR_CNN`` are the prior's. A network with a p(z) head (`slitcli.nn.pdf`)
gives its own PDF as the prior, widened by tempering (`_prior`). ``OODSCORE`` (`ood_score`) > 1 sets the
ZWARN bit ``UNLIKE_TRAINING``: the routes disagree beyond the network's error, or its
dropout passes disagree, more than for 96% of held-out sources like its training data.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

import numpy as np
from astropy.table import Table, vstack

from slitcli.classic.nz_prior import nz_prior_t
from slitcli.classic.posterior import FAINT_SNR, MIN_BIN_SOURCES, OFFSET_SNR, TemperatureFit, calibrate_temperature, fit_offset, posterior, true_t
from slitcli.classic.template_fit import FileModels, Search, TemplateFitConfig, _local_minima, fit_columns, normalised_cdf
from slitcli.errors import ConfigError, InputError
from slitcli.extract import data_snr
from slitcli.io.redshift import MAX_LOST_COLUMNS, ZWARN_BITS, lost_columns, odds_from_cdf, source_identity
from slitcli.io.zpdf import predictive_pdf
from slitcli.snr_bins import bin_groups, check_per_bin, per_source

__all__ = ["HybridConfig", "widening", "population_prior", "search_range", "search_chi2", "iter_searches", "hybrid_sample", "ood_parts", "ood_score", "HybridCalibration", "calibrate_hybrid", "point_fit", "POINT_TEMPERATURES", "PRIOR_WIDTHS"]


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
    temperature : float or tuple of float
        Multiplies the likelihood's scale s (> 1 widens it; `calibrate` fits it); a tuple:
        one per SNR_GI bin of `snr_edges`.
    error_floor : float or tuple of float
        Added in quadrature to the likelihood's width [ln(1+z)] (`calibrate` fits it); a
        tuple: one per bin.
    snr_edges : tuple of float
        Lower edges of the SNR_GI bins of a temperature and floor fitted per bin
        (`slitcli.snr_bins`); empty: one of each for all sources.
    point_temperature : float, tuple of (float or None), or None
        The temperature of the posterior that Z is read from (`point_fit`; times the
        widening's square, no floor); None: Z from the calibrated posterior; a tuple: one
        per SNR_GI bin of `snr_edges`, None for the calibrated one. The calibrated
        temperature is chosen for the intervals' coverage; where it is large (the CNN prior
        has already seen the same data) the posterior is almost the prior, and its mode
        picks the chi-square minimum nearest the CNN's estimate rather than the deepest
        one: right for faint sources, whose deepest minimum is often noise, wrong for bright
        ones. `calibrate --hybrid` chooses it per bin by sigma_NMAD.
    template_mismatch : float
        The chance that the templates do not describe the source at all: the likelihood is
        (1 - p) L / max(L) + p (`slitcli.classic.posterior.posterior`), so a template
        minimum deep in the CNN prior's tail takes the posterior only where the data favour
        it by more than 1/p (a galaxy the templates cannot fit still gets the CNN's answer).
        On 1,860 validation sources 1e-3 halved the catastrophic outliers at SNR_GI >= 5
        and >= 10 and left sigma_NMAD as it was (docs/template.md).
    ood_disagreement, ood_epistemic : float
        Thresholds of the out-of-distribution score's two parts (`ood_score`; `calibrate
        --hybrid` fits them; infinite: never flagged).
    max_widen_ood : float
        A source with OODSCORE k > 1 has the prior's width multiplied by min(k, this) and
        the likelihood's temperature by its square (`widening`).
    offset : float
        The template basis's redshift offset [ln(1+z)] (`TemplateFitConfig.offset`;
        `calibrate` fits it): the chi-square at t is the likelihood of t - offset.
    nz_prior : (alpha, z0) or None
        The population's n(z) (the template route's, `slitcli.classic.nz_prior`): the prior
        of a source whose spectrum runs off the detector (ZWARN ``LITTLE_COVERAGE``), which
        the network never saw in training; None: flat (`population_prior`).
    prior_width : float
        Every CNN prior's width is multiplied by this (>= 1; `_prior`). 1 on isolated
        cutouts, whose priors the CNN's calibration made honest; on field cutouts the CNN's
        p(z) is too narrow where a neighbour's residual light is left, and no likelihood
        temperature and floor can widen a faint source's posterior, which is nearly the prior
        (`calibrate --hybrid` on field cutouts fits it with them, `PRIOR_WIDTHS`).
    """

    prior_floor: float = 1e-3
    margin_t: float = 0.02
    max_widen: int = 8
    temperature: float | tuple[float, ...] = 1.0
    error_floor: float | tuple[float, ...] = 0.0
    snr_edges: tuple[float, ...] = ()
    point_temperature: float | tuple[float | None, ...] | None = None
    template_mismatch: float = 1e-3
    ood_disagreement: float = float("inf")
    ood_epistemic: float = float("inf")
    max_widen_ood: float = 10.0
    offset: float = 0.0
    nz_prior: tuple[float, float] | None = None
    prior_width: float = 1.0

    def __post_init__(self):
        temperature, floor = check_per_bin("the hybrid route", self.snr_edges, self.temperature, self.error_floor)
        if not (0.0 < self.prior_floor < 1.0 and self.margin_t >= 0.0 and self.max_widen >= 0 and np.all(temperature > 0)):
            msg = "the hybrid route needs 0 < prior_floor < 1, margin_t >= 0, max_widen >= 0 and temperature > 0"
            raise ConfigError(msg)
        point = self.point_temperature
        values = point if isinstance(point, tuple) else (point,)
        if (isinstance(point, tuple) and len(point) != len(self.snr_edges)) or any(v is not None and not v > 0 for v in values):
            msg = "the hybrid route's point temperature must be None, > 0, or one (None or > 0) per SNR bin"
            raise ConfigError(msg)
        if not (self.ood_disagreement > 0 and self.ood_epistemic > 0 and np.all(floor >= 0) and 0.0 <= self.template_mismatch < 1.0 and self.max_widen_ood >= 1.0 and self.prior_width >= 1.0):
            msg = "the hybrid route's out-of-distribution thresholds must be > 0, its error floor >= 0, 0 <= template_mismatch < 1, max_widen_ood >= 1 and prior_width >= 1"
            raise ConfigError(msg)

    def likelihood_scales(self, snr) -> tuple[np.ndarray, np.ndarray]:
        """Each source's temperature and error floor [ln(1+z)] for its SNR_GI `snr`."""
        return per_source(self.temperature, self.snr_edges, snr), per_source(self.error_floor, self.snr_edges, snr)

    def point_temperatures(self, snr) -> np.ndarray:
        """Each source's `point_temperature` for its SNR_GI `snr`; NaN: Z from the calibrated posterior."""
        point = self.point_temperature
        if isinstance(point, tuple):
            return per_source([np.nan if v is None else v for v in point], self.snr_edges, snr)
        return np.full(np.shape(snr), np.nan if point is None else float(point))


def point_fit(fit, search: Search, prior_t: np.ndarray, t_grid: np.ndarray, temperature: float | None, half: int, mismatch: float, faint: bool, offset: float):
    """`fit` (a calibrated posterior's `RedshiftFit`) with Z read from the posterior at `temperature` instead (None: `fit` as it is).

    The quantiles, PDF and chi-square stay the calibrated posterior's; Z_FITLIMIT and ODDS
    follow the new Z (ODDS: the calibrated PDF's mass within +-0.02 (1 + z) of it).
    """
    if temperature is None:
        return fit
    point = posterior(search, prior_t, t_grid, temperature, half, 0.0, mismatch, faint=faint, offset=offset).fit
    cdf = normalised_cdf(t_grid, fit.pdf_t)
    return dataclasses.replace(fit, z=point.z, at_limit=point.at_limit, odds=odds_from_cdf(float(np.log1p(point.z)), t_grid, cdf))


def ood_parts(z_cnn, zerr_cnn, z_template, zerr_epi) -> tuple[np.ndarray, np.ndarray]:
    """The two signs that a source is unlike the network's training data.

    Returns
    -------
    disagreement : array
        |ln(1 + Z_CNN) - ln(1 + ZTEMPL)| over the CNN's 68% half-width in ln(1 + z),
        ZERR_CNN / (1 + Z_CNN): the routes disagree beyond the network's error.
    spread : array
        ZERR_EPI / (1 + Z_CNN): the Monte Carlo dropout passes disagree (epistemic).
    """
    z_cnn, zerr_cnn, z_template, zerr_epi = (np.asarray(a, float) for a in (z_cnn, zerr_cnn, z_template, zerr_epi))
    disagreement = np.abs(np.log1p(z_cnn) - np.log1p(z_template)) / (zerr_cnn / (1.0 + z_cnn))
    return disagreement, zerr_epi / (1.0 + z_cnn)


def ood_score(z_cnn, zerr_cnn, z_template, zerr_epi, config: HybridConfig) -> np.ndarray:
    """``OODSCORE``: the larger of `ood_parts` over their thresholds; > 1 sets ZWARN ``UNLIKE_TRAINING``.

    Each threshold is the 96th percentile of its part over held-out sources like the
    training data with SNR_GI >= 3 (`calibrate_hybrid`), so about 8% of such sources are
    flagged; on galaxies unlike the training set both parts grow (docs/results.md).
    """
    disagreement, spread = ood_parts(z_cnn, zerr_cnn, z_template, zerr_epi)
    return np.maximum(disagreement / config.ood_disagreement, spread / config.ood_epistemic)


def widening(score: np.ndarray, config: HybridConfig) -> np.ndarray:
    """Factor on the CNN prior's width (its square on the likelihood's temperature) for OODSCORE `score`: min(max(k, 1), `max_widen_ood`).

    Where the routes disagree beyond their errors, or the network's dropout passes
    disagree, neither error can be trusted as it stands, so both are widened by the
    disagreement (as a Birge ratio widens the errors of measurements that disagree); on an
    out-of-distribution sample this lifted the posterior's 68% coverage from 0.32 to 0.51 at
    SNR_GI >= 1 and cut catastrophic outliers at SNR_GI >= 10 from 36% to 15%
    (docs/template.md). Sources like the training data have k < 1 for 96% of them: unchanged.
    """
    return np.clip(np.nan_to_num(np.asarray(score, float), nan=1.0), 1.0, config.max_widen_ood)


def population_prior(t_grid: np.ndarray, config: HybridConfig) -> np.ndarray:
    """The prior in t of a source the network cannot judge: `config.nz_prior`'s n(z), or flat."""
    return np.ones_like(t_grid) if config.nz_prior is None else nz_prior_t(t_grid, *config.nz_prior)


def search_range(prior_t: np.ndarray, t_grid: np.ndarray, config: HybridConfig) -> tuple[int, int]:
    """First and last grid index searched for a prior density `prior_t` on `t_grid`."""
    peak = float(np.max(prior_t))
    if not peak > 0:
        return 0, t_grid.size - 1
    mass = np.nonzero(prior_t >= config.prior_floor * peak)[0]
    lo = int(np.searchsorted(t_grid, t_grid[mass[0]] - config.margin_t))
    hi = int(np.searchsorted(t_grid, t_grid[mass[-1]] + config.margin_t, side="right")) - 1
    return max(lo, 0), min(hi, t_grid.size - 1)


def search_chi2(chi2_fn, t_grid: np.ndarray, npix: int, prior_t: np.ndarray, fit_config: TemplateFitConfig, config: HybridConfig, done: Search | None = None) -> Search:
    """The template chi-square inside the prior's range (`search_range`), widened while its best point is at an edge.

    `chi2_fn(indices)` gives one source's chi-square at grid points (`FileModels.chi2_fn`);
    `npix` counts its pixels with data; the points of `done` (an earlier search of the same
    source) are not computed again.
    Within the range: the template fit's coarse grid, then fine windows around its
    `n_candidates` best minima.
    """
    n = t_grid.size
    step = float(t_grid[1] - t_grid[0])
    every, half, reach = fit_config.coarse_every, 2 * fit_config.coarse_every, fit_config.fine_window * fit_config.coarse_every
    widen = max(1, int(round(config.margin_t / step)))
    lo, hi = search_range(prior_t, t_grid, config)
    chi2 = np.full(n, np.nan)
    if done is not None:
        chi2[done.known] = done.chi2
        lo, hi = min(lo, int(done.known[0])), max(hi, int(done.known[-1]))

    def search(indices):
        todo = indices[np.isnan(chi2[indices])]
        if todo.size:
            chi2[todo] = chi2_fn(todo)

    for k in range(config.max_widen + 1):
        coarse = np.unique(np.concatenate([np.arange(lo, hi + 1, every), [hi]]))
        search(coarse)
        minima = _local_minima(chi2[coarse])
        fine = np.unique(np.concatenate([np.arange(max(coarse[i] - reach, lo), min(coarse[i] + reach, hi) + 1) for i in minima[: fit_config.n_candidates]]))
        search(fine)
        best = int(np.nanargmin(chi2))
        at_lo, at_hi = best - lo < half and lo > 0, hi - best < half and hi < n - 1
        if not (at_lo or at_hi) or k == config.max_widen:
            break
        lo, hi = (max(lo - widen, 0), hi) if at_lo else (lo, min(hi + widen, n - 1))
    known = np.nonzero(np.isfinite(chi2))[0]
    return Search(known, chi2[known], npix)


def _prior(rows, z_grid: np.ndarray, dof: float, widen=1.0) -> np.ndarray:
    """The CNN's predictive densities in t [n, n_grid] on `z_grid`, their widths times `widen`.

    Density in t: per unit z times dz/dt = 1 + z. A Gaussian head's is that of Z, ZERR,
    uncensored (the catalogue's PDF puts the mass below z = 0 in a spike at z = 0, which
    would pull the posterior's mode there). A p(z) head's is its own PDF (the rows'
    ``ZPDF`` on `z_grid`, `cnn_rows`), widened by tempering, p^(1 / widen^2) renormalised:
    for a Gaussian, exactly its width times `widen`.
    """
    if "ZPDF" not in rows.colnames:
        return predictive_pdf(np.asarray(rows["Z"]), np.asarray(rows["ZERR"]) * widen, z_grid, dof, censor=False) * (1.0 + z_grid)
    density = np.asarray(rows["ZPDF"], np.float64) * (1.0 + z_grid)
    w = np.broadcast_to(np.asarray(widen, np.float64), (len(density),))
    if np.any(w != 1.0):
        density = density ** (1.0 / w**2)[:, None]
        area = np.trapezoid(density, np.log1p(z_grid), axis=1)
        density = density / np.where(area > 0, area, 1.0)[:, None]
    return density


def cnn_rows(bundle, reader, predict_config, t_grid: np.ndarray) -> Table:
    """The CNN's catalogue rows of the whole sample; for a p(z) head with its PDF on the template grid `t_grid` (column ``ZPDF``), the prior."""
    from slitcli.nn.layers import PDFHead
    from slitcli.nn.predict import predict_sample

    if isinstance(bundle.model.head, PDFHead):
        return predict_sample(bundle, reader, dataclasses.replace(predict_config, pdf=True), pdf_grid=np.expm1(t_grid))
    return predict_sample(bundle, reader, predict_config)


def iter_searches(bundle, reader, predict_config, fit_config: TemplateFitConfig, config: HybridConfig, bands=("GV", "GI"), *, batch_size: int = 64, progress=None, cnn: Table | None = None):
    """The CNN over the whole sample, then each chunk's chi-square searches inside the priors' ranges.

    Yields ``(start, sci, dq, snr, cnn_rows, prior, searches, z_template, widen, score, cut_off)``
    per chunk: the CNN's rows (`slitcli.nn.predict.predict_sample`, with `predict_config`),
    the priors [n, n_grid] (density in t on `fit_config.grid()`; where OODSCORE > 1 widened
    by `widen` = `widening`, and the search extended over them), one `Search` per source,
    the chi-square's best redshift (parabola vertex), OODSCORE (`ood_score`, of that
    redshift) and whether the spectrum runs off the detector (`cut_off`: ZWARN
    ``LITTLE_COVERAGE``; its prior is `population_prior`, never widened). `cnn`: the CNN's
    rows of the whole sample, when already predicted.
    """
    cnn = cnn_rows(bundle, reader, predict_config, fit_config.grid()) if cnn is None else cnn
    models = FileModels.from_reader(reader, fit_config, bands)
    z_grid = np.expm1(models.t_grid)
    for start, sci, err, dq in reader.iter_chunks(batch_size):
        stop = start + len(sci)
        rows = cnn[start:stop]
        prior = _prior(rows, z_grid, bundle.tail_dof, config.prior_width)
        # A spectrum cut off by the detector's edge is one the network never saw: its prior
        # is the population's n(z) instead, and its disagreement widens nothing.
        cut_off = np.any(lost_columns(dq) > MAX_LOST_COLUMNS, axis=1)
        prior[cut_off] = population_prior(models.t_grid, config)
        snr = data_snr(sci, err, dq, models.gi, models.geoms[models.gi].columns)
        kernels, data = models.spectra_of(sci, err, dq, reader.direct(start, stop))
        chi2_fns = [models.chi2_fn(kernels[n], flux, ivar) for n, (flux, ivar) in enumerate(data)]
        npix = [int((ivar > 0).sum()) for _flux, ivar in data]
        searches = [search_chi2(chi2_fns[n], models.t_grid, npix[n], prior[n], fit_config, config) for n in range(len(data))]
        z_template = np.array([np.expm1(s.minimum(models.t_grid)[1] - config.offset) for s in searches])
        score = ood_score(rows["Z"], rows["ZERR"], z_template, rows["ZERR_EPI"], config)
        widen = np.where(cut_off, 1.0, widening(score, config))
        for n in np.nonzero(widen > 1.0)[0]:
            prior[n] = _prior(rows[n : n + 1], z_grid, bundle.tail_dof, widen[n] * config.prior_width)[0]
            searches[n] = search_chi2(chi2_fns[n], models.t_grid, npix[n], prior[n], fit_config, config, done=searches[n])
            z_template[n] = np.expm1(searches[n].minimum(models.t_grid)[1] - config.offset)
        if np.any(widen > 1.0):  # the published OODSCORE follows the published ZTEMPL
            score = ood_score(rows["Z"], rows["ZERR"], z_template, rows["ZERR_EPI"], config)
        yield start, sci, dq, snr, rows, prior, searches, z_template, widen, score, cut_off
        if progress:
            progress(stop, reader.n)


def hybrid_sample(bundle, reader, predict_config, fit_config: TemplateFitConfig, config: HybridConfig, bands=("GV", "GI"), *, batch_size: int = 64, pdf: bool = False, progress=None) -> Table:
    """The hybrid route on an open sample (a `SampleReader` or ``FieldSample``): catalogue rows.

    Columns as the template route, plus ``Z_CNN``, ``ZERR_CNN`` (the prior's), ``ZTEMPL``
    (the chi-square minimum searched), ``ZAGREE`` and ``NSEARCH`` (grid points computed).
    """
    t_grid = fit_config.grid()
    sources = reader.sources()
    rows, bad_pixels = [], 0
    for start, sci, dq, snr, cnn, prior, searches, z_template, widen, score, cut_off in iter_searches(bundle, reader, predict_config, fit_config, config, bands, batch_size=batch_size, progress=progress):
        bad_pixels = cnn.meta["NBADPIX"]  # of the CNN's pass over the sample (the template's pass reads the same pixels again)
        temperature, floor = config.likelihood_scales(snr)
        temperature = temperature * widen**2
        mismatch = np.where(cut_off, 0.0, config.template_mismatch)  # a pedestal under a broad prior would spread mass over every z
        half = 2 * fit_config.coarse_every
        fits = [posterior(found, prior[n], t_grid, temperature[n], half, floor[n], mismatch[n], faint=snr[n] < FAINT_SNR, offset=config.offset) for n, found in enumerate(searches)]
        point_t = config.point_temperatures(snr) * widen**2
        chosen = [point_fit(f.fit, searches[n], prior[n], t_grid, None if np.isnan(point_t[n]) else float(point_t[n]), half, mismatch[n], snr[n] < FAINT_SNR, config.offset) for n, f in enumerate(fits)]
        columns = fit_columns(chosen, sci, dq, snr, fit_config, t_grid if pdf else None)
        columns["ZWARN"][score > 1.0] |= ZWARN_BITS["UNLIKE_TRAINING"]
        columns |= {
            "Z_CNN": np.asarray(cnn["Z"]), "ZERR_CNN": np.asarray(cnn["ZERR"]), "ZTEMPL": z_template,
            "ZAGREE": [f.agreement for f in fits], "OODSCORE": score, "NSEARCH": [f.n_searched for f in fits],
        }
        rows.append(Table({**source_identity(sources, start, len(sci)), **columns}))
    table = vstack(rows)
    table.meta["NBADPIX"] = bad_pixels
    return table


@dataclass(frozen=True)
class HybridCalibration:
    """What `calibrate_hybrid` fits: the likelihood temperature and the out-of-distribution thresholds (`ood_score`), from `n_ood` sources."""

    temperature: TemperatureFit
    ood_disagreement: float
    ood_epistemic: float
    n_ood: int
    point_temperature: tuple[float | None, ...] | None = None
    prior_width: float = 1.0


def calibrate_hybrid(bundle, reader, predict_config, fit_config: TemplateFitConfig | None = None, *, min_snr: float = 1.0, ood_snr: float = 3.0, ood_quantile: float = 0.96, max_widen_ood: float = 10.0, progress=None, fixed: HybridConfig | None = None) -> HybridCalibration:
    """Fit the hybrid route's OOD thresholds, then its likelihood temperature, on a held-out sample with Z_TRUE (`slitcli.classic.posterior`).

    Two passes over the sample. First, the template basis's offset (`fit_offset`) and each
    OOD threshold, the `ood_quantile` of its part (`ood_parts`, of the offset-corrected
    ZTEMPL) over the sources with SNR_GI >= `ood_snr`. Then, with the sources
    those thresholds flag widened as `predict` widens them (`widening`), the temperature
    and error floor per SNR_GI bin (`slitcli.classic.posterior.fit_temperature_by_snr`), on
    the sources with SNR_GI >= `min_snr` (the faintest bin's apply below it too), with the
    default `HybridConfig.template_mismatch`. ``calibrate --hybrid`` keeps them in the model
    card as ``hybrid_temperature`` and ``hybrid_error_floor`` (lists, one per bin of
    ``hybrid_snr_edges``), ``hybrid_offset``, ``ood_disagreement`` and
    ``ood_epistemic`` (a CNN re-calibration drops them: they depend on the CNN's calibration).
    With `fixed` (the card's thresholds, offset and n(z): a second calibration, on cutouts of
    another kind), the first pass is skipped and only T and the floor are fitted, with the
    CNN prior's width (`HybridConfig.prior_width`, one of `PRIOR_WIDTHS`; a pass each).
    `max_widen_ood` is the widening's cap (`HybridConfig.max_widen_ood`; 1: flagged
    sources are not widened), the same in the fit as in `predict` (card
    ``hybrid_max_widen_ood``).
    """
    fit_config = fit_config or TemplateFitConfig()
    t_grid = fit_config.grid()
    t_all = true_t(reader)
    cnn_all = cnn_rows(bundle, reader, predict_config, t_grid)  # once, for both passes
    if fixed is not None:
        return _fit_hybrid_temperature(bundle, reader, predict_config, fit_config, fixed, t_all, cnn_all, min_snr, progress, 0, PRIOR_WIDTHS)
    rows, bright_searches, bright_t, bright_snr = [], [], [], []
    for start, _sci, _dq, snr, cnn, _prior, found, z_template, _widen, _score, cut_off in iter_searches(bundle, reader, predict_config, fit_config, HybridConfig(), tuple(bundle.bands), progress=progress, cnn=cnn_all):
        for n in np.nonzero((np.asarray(snr) >= min(ood_snr, OFFSET_SNR)) & ~cut_off)[0]:  # as in the second pass
            rows.append((cnn["Z"][n], cnn["ZERR"][n], z_template[n], cnn["ZERR_EPI"][n], snr[n]))
            bright_searches.append(found[n])
            bright_t.append(t_all[start + n])
            bright_snr.append(snr[n])
    offset = fit_offset(bright_searches, t_grid, np.array(bright_t), bright_snr)
    rows = np.array(rows, float).reshape(-1, 5)
    ood = rows[rows[:, 4] >= ood_snr]
    parts = np.column_stack(ood_parts(ood[:, 0], ood[:, 1], np.expm1(np.log1p(ood[:, 2]) - offset), ood[:, 3]))
    if len(parts) < 20:
        msg = f"{len(parts)} sources with SNR_GI >= {ood_snr:g}; the out-of-distribution thresholds need at least 20"
        raise InputError(msg)
    disagreement, spread = (float(q) for q in np.quantile(parts, ood_quantile, axis=0))
    config = HybridConfig(ood_disagreement=disagreement, ood_epistemic=spread, offset=offset, max_widen_ood=max_widen_ood)
    return _fit_hybrid_temperature(bundle, reader, predict_config, fit_config, config, t_all, cnn_all, min_snr, progress, len(parts))


def _fit_hybrid_temperature(bundle, reader, predict_config, fit_config, config, t_all, cnn_all, min_snr, progress, n_ood, widths=(1.0,)) -> HybridCalibration:
    """`calibrate_hybrid`'s second pass: T and the floor with `config`'s thresholds, offset and n(z), for each prior width of `widths` (the one whose worst SNR_GI bin misses its coverage least wins; the narrowest of equals)."""
    t_grid = fit_config.grid()
    best = None
    for width in widths:
        trial = dataclasses.replace(config, prior_width=width)
        searches, priors, scales, keep, snrs = [], [], [], [], []
        for start, _sci, _dq, snr, _cnn, prior, found, _z, widen, _score, cut_off in iter_searches(bundle, reader, predict_config, fit_config, trial, tuple(bundle.bands), progress=progress, cnn=cnn_all):
            for n in np.nonzero((np.asarray(snr) >= min_snr) & ~cut_off)[0]:  # cut-off spectra: the CNN's posterior is not theirs
                searches.append(found[n])
                priors.append(prior[n])
                scales.append(widen[n] ** 2)
                keep.append(start + n)
                snrs.append(snr[n])
        temperature = calibrate_temperature(searches, priors, t_grid, t_all[keep], mismatch=config.template_mismatch, scales=scales, offset=config.offset, snr=snrs)
        if best is None or temperature.worst_miss < best[0].worst_miss - 1e-9:
            best = (temperature, trial, searches, priors, scales, keep, snrs)
    temperature, trial, searches, priors, scales, keep, snrs = best
    point, _ = _choose_point_temperature(searches, priors, t_grid, np.expm1(t_all[keep]), np.asarray(snrs), np.asarray(scales), dataclasses.replace(trial, temperature=temperature.temperature, error_floor=temperature.error_floor, snr_edges=temperature.snr_edges))
    return HybridCalibration(temperature, config.ood_disagreement, config.ood_epistemic, n_ood, point, trial.prior_width)


#: The prior widths (`HybridConfig.prior_width`) that `calibrate --hybrid` tries on field cutouts.
PRIOR_WIDTHS = (1.0, 1.15, 1.3, 1.5, 2.0)
#: The temperatures `calibrate --hybrid` tries for the posterior Z is read from (`HybridConfig.point_temperature`).
POINT_TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
#: |dz| / (1 + z) beyond which a Z is a catastrophic outlier (as `slitcli evaluate` counts them).
CATASTROPHIC = 0.15


def _choose_point_temperature(searches, priors, t_grid, z_true, snr, scales, config) -> tuple[tuple[float | None, ...], dict]:
    """Z's temperature per SNR_GI bin of `config.snr_edges` (grouped as the temperatures are); and each candidate's sigma_NMAD per bin (None: the calibrated posterior's Z).

    Of `POINT_TEMPERATURES`, the one whose Z has the smallest sigma_NMAD among those with
    no more catastrophic outliers than the calibrated posterior's Z: a lower temperature
    lets the template fit place the line more finely, but also lets a deep wrong minimum
    the CNN's prior excludes take Z. Always a number, never "the calibrated posterior":
    field cutouts have a calibration of their own (`ModelBundle.likelihood_scale`), and Z
    is read as it was chosen here.
    """
    from slitcli.evaluation.metrics import sigma_nmad

    calibrated, floor = config.likelihood_scales(snr)
    groups = bin_groups(config.snr_edges, snr, MIN_BIN_SOURCES)
    nmad, outliers = {}, {}
    for candidate in (None, *POINT_TEMPERATURES):
        temperature, floors = (calibrated, floor) if candidate is None else (np.full(len(snr), candidate), np.zeros(len(snr)))
        z = np.array([posterior(found, priors[n], t_grid, temperature[n] * scales[n], floor=floors[n], mismatch=config.template_mismatch, faint=snr[n] < FAINT_SNR, offset=config.offset).fit.z for n, found in enumerate(searches)])
        catastrophic = np.abs(z - z_true) / (1.0 + z_true) > CATASTROPHIC
        nmad[candidate], outliers[candidate] = [0.0] * len(config.snr_edges), [0] * len(config.snr_edges)
        for group, members in groups:
            for k in group:
                nmad[candidate][k] = float(sigma_nmad(z[members], z_true[members]))
                outliers[candidate][k] = int(catastrophic[members].sum())
    chosen = tuple(min((c for c in POINT_TEMPERATURES if outliers[c][k] <= outliers[None][k]), key=lambda c, k=k: nmad[c][k], default=POINT_TEMPERATURES[-1]) for k in range(len(config.snr_edges)))
    return chosen, nmad
