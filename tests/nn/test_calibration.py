"""Temperature scaling recovers a known mis-scaling of the uncertainties."""

import numpy as np
import pytest

from slitcli.errors import InputError
from slitcli.evaluation.metrics import calibration_error
from slitcli.nn.calibration import fit_temperature, temperature_objective


def gaussian_predictions(n=5000, seed=11):
    """Predictions whose truths scatter by N(0, s) in ln(1+z), s per source: calibrated when zerr = sigma = s (1 + z_pred)."""
    rng = np.random.default_rng(seed)
    z_true = rng.uniform(0.1, 2.0, n)
    s = 0.02 * rng.uniform(0.5, 2.0, n)
    z_pred = np.expm1(np.log1p(z_true) - s * rng.standard_normal(n))
    return z_pred, s * (1 + z_pred), z_true


@pytest.mark.parametrize("scale, expected_t", [(0.5, 2.0), (2.0, 0.5), (1.0, 1.0)])
def test_recovers_the_temperature(scale, expected_t):
    z_pred, sigma, z_true = gaussian_predictions()
    zerr = scale * sigma
    t = fit_temperature(z_pred, zerr, z_true)
    assert t == pytest.approx(expected_t, rel=0.05)
    before, after = calibration_error(z_pred, zerr, z_true), calibration_error(z_pred, t * zerr, z_true)
    assert after < 0.02
    if scale != 1.0:
        assert after < before


def test_result_is_the_middle_of_the_flat_minimum():
    z_pred, sigma, z_true = gaussian_predictions(n=12, seed=3)
    t = fit_temperature(z_pred, sigma, z_true)
    dense = np.geomspace(0.05, 20.0, 200_000)
    values = temperature_objective(z_pred, sigma, z_true, dense)
    # The minimum of a dense independent grid, reached at t and on both sides of it...
    around = temperature_objective(z_pred, sigma, z_true, [t * (1 - 1e-6), t, t * (1 + 1e-6)])
    np.testing.assert_allclose(around, values.min(), rtol=0, atol=1e-15)
    # ...and t in the middle of the dense grid's run at the minimum.
    at_min = np.flatnonzero(values == values.min())
    run = at_min[: np.argmax(np.diff(at_min) > 1) + 1] if np.any(np.diff(at_min) > 1) else at_min
    assert dense[run[0]] < t < dense[run[-1]]
    assert t == pytest.approx(0.5 * (dense[run[0]] + dense[run[-1]]), rel=1e-4)


def test_objective_is_the_mean_squared_calibration_deviation():
    z_pred, sigma, z_true = gaussian_predictions(n=500, seed=5)
    value = temperature_objective(z_pred, sigma, z_true, [1.7])[0]
    assert value == pytest.approx(calibration_error(z_pred, 1.7 * sigma, z_true) ** 2)


def test_needs_ten_sources():
    z_pred, sigma, z_true = gaussian_predictions(n=9)
    with pytest.raises(InputError, match="at least 10 sources, got 9"):
        fit_temperature(z_pred, sigma, z_true)


@pytest.mark.parametrize("bad", [0.0, -0.01, np.nan])
def test_needs_positive_zerr(bad):
    z_pred, sigma, z_true = gaussian_predictions(n=20)
    sigma[4] = bad
    with pytest.raises(InputError, match="ZERR finite and > 0"):
        fit_temperature(z_pred, sigma, z_true)


def test_heavy_tails_are_fitted_with_their_shape():
    """Residuals with t_3 tails: no single Gaussian T fits 68% and 95%; the fitted (T, dof) does."""
    from scipy.stats import t as student_t

    from slitcli.evaluation.metrics import coverage
    from slitcli.nn.calibration import fit_calibration

    rng = np.random.default_rng(4)
    z_true = rng.uniform(0.1, 2.0, 20_000)
    z_pred = np.expm1(np.log1p(z_true) - 0.01 * rng.standard_t(3.0, z_true.size) / student_t.ppf(0.841344746, 3.0))
    sigma = 0.01 * (1 + z_pred)  # the 68.27% half-width in ln(1+z) is 0.01
    t_gauss = fit_temperature(z_pred, 2 * sigma, z_true)
    gauss = [coverage(z_pred, t_gauss * 2 * sigma, z_true, c) for c in (0.68, 0.95)]
    assert abs(gauss[0] - 0.68) > 0.03 or abs(gauss[1] - 0.95) > 0.03
    cal = fit_calibration(z_pred, 2 * sigma, z_true)
    assert cal.dof in (2.5, 3.0, 4.0) and cal.temperature == pytest.approx(0.5, rel=0.05) and cal.snr_power == 0.0
    for c in (0.68, 0.95):
        assert coverage(z_pred, cal.temperature * 2 * sigma, z_true, c, cal.dof) == pytest.approx(c, abs=0.01)


def test_gaussian_residuals_keep_light_tails():
    from slitcli.nn.calibration import fit_calibration

    z_pred, sigma, z_true = gaussian_predictions(20_000)
    cal = fit_calibration(z_pred, sigma, z_true)
    assert cal.dof >= 20 and cal.temperature == pytest.approx(1.0, rel=0.03)


def test_an_snr_dependent_mis_scaling_is_undone():
    """Raw errors 2x too large at SNR 1 and 2x too small at SNR 30: one T cannot fix both ends; T (snr/3)^p does."""
    from slitcli.evaluation.metrics import coverage
    from slitcli.nn.calibration import binned_objective, fit_calibration, snr_scale

    rng = np.random.default_rng(8)
    n = 20_000
    snr = np.exp(rng.uniform(0.0, np.log(30.0), n))
    z_true = rng.uniform(0.1, 2.0, n)
    sigma = 0.02 * (1 + z_true) / np.sqrt(snr)
    z_pred = z_true + rng.normal(0.0, sigma)
    raw = sigma * 2.0 * (snr / 1.0) ** (-np.log(4.0) / np.log(30.0))  # x2 at snr 1, x0.5 at snr 30
    cal = fit_calibration(z_pred, raw, z_true, snr)
    assert cal.snr_power == pytest.approx(np.log(4.0) / np.log(30.0), abs=0.06)
    assert cal.dof >= 10
    calibrated = cal.temperature * snr_scale(snr, cal.snr_power) * raw
    for lo in (1, 10):
        sel = snr >= lo
        assert coverage(z_pred[sel], calibrated[sel], z_true[sel], 0.68, cal.dof) == pytest.approx(0.68, abs=0.02)
    pooled = fit_calibration(z_pred, raw, z_true)
    assert binned_objective(z_pred, calibrated, z_true, snr, cal.dof) < 0.2 * binned_objective(z_pred, pooled.temperature * raw, z_true, snr, pooled.dof)


def test_tails_need_enough_sources():
    from slitcli.nn.calibration import MIN_TAIL_SOURCES, fit_calibration

    z_pred, sigma, z_true = gaussian_predictions(n=MIN_TAIL_SOURCES - 1)
    with pytest.raises(InputError, match=f"fitting the tails needs at least {MIN_TAIL_SOURCES} sources, got {MIN_TAIL_SOURCES - 1}"):
        fit_calibration(z_pred, sigma, z_true)
    assert fit_temperature(z_pred, sigma, z_true) == pytest.approx(1.0, rel=0.15)  # a Gaussian T is still fitted


def _stub_calibration_inputs(monkeypatch, n):
    """calibrate_model's prediction and truth replaced by `n` calibrated Gaussian predictions (no model needed)."""
    from types import SimpleNamespace

    from astropy.table import Table

    import slitcli.nn.calibration as calibration

    z_pred, sigma, z_true = gaussian_predictions(n)
    ids, snr = np.arange(1, n + 1), np.geomspace(1.0, 30.0, n)
    pred = Table({"SOURCE_ID": ids, "Z": z_pred, "ZERR": sigma, "SNR_GI": snr})
    truth = Table({"SOURCE_ID": ids, "Z_TRUE": z_true, "SNR_GI": snr})
    calls = []

    def predict_file(bundle, path, config, progress=None):
        calls.append(path)
        return pred.copy()

    monkeypatch.setattr(calibration, "predict_file", predict_file)
    monkeypatch.setattr(calibration, "read_truth", lambda path: truth)
    return SimpleNamespace(card={"training": {"config": {"min_snr": 1.0}}}, predictions=calls)


def test_calibrate_refuses_tails_from_too_few_sources(monkeypatch):
    """One line naming the sample file, the minimum and the way out, before any prediction; --gaussian still works."""
    from slitcli.nn.calibration import MIN_TAIL_SOURCES, calibrate_model
    from slitcli.nn.predict import PredictConfig

    n = MIN_TAIL_SOURCES - 1
    bundle = _stub_calibration_inputs(monkeypatch, n)
    with pytest.raises(InputError) as err:
        calibrate_model(bundle, "val.fits", PredictConfig(n_mc=2))
    msg = str(err.value)
    assert msg == f"val.fits: fitting the tails needs at least {MIN_TAIL_SOURCES} sources with SNR_GI >= 1, got {n}; use a larger sample or --gaussian"
    assert bundle.predictions == [] and "calibration" not in bundle.card
    result = calibrate_model(bundle, "val.fits", PredictConfig(n_mc=2), tails=False)
    assert result.n == n and result.dof == np.inf and result.temperature == pytest.approx(1.0, rel=0.15)


def test_calibrate_fits_tails_from_the_minimum(monkeypatch):
    from slitcli.nn.calibration import MIN_TAIL_SOURCES, calibrate_model
    from slitcli.nn.predict import PredictConfig

    bundle = _stub_calibration_inputs(monkeypatch, MIN_TAIL_SOURCES)
    result = calibrate_model(bundle, "val.fits", PredictConfig(n_mc=2))
    # Gaussian residuals keep light tails and a scale near 1 at the minimum sample size.
    assert result.n == MIN_TAIL_SOURCES and result.dof >= 10
    assert result.temperature == pytest.approx(1.0, rel=0.1) and abs(result.snr_power) <= 0.2
    assert bundle.card["calibration"]["n"] == MIN_TAIL_SOURCES


def test_the_dof_grid_has_finite_variance():
    from slitcli.nn.calibration import DOF_GRID

    assert min(DOF_GRID) > 2 and np.inf in DOF_GRID
