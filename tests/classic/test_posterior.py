"""The template likelihood as a PDF, times a prior: against analytic forms; the temperature fit restores coverage."""

from __future__ import annotations

import numpy as np
import pytest

from slitcli.classic.posterior import coverage, fit_temperature, posterior
from slitcli.classic.template_fit import Search, TemplateFitConfig

T_GRID = TemplateFitConfig().grid()
STEP = float(T_GRID[1] - T_GRID[0])

def gaussian(t, centre, sigma):
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def quadratic_search(centre: float, sigma: float, lo: int = 0, hi: int | None = None, npix: int = 10_000) -> Search:
    """A chi-square ((t - centre) / sigma)^2 at every grid point of [lo, hi] (chi2_min ~ 0, so s = 1)."""
    known = np.arange(lo, T_GRID.size if hi is None else hi + 1)
    return Search(known, ((T_GRID[known] - centre) / sigma) ** 2, npix)


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


def test_template_mismatch_keeps_the_prior_where_the_template_fits_only_far_in_its_tail():
    """The templates' only minimum lies 20 prior sigmas away (a galaxy they cannot fit): with a
    mismatch probability the posterior is the prior, without it the far minimum takes all;
    where the two agree, the mismatch leaves the likelihood's core as it was."""
    t_prior, sigma_p = 0.6, 0.02
    prior = gaussian(T_GRID, t_prior, sigma_p)
    far = posterior(quadratic_search(0.2, 0.002), prior, T_GRID, mismatch=1e-3).fit
    assert np.log1p(far.quantiles[0.5]) == pytest.approx(t_prior, abs=STEP)
    half = 0.5 * (np.log1p(far.quantiles[0.8413447460685429]) - np.log1p(far.quantiles[0.15865525393145707]))
    assert half == pytest.approx(sigma_p, rel=0.02)
    assert np.log1p(posterior(quadratic_search(0.2, 0.002), prior, T_GRID).fit.z) == pytest.approx(0.2, abs=0.01)  # the prior tilts it
    near = posterior(quadratic_search(0.605, 0.002), prior, T_GRID, mismatch=1e-3).fit
    core = np.abs(T_GRID - 0.605) < 0.006
    # The flat part's mass, p x 1 against the core's prior(0.605) x sqrt(2 pi) 0.002: about 1%.
    assert np.trapezoid(near.pdf_t * core, T_GRID) == pytest.approx(1.0, abs=0.015)
    assert np.log1p(near.z) == pytest.approx(0.605, abs=0.1 * STEP)


def test_z_leaves_a_narrow_spike_that_holds_little_of_the_mass():
    """A chi-square flat at 12 but for a dip to 0 of width 0.004 at t = 0.3, under a prior
    at 0.45 +- 0.05: the spike is the posterior's mode but holds under a tenth of the mass,
    so for a faint source Z is taken about the median, in the bulk near 0.45; a prior on the
    spike keeps it, and so does a bright source."""
    known = np.arange(T_GRID.size)
    chi2 = 12.0 - 12.0 * np.exp(-0.5 * ((T_GRID - 0.3) / 0.004) ** 2)
    fit = posterior(Search(known, chi2, 10_000), gaussian(T_GRID, 0.45, 0.05), T_GRID, faint=True).fit
    assert T_GRID[np.argmax(fit.pdf_t)] == pytest.approx(0.3, abs=STEP)
    assert np.log1p(fit.z) == pytest.approx(np.log1p(fit.quantiles[0.5]), abs=STEP) and abs(np.log1p(fit.z) - 0.45) < 0.02
    kept = posterior(Search(known, chi2, 10_000), gaussian(T_GRID, 0.31, 0.05), T_GRID, faint=True).fit
    assert np.log1p(kept.z) == pytest.approx(0.3, abs=0.1 * STEP) and kept.odds > 0.5
    bright = posterior(Search(known, chi2, 10_000), gaussian(T_GRID, 0.45, 0.05), T_GRID).fit  # a bright source: the spike is a line
    assert np.log1p(bright.z) == pytest.approx(0.3, abs=0.1 * STEP)


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
    temperature, floor, cov = fit_temperature(searches, flat, T_GRID, truth, temperatures=[1.0, 2.0, 4.0, 8.0])
    assert temperature == 4.0 and floor <= 0.0004  # a floor under 7% of the 0.006 width in quadrature: noise
    assert cov == pytest.approx([0.6827, 0.9545], abs=0.04)


def test_fit_temperature_finds_the_error_floor_of_a_scatter_the_chi_square_does_not_see():
    """Claimed sigma 0.0003 in t, true scatter hypot(0.0003, 0.0008): no temperature of the
    grid reaches it, the floor 0.0008 does; `smooth` adds a floor in quadrature."""
    rng = np.random.default_rng(6)
    sigma_claimed, n = 0.0003, 300
    centres = rng.uniform(0.3, 0.8, n)
    truth = centres + rng.normal(0.0, np.hypot(0.0003, 0.0008), n)
    lo = np.searchsorted(T_GRID, centres - 0.02)
    searches = [quadratic_search(c, sigma_claimed, int(a), int(a) + 100) for c, a in zip(centres, lo, strict=True)]
    flat = [np.ones_like(T_GRID)] * n
    temperature, floor, cov = fit_temperature(searches, flat, T_GRID, truth, temperatures=[1.0, 2.0], floors=(0.0, 0.0004, 0.0008, 0.0016))
    assert floor == 0.0008 and temperature in (1.0, 2.0)
    assert cov == pytest.approx([0.6827, 0.9545], abs=0.05)
    from slitcli.classic.template_fit import smooth

    pdf = np.exp(-0.5 * ((T_GRID - 0.5) / 0.001) ** 2)
    wide = smooth(pdf, STEP, 0.002)
    sd = lambda p: np.sqrt(np.sum(p * (T_GRID - 0.5) ** 2) / np.sum(p))  # noqa: E731
    assert sd(wide) == pytest.approx(np.hypot(0.001, 0.002), rel=0.01)
    assert np.sum(wide) == pytest.approx(np.sum(pdf), rel=1e-9)


def test_template_temperature_widens_the_fit_by_its_square_root():
    """One emission-line template on 300 pixels (line at 100 + 2000 (t - 0.4) pixels): the
    template route's Z does not move with the temperature, ZERR grows by sqrt(T)."""
    from slitcli.classic.template_fit import dense_chi2, fit_redshift

    pix = np.arange(300.0)

    def model_fn(index):
        centres = 100.0 + 2000.0 * (T_GRID[index] - 0.4)
        return np.exp(-0.5 * ((pix[None, :] - centres[:, None]) / 1.5) ** 2)[:, None, :]

    rng = np.random.default_rng(2)
    t0 = 0.43
    flux = model_fn(np.array([np.argmin(np.abs(T_GRID - t0))]))[0, 0] * 0.5 + rng.normal(0.0, 0.05, pix.size)
    ivar = np.full(pix.size, 1 / 0.05**2)
    configs = [TemplateFitConfig(temperature=1.0), TemplateFitConfig(temperature=4.0), TemplateFitConfig(error_floor=0.003)]
    fits = [fit_redshift(dense_chi2(model_fn, flux, ivar), T_GRID, pix.size, c, with_pdf=True) for c in configs]
    # A core narrower than two grid steps, widened past them by a floor: still a PDF.
    bright = fit_redshift(dense_chi2(model_fn, flux * 30, ivar), T_GRID, pix.size, TemplateFitConfig(error_floor=0.0008), with_pdf=True)
    assert np.all(np.isfinite(bright.pdf_t)) and bright.pdf_t.max() > 0 and all(np.all(np.isfinite(f.pdf_t)) for f in fits)
    half = [0.5 * (np.log1p(f.quantiles[0.8413447460685429]) - np.log1p(f.quantiles[0.15865525393145707])) for f in fits]
    # The error floor adds in quadrature, Z unmoved.
    assert half[2] == pytest.approx(np.hypot(half[0], 0.003), rel=0.05) and fits[2].z == fits[0].z
    assert fits[0].z == fits[1].z
    assert np.log1p(fits[0].z) == pytest.approx(t0, abs=3 * STEP)
    assert half[1] / half[0] == pytest.approx(2.0, rel=0.05)
    assert fits[0].search.chi2.min() == pytest.approx(fits[0].chi2)
    # ODDS (mass within +-2% of 1 + Z): a line placed to a fraction of a pixel has all of it.
    assert fits[0].odds == pytest.approx(1.0) and fits[1].odds == pytest.approx(1.0)


def test_fit_offset_recovers_the_templates_bias_from_the_bright_sources():
    """Chi-square minima 0.0008 above the truth with a 0.0005 scatter on 200 bright sources,
    plus faint ones and catastrophic failures that must not count: the median returns 0.0008."""
    from slitcli.classic.posterior import OFFSET_SNR, fit_offset

    rng = np.random.default_rng(11)
    n = 200
    truth = rng.uniform(0.2, 0.6, n)
    minima = truth + 0.0008 + rng.normal(0.0, 0.0005, n)
    snr = np.full(n, 2 * OFFSET_SNR)
    minima[:20] = truth[:20] + 0.3  # catastrophic: another line taken for this one
    snr[20:60] = 0.5 * OFFSET_SNR  # faint, far off
    minima[20:60] = truth[20:60] - 0.005
    searches = [quadratic_search(m, 0.001, int(np.searchsorted(T_GRID, m)) - 30, int(np.searchsorted(T_GRID, m)) + 30) for m in minima]
    assert fit_offset(searches, T_GRID, truth, snr) == pytest.approx(0.0008, abs=0.0001)
    assert fit_offset(searches[:15], T_GRID, truth[:15], snr[:15]) == 0.0  # too few to say


@pytest.mark.parametrize("prior_centre", [None, 0.45])
def test_an_offset_moves_the_likelihood_not_the_prior(prior_centre):
    """The chi-square at grid t is the likelihood of t - offset: under a flat prior Z, the
    quantiles and the PDF move by -offset; under a prior 4x narrower than the likelihood the
    product moves by offset / 17 (the likelihood's weight, 1 / (1 + 4^2))."""
    offset = 0.002
    search = quadratic_search(0.45, 0.004)
    prior = np.ones_like(T_GRID) if prior_centre is None else gaussian(T_GRID, prior_centre, 0.001)
    plain, moved = (posterior(search, prior, T_GRID, offset=o).fit for o in (0.0, offset))
    shift = offset if prior_centre is None else offset / 17
    for q in (0.5, 0.15865525393145707, 0.8413447460685429):
        assert np.log1p(moved.quantiles[q]) == pytest.approx(np.log1p(plain.quantiles[q]) - shift, abs=0.05 * STEP + 0.02 * shift)
    assert np.log1p(moved.z) == pytest.approx(np.log1p(plain.z) - shift, abs=0.05 * STEP + 0.02 * shift)
    if prior_centre is None:
        assert moved.pdf_t == pytest.approx(np.interp(T_GRID + offset, T_GRID, plain.pdf_t), abs=2e-3 * plain.pdf_t.max())


def test_template_route_offset_moves_z_quantiles_and_pdf():
    """The template route with an offset: Z and every quantile move by exactly -offset in t, the PDF with them."""
    from slitcli.classic.template_fit import dense_chi2, fit_redshift

    pix = np.arange(300.0)

    def model_fn(index):
        centres = 100.0 + 2000.0 * (T_GRID[index] - 0.4)
        return np.exp(-0.5 * ((pix[None, :] - centres[:, None]) / 1.5) ** 2)[:, None, :]

    rng = np.random.default_rng(3)
    flux = model_fn(np.array([np.argmin(np.abs(T_GRID - 0.43))]))[0, 0] * 0.5 + rng.normal(0.0, 0.05, pix.size)
    chi2 = dense_chi2(model_fn, flux, np.full(pix.size, 1 / 0.05**2))
    plain, moved = (fit_redshift(chi2, T_GRID, pix.size, TemplateFitConfig(temperature=4.0, offset=o), with_pdf=True) for o in (0.0, 8 * STEP))
    assert np.log1p(moved.z) == pytest.approx(np.log1p(plain.z) - 8 * STEP, abs=1e-12)
    assert all(np.log1p(moved.quantiles[q]) == pytest.approx(np.log1p(plain.quantiles[q]) - 8 * STEP, abs=1e-12) for q in plain.quantiles)
    assert np.argmax(moved.pdf_t) == np.argmax(plain.pdf_t) - 8
    assert moved.delta_chi2 == plain.delta_chi2 and moved.odds == plain.odds


def test_fit_temperature_by_snr_gives_each_bin_its_own_temperature():
    """Faint sources (SNR_GI 2) scatter twice their chi-square's sigma, bright ones (SNR_GI 20)
    as claimed: one temperature cannot serve both; per bin they get 4 and 1 and each bin covers as claimed."""
    from slitcli.classic.posterior import fit_temperature_by_snr

    rng = np.random.default_rng(7)
    sigma_claimed, n = 0.003, 300
    snr = np.repeat([2.0, 20.0], n)
    centres = rng.uniform(0.3, 0.8, 2 * n)
    truth = centres + rng.normal(0.0, sigma_claimed, 2 * n) * np.where(snr < 3, 2.0, 1.0)
    lo = np.searchsorted(T_GRID, centres - 0.05)
    searches = [quadratic_search(c, sigma_claimed, int(a), int(a) + 250) for c, a in zip(centres, lo, strict=True)]
    flat = [np.ones_like(T_GRID)] * (2 * n)
    grid = dict(temperatures=[1.0, 2.0, 4.0, 8.0], floors=(0.0,))
    temperatures, floors, _ = fit_temperature_by_snr(searches, flat, T_GRID, truth, snr, snr_edges=(0.0, 10.0), **grid)
    assert temperatures == (4.0, 1.0) and floors == (0.0, 0.0)
    for k, m in enumerate((snr < 3, snr > 3)):
        pick = np.nonzero(m)[0]
        cov = coverage([searches[i] for i in pick], flat[:n], T_GRID, truth[pick], temperatures[k])
        assert cov == pytest.approx([0.6827, 0.9545], abs=0.06)
    # One temperature for all (2 here) under-covers the faint bin and over-covers the bright one.
    single, _, _ = fit_temperature(searches, flat, T_GRID, truth, **grid)
    faint, bright = (np.nonzero(m)[0] for m in (snr < 3, snr > 3))
    assert coverage([searches[i] for i in faint], flat[:n], T_GRID, truth[faint], single)[0] < 0.6827 - 0.06
    assert coverage([searches[i] for i in bright], flat[:n], T_GRID, truth[bright], single)[0] > 0.6827 + 0.06
    # A bin with fewer sources than min_sources shares the fit of the bin next to it.
    shared, _, _ = fit_temperature_by_snr(searches, flat, T_GRID, truth, snr, snr_edges=(0.0, 10.0), min_sources=n + 1, **grid)
    assert shared[0] == shared[1]
