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
``Z_CNN`` and ``ZERR_CNN`` are the prior's. ``OODSCORE`` (`ood_score`) > 1 sets the
ZWARN bit ``UNLIKE_TRAINING``: the routes disagree beyond the network's error, or its
dropout passes disagree, more than for 96% of held-out sources like its training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table, vstack

from slitcli.classic.posterior import TemperatureFit, calibrate_temperature, posterior, snr_groups, true_t
from slitcli.classic.template_fit import FileModels, Search, TemplateFitConfig, _local_minima, fit_columns
from slitcli.errors import ConfigError, InputError
from slitcli.extract import data_snr
from slitcli.io.redshift import ZWARN_BITS, source_identity
from slitcli.io.zpdf import predictive_pdf

__all__ = ["HybridConfig", "search_range", "search_chi2", "iter_searches", "hybrid_sample", "ood_parts", "ood_score", "HybridCalibration", "calibrate_hybrid"]


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
    error_floor : float
        Added in quadrature to the likelihood's width [ln(1+z)] (`calibrate` fits it).
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
    """

    prior_floor: float = 1e-3
    margin_t: float = 0.02
    max_widen: int = 8
    temperature: float = 1.0
    error_floor: float = 0.0
    template_mismatch: float = 1e-3
    ood_disagreement: float = float("inf")
    ood_epistemic: float = float("inf")

    def __post_init__(self):
        if not (0.0 < self.prior_floor < 1.0 and self.margin_t >= 0.0 and self.max_widen >= 0 and self.temperature > 0):
            msg = "the hybrid route needs 0 < prior_floor < 1, margin_t >= 0, max_widen >= 0 and temperature > 0"
            raise ConfigError(msg)
        if not (self.ood_disagreement > 0 and self.ood_epistemic > 0 and self.error_floor >= 0 and 0.0 <= self.template_mismatch < 1.0):
            msg = "the hybrid route's out-of-distribution thresholds must be > 0, its error floor >= 0 and 0 <= template_mismatch < 1"
            raise ConfigError(msg)


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


def search_range(prior_t: np.ndarray, t_grid: np.ndarray, config: HybridConfig) -> tuple[int, int]:
    """First and last grid index searched for a prior density `prior_t` on `t_grid`."""
    peak = float(np.max(prior_t))
    if not peak > 0:
        return 0, t_grid.size - 1
    mass = np.nonzero(prior_t >= config.prior_floor * peak)[0]
    lo = int(np.searchsorted(t_grid, t_grid[mass[0]] - config.margin_t))
    hi = int(np.searchsorted(t_grid, t_grid[mass[-1]] + config.margin_t, side="right")) - 1
    return max(lo, 0), min(hi, t_grid.size - 1)


def search_chi2(chi2_fn, t_grid: np.ndarray, npix: int, prior_t: np.ndarray, fit_config: TemplateFitConfig, config: HybridConfig) -> Search:
    """The template chi-square inside the prior's range (`search_range`), widened while its best point is at an edge.

    `chi2_fn(indices)` gives one source's chi-square at grid points (`FileModels.chi2_fn`);
    `npix` counts its pixels with data.
    Within the range: the template fit's coarse grid, then fine windows around its
    `n_candidates` best minima.
    """
    n = t_grid.size
    step = float(t_grid[1] - t_grid[0])
    every, half, reach = fit_config.coarse_every, 2 * fit_config.coarse_every, fit_config.fine_window * fit_config.coarse_every
    widen = max(1, int(round(config.margin_t / step)))
    lo, hi = search_range(prior_t, t_grid, config)
    chi2 = np.full(n, np.nan)

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


def iter_searches(bundle, reader, predict_config, fit_config: TemplateFitConfig, config: HybridConfig, bands=("GV", "GI"), *, batch_size: int = 64, progress=None):
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
        searches = [search_chi2(models.chi2_fn(kernels[n], flux, ivar), models.t_grid, int((ivar > 0).sum()), prior[n], fit_config, config) for n, (flux, ivar) in enumerate(data)]
        yield start, sci, dq, snr, rows, prior, searches
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
    for start, sci, dq, snr, cnn, prior, searches in iter_searches(bundle, reader, predict_config, fit_config, config, bands, batch_size=batch_size, progress=progress):
        bad_pixels = cnn.meta["NBADPIX"]  # of the CNN's pass over the sample (the template's pass reads the same pixels again)
        fits = [posterior(found, prior[n], t_grid, config.temperature, 2 * fit_config.coarse_every, config.error_floor, config.template_mismatch) for n, found in enumerate(searches)]
        columns = fit_columns([f.fit for f in fits], sci, dq, snr, fit_config, t_grid if pdf else None)
        z_template = np.array([f.z_template for f in fits])
        score = ood_score(cnn["Z"], cnn["ZERR"], z_template, cnn["ZERR_EPI"], config)
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


def calibrate_hybrid(bundle, reader, predict_config, fit_config: TemplateFitConfig | None = None, *, min_snr: float = 1.0, ood_snr: float = 3.0, ood_quantile: float = 0.96, progress=None) -> HybridCalibration:
    """Fit the hybrid route's likelihood temperature and OOD thresholds on a held-out sample with Z_TRUE (`slitcli.classic.posterior`).

    The temperature and error floor use the sources with SNR_GI >= `min_snr` (coverage held
    on all of them and above each larger cut of `COVERAGE_CUTS`), with the default
    `HybridConfig.template_mismatch`; each OOD threshold is the
    `ood_quantile` of its part (`ood_parts`) over those with SNR_GI >= `ood_snr`.
    ``calibrate --hybrid`` keeps them in the model card as ``hybrid_temperature``,
    ``ood_disagreement`` and ``ood_epistemic`` (a CNN re-calibration drops them: they
    depend on the CNN's calibration).
    """
    fit_config = fit_config or TemplateFitConfig()
    t_grid = fit_config.grid()
    t_all = true_t(reader)
    config = HybridConfig()
    searches, priors, keep, parts, snrs = [], [], [], [], []
    for start, _sci, _dq, snr, cnn, prior, found in iter_searches(bundle, reader, predict_config, fit_config, config, tuple(bundle.bands), progress=progress):
        for n, s in enumerate(found):
            if snr[n] >= min_snr:
                searches.append(s)
                priors.append(prior[n])
                keep.append(start + n)
                snrs.append(snr[n])
            if snr[n] >= ood_snr:
                z_template = posterior(s, prior[n], t_grid, 1.0, 2 * fit_config.coarse_every).z_template  # the chi-square's minimum: any temperature
                parts.append([float(p) for p in ood_parts(cnn["Z"][n], cnn["ZERR"][n], z_template, cnn["ZERR_EPI"][n])])
    temperature = calibrate_temperature(searches, priors, t_grid, t_all[keep], groups=snr_groups(snrs, min_snr), mismatch=config.template_mismatch)
    if len(parts) < 20:
        msg = f"{len(parts)} sources with SNR_GI >= {ood_snr:g}; the out-of-distribution thresholds need at least 20"
        raise InputError(msg)
    disagreement, spread = np.quantile(np.array(parts), ood_quantile, axis=0)
    return HybridCalibration(temperature, float(disagreement), float(spread), len(parts))
