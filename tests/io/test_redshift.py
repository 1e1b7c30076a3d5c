"""The predictive distribution of a catalogue (slitcli.io.redshift): quantiles in ln(1+z), censored at 0,
and the same definition in the quantiles, the coverage and the PIT."""

import numpy as np
import pytest
from scipy.stats import norm
from scipy.stats import t as student_t

from slitcli.evaluation import metrics
from slitcli.io.redshift import QUANTILES, half_width, quantiles, standard_quantile

PHI_1 = norm.cdf(1.0)  # 0.841345: the 68.27% interval is Phi(-1)..Phi(1)


def draw_truths(rng, z, zerr, dof):
    """True redshifts drawn from the predictive distribution: ln(1 + z_true) = ln(1 + Z) + s eps."""
    eps = rng.standard_normal(z.size) if not np.isfinite(dof) else rng.standard_t(dof, z.size) / student_t.ppf(PHI_1, dof)
    return np.expm1(np.log1p(z) + zerr / (1 + z) * eps)


@pytest.mark.parametrize("dof", [np.inf, 3.0, 1.5])
def test_no_quantile_below_zero_near_z_zero(dof):
    # Z near 0 with ZERR as large as Z and larger (the linear Z + k ZERR would go negative), and one far from 0.
    z = np.array([0.0, 1e-4, 0.01, 0.05, 0.05, 0.2, 1.0])
    zerr = np.array([0.3, 0.5, 0.05, 0.05, 2.0, 0.4, 0.1])
    q = quantiles(z, zerr, dof)
    assert list(q) == list(QUANTILES)
    for name in QUANTILES:
        assert np.all(q[name] >= 0.0), name
    # Ordered, Z500 = Z, and censored exactly where ln(1 + Z) + k s < 0.
    names = list(QUANTILES)
    for lo, hi in zip(names[:-1], names[1:], strict=True):
        assert np.all(q[lo] <= q[hi])
    np.testing.assert_allclose(q["Z500"], z, rtol=1e-12, atol=1e-15)
    k = standard_quantile(0.025, dof)
    raw = np.expm1(np.log1p(z) + k * zerr / (1 + z))
    np.testing.assert_array_equal(q["Z025"] == 0.0, raw < 0.0)
    assert np.any(q["Z025"] == 0.0) and np.any(q["Z025"] > 0.0)


def test_quantiles_are_those_of_ln_1_plus_z():
    # Z = 1, ZERR = 0.2: s = 0.1 in t; Z840 = 2 exp(0.1 Phi^-1(0.84)) - 1, not 1 + 0.2 Phi^-1(0.84).
    q = quantiles(np.array([1.0]), np.array([0.2]))
    assert q["Z840"][0] == pytest.approx(2 * np.exp(0.1 * 0.9944578832) - 1, rel=1e-9)
    assert q["Z160"][0] == pytest.approx(2 * np.exp(-0.1 * 0.9944578832) - 1, rel=1e-9)
    assert q["Z840"][0] - 1 > 1 - q["Z160"][0]  # skewed in z


@pytest.mark.parametrize("dof", [np.inf, 3.0])
def test_intervals_hold_their_probability_for_a_simulated_distribution(dof):
    """Truths drawn from the stated distribution: Z160-Z840 holds 68%, ln(1+Z) +- ZERR/(1+Z) 68.27%, Z025-Z975 95%."""
    rng = np.random.default_rng(7)
    n = 400_000
    z = rng.uniform(0.3, 2.0, n)
    zerr = 0.05 * (1 + z) * rng.uniform(0.5, 2.0, n)
    z_true = draw_truths(rng, z, zerr, dof)
    q = quantiles(z, zerr, dof)
    tol = 4 * np.sqrt(0.25 / n)  # 4 sigma of a binomial fraction
    assert np.mean((q["Z160"] <= z_true) & (z_true <= q["Z840"])) == pytest.approx(0.68, abs=tol)
    assert np.mean((q["Z025"] <= z_true) & (z_true <= q["Z975"])) == pytest.approx(0.95, abs=tol)
    t, s = np.log1p(z), zerr / (1 + z)
    assert np.mean(np.abs(np.log1p(z_true) - t) <= s) == pytest.approx(2 * PHI_1 - 1, abs=tol)
    # With t tails, the Gaussian reading of ZERR (1.96 ZERR for 95%) misses the tails.
    if np.isfinite(dof):
        assert np.mean(np.abs(np.log1p(z_true) - t) <= half_width(0.95) * s) < 0.93


@pytest.mark.parametrize("dof", [np.inf, 3.0])
def test_coverage_and_pit_count_the_truths_between_the_quantiles(dof):
    """For truths >= 0, evaluate's coverage is exactly the fraction between the published quantiles, censoring included."""
    rng = np.random.default_rng(3)
    n = 20_000
    z_true = rng.uniform(0.0, 1.0, n)
    zerr = rng.uniform(0.01, 0.3, n)
    z = np.expm1(np.log1p(z_true) + zerr * rng.standard_normal(n))  # mis-calibrated on purpose; many near 0
    q = quantiles(z, zerr, dof)
    assert np.mean(q["Z025"] == 0.0) > 0.05  # censoring is exercised
    between = {c: np.mean((q[lo] <= z_true) & (z_true <= q[hi])) for c, lo, hi in ((0.68, "Z160", "Z840"), (0.95, "Z025", "Z975"))}
    m = metrics.point_metrics(z, zerr, z_true, dof)
    assert m["coverage_68"] == between[0.68]
    assert m["coverage_95"] == between[0.95]
    # The PIT puts a truth below Z160 exactly when it is below 0.16.
    pit = metrics.pit(z, zerr, z_true, dof)
    np.testing.assert_array_equal(pit < 0.16, z_true < q["Z160"])
    np.testing.assert_array_equal(pit > 0.975, z_true > q["Z975"])


def test_summarise_publishes_these_quantiles():
    """The CNN's catalogue rows: Z near 0 with a large ZERR give no negative quantile, and the same numbers as `quantiles`."""
    from slitcli.nn.predict import summarise

    rng = np.random.default_rng(0)
    mu_t = rng.normal([[0.0, 0.01, 0.5]], 0.05, size=(50, 3))
    logvar_t = np.full((50, 3), np.log(0.2**2))  # s about 0.2 in t: Z025 well below 0 if linear in z
    out = summarise(mu_t, logvar_t, temperature=1.5, dof=3.0)
    expected = quantiles(out["Z"], out["ZERR"], 3.0)
    for name in QUANTILES:
        assert np.all(out[name] >= 0.0)
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-12)
    assert np.all(out["Z"] + standard_quantile(0.025, 3.0) * out["ZERR"] < 0)  # the old linear formula would be negative


def test_odds_of_a_gaussian_is_its_mass_within_two_percent():
    """ODDS = P(|t - t0| within ln(1 -+ 0.02)) of a Gaussian in t of sigma ZERR / (1 + Z)."""
    from scipy.stats import norm

    from slitcli.io.redshift import odds

    z, zerr = np.array([0.5, 0.5, 1.2]), np.array([0.003, 0.03, 0.3])
    sigma = zerr / (1 + z)
    expected = norm.cdf(np.log(1.02) / sigma) - norm.cdf(np.log(0.98) / sigma)
    np.testing.assert_allclose(odds(z, zerr), expected, rtol=1e-12)
    assert odds([0.5], [0.003])[0] > 0.99 and odds([1.2], [0.3])[0] < 0.15
    # Student t tails with the same 68% half-width put less mass in the core's +-2%.
    assert odds([0.5], [0.03], dof=3.0)[0] < odds([0.5], [0.03])[0]


def test_odds_from_a_tabulated_cdf_matches_the_analytic_gaussian():
    from scipy.stats import norm

    from slitcli.io.redshift import odds_from_cdf

    t = np.linspace(0.0, 1.1, 2748)
    t0, sigma = 0.41, 0.02
    expected = norm.cdf(np.log(1.02) / sigma) - norm.cdf(np.log(0.98) / sigma)
    assert odds_from_cdf(t0, t, norm.cdf((t - t0) / sigma)) == pytest.approx(expected, abs=1e-4)


def test_little_coverage_is_set_when_a_spectrum_runs_off_its_exposures():
    """A cutout whose right quarter lies outside every exposure (DQ flagged there, as field
    cutouts near an edge are) gets LITTLE_COVERAGE; one with a flagged cosmic-ray track across
    the trace, or one with 9% of its columns lost, does not."""
    from slitcli.io.redshift import ZWARN_BITS, data_zwarn, lost_columns

    n, ny, nx = 4, 40, 480
    sci = np.ones((n, 2, ny, nx), np.float32)
    dq = np.zeros((n, 2, ny, nx), np.int32)
    dq[0, 1, :, 360:] = 1  # off the exposures: 25% of the GI columns
    dq[1, 0, 10:30, 100] = 1  # a cosmic-ray track across the trace: one column of 480
    dq[2, 0, :, : int(0.09 * nx)] = 1  # 9% lost: below the threshold
    dq[3, 1, :18, :] = 1  # rows above the trace uncovered: the trace itself has data
    lost = lost_columns(dq)
    assert lost[0, 1] == pytest.approx(0.25) and lost[1, 0] == pytest.approx(1 / nx)
    zwarn = data_zwarn(sci, dq, np.full(n, 5.0))
    assert [bool(z & ZWARN_BITS["LITTLE_COVERAGE"]) for z in zwarn] == [True, False, False, False]
