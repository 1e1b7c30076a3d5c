"""The template route's n(z) prior: BPZ's form fitted by maximum likelihood; it picks between equal chi-square minima."""

from __future__ import annotations

import numpy as np
import pytest

from slitcli.classic.nz_prior import fit_nz, nz_density, nz_prior_t
from slitcli.classic.template_fit import Search, TemplateFitConfig, under_prior
from slitcli.errors import InputError


def test_nz_density_is_normalised_and_fit_nz_recovers_its_parameters():
    z = np.linspace(0.0, 6.0, 60001)
    assert np.trapezoid(nz_density(z, 1.7, 0.35), z) == pytest.approx(1.0, rel=1e-6)
    # Draw 5,000 redshifts from n(z) by inverting its CDF, then fit them back.
    cdf = np.cumsum(nz_density(z, 1.7, 0.35))
    draws = np.interp(np.random.default_rng(1).uniform(0, 1, 5000), cdf / cdf[-1], z)
    alpha, z0 = fit_nz(draws)
    assert alpha == pytest.approx(1.7, rel=0.05) and z0 == pytest.approx(0.35, rel=0.05)
    with pytest.raises(InputError, match="at least 20"):
        fit_nz(draws[:10])


def test_the_prior_chooses_the_minimum_where_the_galaxies_are():
    """Two chi-square minima of equal depth, at z = 0.4 (near n(z)'s peak) and z = 1.9 (its
    far tail): flat, the posterior splits them; under the prior, Z and the mass go to z = 0.4."""
    t_grid = TemplateFitConfig().grid()
    chi2 = np.minimum(((t_grid - np.log1p(0.4)) / 0.003) ** 2, ((t_grid - np.log1p(1.9)) / 0.003) ** 2)
    search = Search(np.arange(t_grid.size), chi2, 1000)
    from slitcli.classic.template_fit import RedshiftFit

    fit = RedshiftFit(1.9, {}, 0.0, 0.0, 1000, False, None, search)
    config = TemplateFitConfig(nz_prior=(1.7, 0.35))
    flat, prior = (under_prior([fit], p, t_grid, config)[0] for p in (np.ones_like(t_grid), nz_prior_t(t_grid, 1.7, 0.35)))
    assert flat.odds == pytest.approx(0.5, abs=0.02)  # split: half the mass at each minimum
    assert prior.z == pytest.approx(0.4, abs=1e-3) and prior.odds > 0.99
