"""Every metric against numbers worked out by hand on a five-source table."""

import numpy as np
import pytest

from slitcli.evaluation import metrics

# The table. 1 + z_true = [1, 2, 1, 2, 4].
Z_TRUE = np.array([0.0, 1.0, 0.0, 1.0, 3.0])
DZ = np.array([0.01, -0.02, 0.30, 0.06, -0.80])
Z_PRED = Z_TRUE + DZ  # [0.01, 0.98, 0.30, 1.06, 2.20]
ZERR = np.array([0.01, 0.04, 0.10, 0.02, 0.40])
# dz / (1 + z)        = [0.01, -0.01, 0.30, 0.03, -0.20]
# zerr / (1 + z)      = [0.01, 0.02, 0.10, 0.01, 0.10]
# The uncertainty metrics work in t = ln(1 + z) (slitcli.io.redshift):
# ln(1+z_true) - ln(1+z_pred) = [-ln 1.01, -ln 0.99, -ln 1.3, -ln 1.03, -ln 0.8]
#                             = [-0.0099503, 0.0100503, -0.2623643, -0.0295588, 0.2231436]
# s = zerr / (1 + z_pred)     = [0.01/1.01, 0.04/1.98, 0.1/1.3, 0.02/2.06, 0.4/3.2]
# u = their ratio             = [-1.004983, 0.497492, -3.410735, -3.044557, 1.785148]
# r = |u|                     = [1.004983, 0.497492, 3.410735, 3.044557, 1.785148]
U = np.array([-1.004983423, 0.497491622, -3.410735438, -3.044556629, 1.785148407])
PHI_U0 = 0.157452418  # Phi(-1.004983), standard normal CDF


def test_sigma_nmad():
    # median(dz) = median(-0.8, -0.02, 0.01, 0.06, 0.30) = 0.01
    # |dz - 0.01| = [0, 0.03, 0.29, 0.05, 0.81]; / (1+z) = [0, 0.015, 0.29, 0.025, 0.2025]
    # median = 0.025; times 1.48 = 0.037
    assert metrics.sigma_nmad(Z_PRED, Z_TRUE) == pytest.approx(0.037)


def test_outlier_fractions():
    # |dz|/(1+z) = [0.01, 0.01, 0.30, 0.03, 0.20]: three above 0.02, two above 0.15
    assert metrics.outlier_fraction(Z_PRED, Z_TRUE, 0.02) == pytest.approx(0.6)
    assert metrics.outlier_fraction(Z_PRED, Z_TRUE, 0.15) == pytest.approx(0.4)
    assert metrics.outlier_fraction(Z_PRED, Z_TRUE, 0.5) == 0.0


def test_biases():
    # sorted dz/(1+z) = [-0.20, -0.01, 0.01, 0.03, 0.30]: median 0.01; sum 0.13, mean 0.026
    assert metrics.bias_median(Z_PRED, Z_TRUE) == pytest.approx(0.01)
    assert metrics.bias_mean(Z_PRED, Z_TRUE) == pytest.approx(0.026)


def test_mean_zerr():
    # mean([0.01, 0.02, 0.10, 0.01, 0.10]) = 0.24 / 5
    assert metrics.mean_zerr(ZERR, Z_TRUE) == pytest.approx(0.048)


def test_normalised_residuals_are_in_ln_1_plus_z():
    np.testing.assert_allclose(metrics.normalised_residuals(Z_PRED, ZERR, Z_TRUE), np.abs(U), rtol=1e-8)


def test_coverage():
    # k(0.68) = Phi^-1(0.84) = 0.9945: only r = 0.497 inside -> 1/5
    # k(0.95) = Phi^-1(0.975) = 1.9600: r = 0.497, 1.005 and 1.785 inside -> 3/5
    # k(0.50) = Phi^-1(0.75) = 0.6745: r = 0.497 -> 1/5;  k(0.999) = 3.29: all but r = 3.41
    assert metrics.coverage(Z_PRED, ZERR, Z_TRUE, 0.68) == pytest.approx(0.2)
    assert metrics.coverage(Z_PRED, ZERR, Z_TRUE, 0.95) == pytest.approx(0.6)
    assert metrics.coverage(Z_PRED, ZERR, Z_TRUE, 0.50) == pytest.approx(0.2)
    assert metrics.coverage(Z_PRED, ZERR, Z_TRUE, 0.999) == pytest.approx(0.8)


def test_calibration_curve_and_error_on_chosen_levels():
    # Thresholds: k reaches r at c = 2 Phi(r) - 1: r = 0.497 at 0.3812, 1.005 at 0.6851,
    # 1.785 at 0.9258, 3.045 at 0.9977, 3.411 at 0.9994. So c = 0.3 -> 0, 0.5 -> 0.2, 0.9 -> 0.4, 0.98 -> 0.6.
    levels, cov = metrics.calibration_curve(Z_PRED, ZERR, Z_TRUE, levels=[0.3, 0.5, 0.9, 0.98])
    np.testing.assert_allclose(levels, [0.3, 0.5, 0.9, 0.98])
    np.testing.assert_allclose(cov, [0.0, 0.2, 0.4, 0.6])
    # RMS of [-0.3, -0.3, -0.5, -0.38]: sqrt((0.09 + 0.09 + 0.25 + 0.1444) / 4) = sqrt(0.1436)
    assert metrics.calibration_error(Z_PRED, ZERR, Z_TRUE, levels=[0.3, 0.5, 0.9, 0.98]) == pytest.approx(0.378946, abs=1e-6)


def test_calibration_curve_default_levels():
    # Levels 0.10, 0.11, ..., 0.99 (90). Coverage 0 for 0.10-0.38 (29 levels),
    # 0.2 for 0.39-0.68 (30), 0.4 for 0.69-0.92 (24), 0.6 for 0.93-0.99 (7).
    levels, cov = metrics.calibration_curve(Z_PRED, ZERR, Z_TRUE)
    assert levels.size == 90
    assert levels[0] == pytest.approx(0.10) and levels[-1] == pytest.approx(0.99)
    expected = np.r_[np.zeros(29), np.full(30, 0.2), np.full(24, 0.4), np.full(7, 0.6)]
    np.testing.assert_allclose(cov, expected)
    # Squared deviations summed per run: sum c^2 (0.10..0.38) = 1.8734;
    # sum (c - 0.2)^2 (0.39..0.68) = 3.5915; sum (c - 0.4)^2 (0.69..0.92) = 4.0516;
    # sum (c - 0.6)^2 (0.93..0.99) = 0.9100. Total 10.4265 / 90 = 0.1158500; sqrt = 0.3403674
    assert metrics.calibration_error(Z_PRED, ZERR, Z_TRUE) == pytest.approx(0.3403674, abs=1e-7)


def test_pit_and_ks():
    # PIT = Phi(u); Phi of U from tables: [0.1574524, 0.6905788, 0.0003239, 0.0011651, 0.9628814]
    np.testing.assert_allclose(metrics.pit(Z_PRED, ZERR, Z_TRUE), [PHI_U0, 0.6905788, 0.0003239, 0.0011651, 0.9628814], rtol=1e-4, atol=1e-7)
    # sorted PIT = [0.00032, 0.00117, 0.15745, 0.69058, 0.96288]
    # i/5 - u_i       = [0.19968, 0.39883, 0.44255, 0.10942, 0.03712]  -> max 0.6 - Phi(-1.004983)
    # u_i - (i-1)/5   = [0.00032, -0.19883, -0.24255, 0.09058, 0.16288]
    assert metrics.pit_ks(Z_PRED, ZERR, Z_TRUE) == pytest.approx(0.6 - PHI_U0, rel=1e-8)


def test_pit_ks_of_perfect_grid_is_half_a_step():
    # PIT values exactly at the bin centres (i - 0.5)/n: KS distance is 1/(2n).
    # z_pred = 0 and zerr = 1: s = 1 and u = ln(1 + z_true).
    u = (np.arange(1, 11) - 0.5) / 10
    from scipy.stats import norm

    assert metrics.pit_ks(np.zeros(10), np.ones(10), np.expm1(norm.ppf(u))) == pytest.approx(0.05)


def test_point_metrics_keys_values_and_qp_aliases():
    m = metrics.point_metrics(Z_PRED, ZERR, Z_TRUE)
    assert tuple(m) == metrics.METRIC_KEYS
    expected = {
        "n": 5, "sigma_nmad": 0.037, "outlier_frac_002": 0.6, "outlier_frac_015": 0.4,
        "bias_median": 0.01, "bias_mean": 0.026, "mean_zerr": 0.048, "coverage_68": 0.2,
        "coverage_95": 0.6, "calibration_error": 0.3403674, "pit_ks": 0.6 - PHI_U0,
        "point_stats_sigma_mad": 0.037, "point_outlier_rate": 0.4, "point_bias": 0.01,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-7), key
    assert isinstance(m["n"], int)
    assert m["point_stats_sigma_mad"] == m["sigma_nmad"]
    assert m["point_outlier_rate"] == m["outlier_frac_015"]
    assert m["point_bias"] == m["bias_median"]


def test_empty_metrics():
    m = metrics.empty_metrics()
    assert tuple(m) == metrics.METRIC_KEYS and m["n"] == 0
    assert all(np.isnan(v) for k, v in m.items() if k != "n")


def test_zero_zerr_counts_only_exact_predictions():
    # zerr = 0: covered (and PIT 0.5) only when dz = 0
    z_true = np.array([1.0, 1.0])
    assert metrics.coverage(np.array([1.0, 1.1]), np.zeros(2), z_true, 0.68) == 0.5
    np.testing.assert_allclose(metrics.pit(np.array([1.0, 1.1]), np.zeros(2), z_true), [0.5, 0.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.sigma_nmad([], []),
        lambda: metrics.outlier_fraction(np.array([]), np.array([]), 0.15),
        lambda: metrics.point_metrics([], [], []),
        lambda: metrics.pit_ks([], [], []),
    ],
)
def test_empty_input_raises(call):
    with pytest.raises(ValueError, match="empty"):
        call()


def test_bad_input_raises():
    with pytest.raises(ValueError, match="one length"):
        metrics.bias_mean([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="zerr"):
        metrics.coverage([0.1], [-0.01], [0.1], 0.68)
    with pytest.raises(ValueError, match="levels"):
        metrics.coverage([0.1], [0.01], [0.1], 1.0)


def test_student_t_half_width_and_quantiles():
    from scipy.stats import t as student_t

    # The 68.27% interval is +-1 zerr for any shape; the 95% one widens as the tails grow.
    assert metrics.half_width(0.682689492, dof=3.0) == pytest.approx(1.0, rel=1e-6)
    assert metrics.half_width(0.95, dof=3.0) == pytest.approx(student_t.ppf(0.975, 3) / student_t.ppf(0.841344746, 3), rel=1e-8)
    assert metrics.half_width(0.95, dof=3.0) > metrics.half_width(0.95) == pytest.approx(1.959964, rel=1e-6)
    assert metrics.half_width(0.95, dof=1e6) == pytest.approx(metrics.half_width(0.95), rel=1e-5)
    np.testing.assert_allclose(metrics.standard_quantile([0.16, 0.5, 0.84], dof=4.0), [-0.99411, 0.0, 0.99411], atol=1e-3)


def test_coverage_of_a_student_t_sample_is_nominal_with_its_dof():
    from scipy.stats import t as student_t

    rng = np.random.default_rng(0)
    dof = 3.0
    z_true = np.full(200_000, 1.0)
    zerr = np.full(z_true.size, 0.01)
    # Residuals drawn from the predictive distribution itself: t_3 scaled to a 68.27% half-width of zerr.
    z_pred = z_true + zerr * rng.standard_t(dof, z_true.size) / student_t.ppf(0.841344746, dof)
    assert metrics.coverage(z_pred, zerr, z_true, 0.68, dof) == pytest.approx(0.68, abs=0.004)
    assert metrics.coverage(z_pred, zerr, z_true, 0.95, dof) == pytest.approx(0.95, abs=0.003)
    assert metrics.coverage(z_pred, zerr, z_true, 0.95) < 0.92  # read as Gaussian, the tails are missed
    assert metrics.pit_ks(z_pred, zerr, z_true, dof) < 0.005
