"""Temperature scaling recovers a known mis-scaling of the uncertainties."""

import numpy as np
import pytest

from slitcli.errors import InputError
from slitcli.evaluation.metrics import calibration_error
from slitcli.nn.calibration import fit_temperature, temperature_objective


def gaussian_predictions(n=5000, seed=11):
    """Redshifts scattered by N(0, sigma) with per-source sigma: calibrated when zerr = sigma."""
    rng = np.random.default_rng(seed)
    z_true = rng.uniform(0.1, 2.0, n)
    sigma = 0.02 * (1 + z_true) * rng.uniform(0.5, 2.0, n)
    z_pred = z_true + rng.normal(0.0, sigma)
    return z_pred, sigma, z_true


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
    sigma = 0.01 * (1 + z_true)
    z_pred = z_true + sigma * rng.standard_t(3.0, z_true.size) / student_t.ppf(0.841344746, 3.0)
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
