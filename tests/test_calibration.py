"""Temperature scaling recovers a known mis-scaling of the uncertainties."""

import numpy as np
import pytest

from slitcli.calibration import fit_temperature, temperature_objective
from slitcli.errors import InputError
from slitcli.metrics import calibration_error


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
