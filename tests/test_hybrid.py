"""The hybrid route: the range searched, and predict --method hybrid end to end."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from conftest import invoke

from slitcli.classic.template_fit import TemplateFitConfig
from slitcli.io.redshift import ZWARN_BITS
from slitcli.hybrid import HybridConfig, ood_parts, ood_score, search_chi2, search_range, widening

T_GRID = TemplateFitConfig().grid()
STEP = float(T_GRID[1] - T_GRID[0])


def gaussian(t, centre, sigma):
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def test_search_range_covers_the_prior_above_its_floor_plus_the_margin():
    cfg = HybridConfig(prior_floor=1e-3, margin_t=0.02)
    prior = gaussian(T_GRID, 0.5, 0.01)
    lo, hi = search_range(prior, T_GRID, cfg)
    half_width = 0.01 * np.sqrt(-2 * np.log(1e-3)) + 0.02  # where the Gaussian falls to 1e-3 of its peak, plus the margin
    assert T_GRID[lo] == pytest.approx(0.5 - half_width, abs=2 * STEP)
    assert T_GRID[hi] == pytest.approx(0.5 + half_width, abs=2 * STEP)
    assert search_range(np.ones_like(T_GRID), T_GRID, cfg) == (0, T_GRID.size - 1)
    assert search_range(gaussian(T_GRID, 0.0, 0.01), T_GRID, cfg)[0] == 0  # clipped at the grid's end


def test_ood_score_is_the_larger_part_over_its_threshold():
    """Z_CNN = 1 with ZERR 0.02 (0.01 in ln(1+z)); the template 0.03 away in ln(1+z): disagreement 3."""
    z_template = np.expm1(np.log(2.0) + np.array([0.03, 0.0]))
    disagreement, spread = ood_parts([1.0, 1.0], [0.02, 0.02], z_template, [0.01, 0.04])
    np.testing.assert_allclose(disagreement, [3.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(spread, [0.005, 0.02])
    score = ood_score([1.0, 1.0], [0.02, 0.02], z_template, [0.01, 0.04], HybridConfig(ood_disagreement=2.0, ood_epistemic=0.01))
    np.testing.assert_allclose(score, [1.5, 2.0])
    assert np.all(ood_score([1.0], [0.02], z_template[:1], [0.5], HybridConfig()) == 0)  # uncalibrated: never flagged


def test_widening_is_the_score_above_one_up_to_its_cap():
    cfg = HybridConfig(max_widen_ood=10.0)
    np.testing.assert_array_equal(widening([0.2, 1.0, 3.0, 50.0, np.nan], cfg), [1.0, 1.0, 3.0, 10.0, 1.0])


def test_a_widened_search_extends_the_first_without_computing_a_point_twice():
    """A quadratic chi-square at t = 0.5: searched under a narrow prior, then under one ten
    times wider, reusing the first search; every point is computed once, the second range
    is wider, and both find the minimum."""
    calls = []

    def chi2_fn(indices):
        calls.append(np.asarray(indices))
        return ((T_GRID[indices] - 0.5) / 0.003) ** 2

    fit, cfg = TemplateFitConfig(), HybridConfig()
    first = search_chi2(chi2_fn, T_GRID, 1000, gaussian(T_GRID, 0.5, 0.005), fit, cfg)
    n_first = sum(c.size for c in calls)
    wide = search_chi2(chi2_fn, T_GRID, 1000, gaussian(T_GRID, 0.5, 0.05), fit, cfg, done=first)
    computed = np.concatenate(calls)
    assert computed.size == np.unique(computed).size and computed.size > n_first
    assert wide.known[0] < first.known[0] and wide.known[-1] > first.known[-1]
    assert set(first.known) <= set(wide.known)
    for s in (first, wide):
        assert T_GRID[s.known[np.argmin(s.chi2)]] == pytest.approx(0.5, abs=STEP)


@pytest.mark.slow
def test_calibrate_hybrid_sets_the_ood_thresholds_that_flag_about_a_tenth(tmp_path, monkeypatch):
    """calibrate --hybrid writes the temperature and both thresholds; predicting the same
    sample with them flags at most the two 5% tails of its SNR_GI >= 3 sources, and the
    ZWARN bit is set exactly where OODSCORE > 1."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sample, model = tmp_path / "val.fits", tmp_path / "model"
    assert invoke("simulate", "-n", 160, "--seed", 5, "--mag-max", 21.5, "-o", sample, "-q").exit_code == 0
    result = invoke("calibrate", sample, "--hybrid", "--n-mc", 10, "-o", model)
    assert result.exit_code == 0, result.output
    assert "out-of-distribution thresholds" in result.output
    from slitcli.nn.modelfile import load_model

    bundle = load_model(model)
    disagreement, epistemic = bundle.ood_thresholds
    assert 0 < disagreement < np.inf and 0 < epistemic < np.inf
    from slitcli.hybrid import POINT_TEMPERATURES
    from slitcli.snr_bins import SNR_EDGES

    cal = bundle.card["calibration"]
    assert cal["hybrid_snr_edges"] == list(SNR_EDGES) and len(cal["hybrid_temperature"]) == len(cal["hybrid_error_floor"]) == len(SNR_EDGES)
    assert len(cal["hybrid_point_temperature"]) == len(SNR_EDGES) and set(bundle.hybrid_point_temperature) <= {None, *POINT_TEMPERATURES}
    assert invoke("predict", sample, "-m", model, "--method", "hybrid", "--n-mc", 10, "-o", tmp_path / "z.fits").exit_code == 0
    table = Table.read(tmp_path / "z.fits", hdu="REDSHIFTS")
    flagged = (np.asarray(table["ZWARN"]) & ZWARN_BITS["UNLIKE_TRAINING"]) > 0
    np.testing.assert_array_equal(flagged, np.asarray(table["OODSCORE"]) > 1.0)
    # OODSCORE follows the published ZTEMPL (after a flagged source's widened search): never
    # below its disagreement part, equal to it where that part is the larger.
    part = ood_parts(table["Z_CNN"], table["ZERR_CNN"], table["ZTEMPL"], table["ZERR_CNN"])[0] / disagreement
    score = np.asarray(table["OODSCORE"])
    assert np.all(score >= part * (1 - 1e-9)) and np.isclose(score, part, rtol=1e-9).sum() >= 10
    bright = np.asarray(table["SNR_GI"]) >= 3
    assert bright.sum() >= 20 and 0 < flagged[bright].mean() <= 0.1 + 1e-9


@pytest.mark.slow
def test_predict_hybrid_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sample = tmp_path / "s.fits"
    assert invoke("simulate", "-n", 6, "--seed", 11, "-o", sample, "-q").exit_code == 0
    result = invoke("predict", sample, "--method", "hybrid", "--n-mc", 10, "--pdf", "-o", tmp_path / "z.fits")
    assert result.exit_code == 0, result.output
    table = Table.read(tmp_path / "z.fits", hdu="REDSHIFTS")
    from slitcli.nn.modelfile import load_model

    temperature = load_model(None).hybrid_temperature
    assert table.meta["METHOD"] == "hybrid" and table.meta["HYBTEMP"] == (",".join(f"{t:.6g}" for t in temperature) if isinstance(temperature, tuple) else temperature)
    assert {"Z_CNN", "ZERR_CNN", "ZTEMPL", "ZAGREE", "OODSCORE", "NSEARCH"} <= set(table.colnames)
    flagged = (np.asarray(table["ZWARN"]) & ZWARN_BITS["UNLIKE_TRAINING"]) > 0
    np.testing.assert_array_equal(flagged, np.asarray(table["OODSCORE"]) > 1.0)
    assert np.all(table["NSEARCH"] < T_GRID.size)  # the likelihood is computed where the prior has mass only
    q = np.array([table[c] for c in ("Z025", "Z160", "Z500", "Z840", "Z975")])
    assert np.all(np.diff(q, axis=0) >= 0) and np.all((table["Z"] >= q[0]) & (table["Z"] <= q[-1]))
    from slitcli.io.zpdf import read_zpdf

    grid, pdf = read_zpdf(tmp_path / "z.fits")
    assert np.allclose(np.trapezoid(pdf, grid, axis=1), 1.0, rtol=1e-5)
    assert np.all((table["ZAGREE"] >= 0) & (table["ZAGREE"] <= 1))
    assert np.all((table["ODDS"] >= 0) & (table["ODDS"] <= 1 + 1e-12))


def test_a_spectrum_cut_off_by_the_detector_gets_the_population_prior(tmp_path):
    """A source with 40% of its GI columns flagged (its spectrum runs off the exposures): its
    prior is the n(z) of the population, not the CNN's, it is never widened, and its search
    reaches as far as that prior; its neighbours keep the CNN's prior."""
    import fitsio

    from slitcli.classic.nz_prior import nz_prior_t
    from slitcli.hybrid import iter_searches
    from slitcli.io.samplefile import SampleReader
    from slitcli.nn.modelfile import load_model
    from slitcli.nn.predict import PredictConfig

    sample = tmp_path / "s.fits"
    assert invoke("simulate", "-n", 3, "--seed", 11, "-o", sample, "-q").exit_code == 0
    with fitsio.FITS(str(sample), "rw") as f:
        dq = f["GI_DQ"].read()
        dq[0, :, : int(0.4 * dq.shape[2])] |= 1
        f["GI_DQ"].write(dq)
    bundle = load_model(None)
    config = HybridConfig(nz_prior=(1.7, 0.35), ood_disagreement=1e-6, ood_epistemic=1e-6)  # every source flagged
    with SampleReader(sample, bundle.bands, bundle.shape) as reader:
        _start, _sci, _dq, _snr, _rows, prior, searches, _z, widen, score, cut_off = next(iter_searches(bundle, reader, PredictConfig(n_mc=10), TemplateFitConfig(), config))
    assert list(cut_off) == [True, False, False]
    np.testing.assert_allclose(prior[0], nz_prior_t(T_GRID, 1.7, 0.35))
    assert widen[0] == 1.0 and np.all(widen[1:] > 1.0) and np.all(score > 1.0)
    lo, hi = search_range(prior[0], T_GRID, config)
    assert searches[0].known[0] <= lo and searches[0].known[-1] >= hi and hi - lo > 0.8 * T_GRID.size
    assert not np.allclose(prior[1] / prior[1].max(), nz_prior_t(T_GRID, 1.7, 0.35) / nz_prior_t(T_GRID, 1.7, 0.35).max())


def test_a_pdf_head_s_prior_is_its_own_pdf_widened_by_tempering():
    from slitcli.hybrid import _prior
    from slitcli.io.zpdf import predictive_pdf

    z_grid = np.expm1(T_GRID)
    z, zerr = np.array([0.4, 1.1]), np.array([0.01, 0.03])
    gaussian = Table({"Z": z, "ZERR": zerr})
    own = Table({"Z": z, "ZERR": zerr, "ZPDF": predictive_pdf(z, zerr, z_grid, censor=False)})
    np.testing.assert_allclose(_prior(own, z_grid, np.inf), _prior(gaussian, z_grid, np.inf), rtol=1e-9, atol=1e-9)
    # Tempering p^(1/w^2) widens a Gaussian by w, as the Gaussian head's prior is widened.
    widened = _prior(own, z_grid, np.inf, widen=2.5)
    np.testing.assert_allclose(widened, _prior(gaussian, z_grid, np.inf, widen=2.5), rtol=1e-6, atol=1e-6 * widened.max())
    np.testing.assert_allclose(np.trapezoid(widened, T_GRID, axis=1), 1.0, rtol=1e-9)


def test_predict_hybrid_with_a_pdf_head(tmp_path):
    for name, n, seed in (("train", 16, 21), ("val", 8, 22), ("s", 4, 23)):
        assert invoke("simulate", "-n", n, "--seed", seed, "-q", "-o", tmp_path / f"{name}.fits").exit_code == 0
    (tmp_path / "train.yaml").write_text(
        "train:\n  pretrain_epochs: 1\n  finetune_epochs: 0\n  batch_size: 8\n  min_snr: 0.0\n"
        "model:\n  rows: 8\n  channels: [4, 4]\n  kernels: [3, 3]\n  head_hidden: [8]\n  head: pdf\n"
    )
    result = invoke("train", tmp_path / "train.fits", "--val", tmp_path / "val.fits", "--config", tmp_path / "train.yaml", "-o", tmp_path / "m", "-q")
    assert result.exit_code == 0, result.output
    result = invoke("predict", tmp_path / "s.fits", "-m", tmp_path / "m", "--method", "hybrid", "--n-mc", 4, "-o", tmp_path / "z.fits", "-q")
    assert result.exit_code == 0, result.output
    table = Table.read(tmp_path / "z.fits", hdu="REDSHIFTS")
    assert "ZPDF" not in table.colnames and np.all(np.isfinite(table["Z"])) and np.all(table["ZERR_CNN"] > 0)
    from slitcli.hybrid import cnn_rows
    from slitcli.io.samplefile import SampleReader
    from slitcli.nn.modelfile import load_model
    from slitcli.nn.predict import PredictConfig

    bundle = load_model(tmp_path / "m")
    with SampleReader(tmp_path / "s.fits", bundle.bands, bundle.shape) as reader:
        rows = cnn_rows(bundle, reader, PredictConfig(n_mc=4), T_GRID)
    assert rows["ZPDF"].shape == (4, T_GRID.size)  # the prior is the head's own PDF on the template grid
    np.testing.assert_allclose(np.asarray(table["Z_CNN"]), np.asarray(rows["Z"]))


def test_the_card_sets_the_widening_cap(tmp_path):
    """hybrid_max_widen_ood in the card reaches the hybrid's settings; 10 where the card has none; 1 widens nothing."""
    from slitcli.nn.modelfile import load_model, save_model
    from slitcli.routes import Route

    bundle = load_model(None)
    bundle.card["calibration"].pop("hybrid_max_widen_ood", None)
    save_model(bundle, tmp_path / "without")
    assert Route("hybrid", str(tmp_path / "without"))._hybrid_config().max_widen_ood == 10.0
    bundle.card["calibration"]["hybrid_max_widen_ood"] = 1.0
    save_model(bundle, tmp_path / "with")
    config = Route("hybrid", str(tmp_path / "with"))._hybrid_config()
    assert config.max_widen_ood == 1.0
    np.testing.assert_array_equal(widening(np.array([0.5, 3.0, 40.0]), config), [1.0, 1.0, 1.0])


def test_a_temperature_and_floor_per_snr_bin_from_the_card(tmp_path):
    """Card lists of hybrid_temperature and hybrid_error_floor with hybrid_snr_edges give each source its bin's pair; lengths must agree."""
    from slitcli.errors import ConfigError
    from slitcli.nn.modelfile import load_model, save_model
    from slitcli.routes import Route

    bundle = load_model(None)
    bundle.card["calibration"] |= {"hybrid_snr_edges": [0.0, 3.0, 10.0], "hybrid_temperature": [16.0, 2.0, 1.0], "hybrid_error_floor": [0.0, 0.0004, 0.0002]}
    for key in ("hybrid_point_temperature", "hybrid_field_temperature", "hybrid_field_error_floor"):  # the shipped card's, for its own four bins
        bundle.card["calibration"].pop(key, None)
    save_model(bundle, tmp_path / "binned")
    config = Route("hybrid", str(tmp_path / "binned"))._hybrid_config()
    assert config.snr_edges == (0.0, 3.0, 10.0) and config.temperature == (16.0, 2.0, 1.0)
    temperature, floor = config.likelihood_scales(np.array([0.5, 2.9, 3.0, 50.0]))
    np.testing.assert_array_equal(temperature, [16.0, 16.0, 2.0, 1.0])
    np.testing.assert_array_equal(floor, [0.0, 0.0, 0.0004, 0.0002])
    assert Route("hybrid", str(tmp_path / "binned")).meta()["HYBTEMP"] == "16,2,1"
    with pytest.raises(ConfigError, match="one temperature and one error floor per SNR bin"):
        HybridConfig(temperature=(1.0, 2.0), error_floor=(0.0, 0.0), snr_edges=(0.0, 3.0, 10.0))
    with pytest.raises(ConfigError, match="prior_width >= 1"):
        HybridConfig(prior_width=0.8)
    scalar = HybridConfig(temperature=3.0, error_floor=0.0003)
    np.testing.assert_array_equal(scalar.likelihood_scales([1.0, 40.0])[0], [3.0, 3.0])
    # Z's temperature per bin: None reads Z from the calibrated posterior (NaN).
    bundle.card["calibration"]["hybrid_point_temperature"] = [None, 1.0, 1.0]
    save_model(bundle, tmp_path / "point", overwrite=True)
    route = Route("hybrid", str(tmp_path / "point"))
    np.testing.assert_array_equal(route._hybrid_config().point_temperatures(np.array([2.0, 4.0, 20.0])), [np.nan, 1.0, 1.0])
    assert route.meta()["HYBPTEMP"] == "calibrated,1,1"
    with pytest.raises(ConfigError, match="point temperature"):
        HybridConfig(temperature=(1.0, 2.0), error_floor=(0.0, 0.0), snr_edges=(0.0, 3.0), point_temperature=(1.0,))


def test_z_read_at_the_point_temperature_takes_the_deeper_minimum_the_flat_posterior_misses():
    """A broad CNN prior centred at t = 0.500 and a chi-square with a shallow minimum at
    0.498 and one 3 deeper at 0.506: at a large calibrated temperature the posterior is
    nearly the prior and Z takes the minimum nearest its mode; read at temperature 1, Z is
    the deeper one. The quantiles and PDF stay the calibrated posterior's."""
    from slitcli.classic.posterior import posterior
    from slitcli.classic.template_fit import Search, normalised_cdf
    from slitcli.hybrid import point_fit
    from slitcli.io.redshift import odds_from_cdf

    known = np.nonzero(np.abs(T_GRID - 0.5) < 0.05)[0]
    t = T_GRID[known]
    found = Search(known, np.minimum(((t - 0.506) / 0.001) ** 2, ((t - 0.498) / 0.001) ** 2 + 3.0), 10_000)
    prior = gaussian(T_GRID, 0.5, 0.01)
    calibrated = posterior(found, prior, T_GRID, 64.0).fit
    assert np.log1p(calibrated.z) == pytest.approx(0.498, abs=STEP)
    assert point_fit(calibrated, found, prior, T_GRID, None, 16, 0.0, False, 0.0) is calibrated
    chosen = point_fit(calibrated, found, prior, T_GRID, 1.0, 16, 0.0, False, 0.0)
    assert np.log1p(chosen.z) == pytest.approx(0.506, abs=STEP)
    assert chosen.quantiles == calibrated.quantiles and chosen.pdf_t is calibrated.pdf_t
    assert chosen.odds == pytest.approx(odds_from_cdf(np.log1p(chosen.z), T_GRID, normalised_cdf(T_GRID, calibrated.pdf_t)))


def test_z_temperature_is_the_sharpest_that_adds_no_catastrophic_outlier():
    """Ninety sources whose true minimum lies 0.004 (either side) from a shallower one nearer the CNN's
    mode (read at the calibrated T = 64, Z takes the wrong one; at T <= 4 the right one) and
    ten whose CNN prior has a faint floor under a deep wrong minimum at t = 0.9 (only T = 1
    lets it take Z): the choice is T = 2, not T = 1, whose sigma_NMAD is about as small but
    whose Z has ten catastrophic outliers."""
    from slitcli.classic.template_fit import Search
    from slitcli.hybrid import _choose_point_temperature

    rng = np.random.default_rng(3)
    known = np.nonzero((T_GRID > 0.45) & (T_GRID < 0.95))[0]
    t = T_GRID[known]
    searches, priors, t_true = [], [], []
    for n in range(100):
        if n < 90:  # the true minimum above the shallow one for half of them, below for the others
            side = 1 if n % 2 else -1
            searches.append(Search(known, np.minimum(((t - 0.5 + 0.001 * side) / 0.0005) ** 2 + 4.0, ((t - 0.5 - 0.003 * side) / 0.0005) ** 2), 10_000))
            priors.append(gaussian(T_GRID, 0.5, 0.003))
            t_true.append(0.5 + 0.003 * side + rng.normal(0, 0.0002))
        else:
            searches.append(Search(known, np.minimum(((t - 0.5) / 0.001) ** 2 + 60.0, ((t - 0.9) / 0.001) ** 2), 10_000))
            priors.append(gaussian(T_GRID, 0.5, 0.01) + 1e-6)
            t_true.append(0.5 + rng.normal(0, 0.0002))
    config = HybridConfig(temperature=(64.0,), error_floor=(0.0,), snr_edges=(0.0,), template_mismatch=0.0)
    chosen, nmad = _choose_point_temperature(searches, priors, T_GRID, np.expm1(np.array(t_true)), np.full(100, 5.0), np.ones(100), config)
    assert chosen == (2.0,)
    assert nmad[1.0][0] < 1.5 * nmad[2.0][0] and nmad[None][0] > 5 * nmad[2.0][0]
