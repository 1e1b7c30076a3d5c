"""The hybrid route: search range, the posterior of prior x likelihood against its analytic form, the temperature fit."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from slitcli.classic.template_fit import TemplateFitConfig
from slitcli.hybrid import HybridConfig, Search, coverage, fit_temperature, posterior, search_range
from conftest import invoke

T_GRID = TemplateFitConfig().grid()
STEP = float(T_GRID[1] - T_GRID[0])


def gaussian(t, centre, sigma):
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def quadratic_search(centre: float, sigma: float, lo: int = 0, hi: int | None = None, npix: int = 10_000) -> Search:
    """A chi-square ((t - centre) / sigma)^2 at every grid point of [lo, hi] (chi2_min ~ 0, so s = 1)."""
    known = np.arange(lo, T_GRID.size if hi is None else hi + 1)
    return Search(known, ((T_GRID[known] - centre) / sigma) ** 2, npix)


def test_search_range_covers_the_prior_above_its_floor_plus_the_margin():
    cfg = HybridConfig(prior_floor=1e-3, margin_t=0.02)
    prior = gaussian(T_GRID, 0.5, 0.01)
    lo, hi = search_range(prior, T_GRID, cfg)
    half_width = 0.01 * np.sqrt(-2 * np.log(1e-3)) + 0.02  # where the Gaussian falls to 1e-3 of its peak, plus the margin
    assert T_GRID[lo] == pytest.approx(0.5 - half_width, abs=2 * STEP)
    assert T_GRID[hi] == pytest.approx(0.5 + half_width, abs=2 * STEP)
    assert search_range(np.ones_like(T_GRID), T_GRID, cfg) == (0, T_GRID.size - 1)
    assert search_range(gaussian(T_GRID, 0.0, 0.01), T_GRID, cfg)[0] == 0  # clipped at the grid's end


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_posterior_of_two_gaussians_is_their_analytic_product(temperature):
    """Gaussian likelihood (sigma_L sqrt(T)) x Gaussian prior: a Gaussian of known mean and width.

    Z stays the chi-square minimum of the basin (the template's placement of the line).
    """
    t_like, sigma_l, t_prior, sigma_p = 0.4, 0.004, 0.407, 0.006
    fit = posterior(quadratic_search(t_like, sigma_l), gaussian(T_GRID, t_prior, sigma_p), T_GRID, temperature).fit
    var_l = sigma_l**2 * temperature
    sigma = np.sqrt(1 / (1 / var_l + 1 / sigma_p**2))
    mean = sigma**2 * (t_like / var_l + t_prior / sigma_p**2)
    assert np.log1p(fit.z) == pytest.approx(t_like, abs=0.1 * STEP)
    half = 0.5 * (np.log1p(fit.quantiles[0.8413447460685429]) - np.log1p(fit.quantiles[0.15865525393145707]))
    assert half == pytest.approx(sigma, rel=0.02)
    assert np.log1p(fit.quantiles[0.5]) == pytest.approx(mean, abs=0.1 * STEP)
    assert np.trapezoid(fit.pdf_t, T_GRID) == pytest.approx(1.0, rel=1e-9)


def test_the_prior_removes_a_deeper_minimum_the_cnn_excludes():
    """A chi-square with its best minimum at t = 0.2 and a second one at 0.6 (chi2 + 4): with the
    prior at 0.6, the posterior sits at 0.6 and ZAGREE tells that the template's best lay elsewhere."""
    known = np.arange(T_GRID.size)
    chi2 = np.minimum(((T_GRID - 0.2) / 0.003) ** 2, ((T_GRID - 0.6) / 0.003) ** 2 + 4.0)
    found = Search(known, chi2, 10_000)
    hybrid = posterior(found, gaussian(T_GRID, 0.6, 0.02), T_GRID)
    assert np.log1p(hybrid.fit.z) == pytest.approx(0.6, abs=STEP)
    assert np.log1p(hybrid.z_template) == pytest.approx(0.2, abs=STEP)
    assert hybrid.agreement < 1e-10
    agree = posterior(found, gaussian(T_GRID, 0.2, 0.02), T_GRID)
    assert np.log1p(agree.fit.z) == pytest.approx(0.2, abs=STEP) and agree.agreement > 0.99


def test_fit_temperature_restores_coverage_of_a_likelihood_too_narrow_by_two():
    """True scatter twice the chi-square's sigma: the temperature is 4 and the intervals cover as claimed."""
    rng = np.random.default_rng(5)
    sigma_claimed, n = 0.003, 400
    centres = rng.uniform(0.3, 0.8, n)
    truth = centres + rng.normal(0.0, 2 * sigma_claimed, n)
    lo, hi = (np.searchsorted(T_GRID, c - 0.05) for c in (centres, centres))
    searches = [quadratic_search(c, sigma_claimed, int(a), int(b) + 250) for c, a, b in zip(centres, lo, hi, strict=True)]
    flat = [np.ones_like(T_GRID)] * n
    narrow = coverage(searches, flat, T_GRID, truth, 1.0)
    assert narrow[0] == pytest.approx(0.383, abs=0.06)  # P(|x| < sigma/2) of a Gaussian
    temperature, cov = fit_temperature(searches, flat, T_GRID, truth, temperatures=[1.0, 2.0, 4.0, 8.0])
    assert temperature == 4.0
    assert cov == pytest.approx([0.6827, 0.9545], abs=0.04)


@pytest.mark.slow
def test_predict_hybrid_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sample = tmp_path / "s.fits"
    assert invoke("simulate", "-n", 6, "--seed", 11, "-o", sample, "-q").exit_code == 0
    result = invoke("predict", sample, "--method", "hybrid", "--n-mc", 10, "--pdf", "-o", tmp_path / "z.fits")
    assert result.exit_code == 0, result.output
    table = Table.read(tmp_path / "z.fits", hdu="REDSHIFTS")
    from slitcli.nn.modelfile import load_model

    assert table.meta["METHOD"] == "hybrid" and table.meta["HYBTEMP"] == load_model(None).hybrid_temperature == 4.0
    assert {"Z_CNN", "ZERR_CNN", "ZTEMPL", "ZAGREE", "NSEARCH"} <= set(table.colnames)
    assert np.all(table["NSEARCH"] < T_GRID.size)  # the likelihood is computed where the prior has mass only
    q = np.array([table[c] for c in ("Z025", "Z160", "Z500", "Z840", "Z975")])
    assert np.all(np.diff(q, axis=0) >= 0) and np.all((table["Z"] >= q[0]) & (table["Z"] <= q[-1]))
    from slitcli.io.zpdf import read_zpdf

    grid, pdf = read_zpdf(tmp_path / "z.fits")
    assert np.allclose(np.trapezoid(pdf, grid, axis=1), 1.0, rtol=1e-5)
    assert np.all((table["ZAGREE"] >= 0) & (table["ZAGREE"] <= 1))
