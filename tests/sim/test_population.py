"""The embedded default population: the per-redshift magnitude short cut and the flux limits."""

import numpy as np

from slitcli.sim.population import PopulationConfig, draw_sources
from slitcli.sim.seds import OBS_WAVE_AA, ab_magnitude, library_magnitudes, load_sed_library, observed_sed


def test_library_magnitudes_equal_the_spectra_magnitudes():
    """The linear short cut gives each galaxy's i magnitude at z as integrating its observed spectrum does."""
    seds = load_sed_library()
    rng = np.random.default_rng(0)
    for z in (0.03, 0.4, 1.1, 1.9):
        magnitude = library_magnitudes(seds, z)
        for g in rng.integers(len(seds), size=20):
            exact = float(ab_magnitude(OBS_WAVE_AA, observed_sed(seds, int(g), z)))
            assert abs(magnitude(int(g)) - exact) < 1e-9


def test_drawn_sources_respect_the_flux_limits_and_their_spectra():
    config = PopulationConfig(mag_i_min=19.0, mag_i_max=22.0)
    sources = draw_sources(config, 200, 1, np.random.default_rng(3))
    mags = np.array([s.mag_i for s in sources])
    assert np.all((mags >= 19.0) & (mags <= 22.0))
    # mag_i is the magnitude of the spectrum each source carries.
    np.testing.assert_allclose(mags, [float(ab_magnitude(OBS_WAVE_AA, s.flam)) for s in sources], atol=1e-12)


def test_flat_fraction_mixes_a_flat_nz_in():
    """With nz_flat_fraction f, the fraction of draws above z = 1.2 is (1 - f) P_smail + f (z_max - 1.2)/(z_max - z_min)."""
    from slitcli.sim.population import draw_redshifts

    n = 200_000
    smail = draw_redshifts(PopulationConfig(), n, np.random.default_rng(1))
    mixed = draw_redshifts(PopulationConfig(nz_flat_fraction=0.5), n, np.random.default_rng(1))
    flat = draw_redshifts(PopulationConfig(nz_flat_fraction=1.0), n, np.random.default_rng(1))
    p_smail = np.mean(smail > 1.2)
    expected = 0.5 * p_smail + 0.5 * (2.0 - 1.2) / (2.0 - 0.02)
    assert abs(np.mean(mixed > 1.2) - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    # A flat n(z): equal counts in equal redshift bins.
    counts, _ = np.histogram(flat, bins=9, range=(0.02, 2.0))
    assert np.all(np.abs(counts - n / 9) < 5 * np.sqrt(n / 9))
    # The default is untouched: fraction 0 draws what the plain Smail n(z) draws.
    assert p_smail < 0.02


def test_free_magnitudes_are_uniform_and_leave_the_defaults_alone():
    """mag_free_fraction 1: i magnitudes uniform within the limits at every redshift; 0: the same sources as before."""
    config = PopulationConfig(mag_i_min=19.0, mag_i_max=22.0)
    free = draw_sources(PopulationConfig(mag_i_min=19.0, mag_i_max=22.0, mag_free_fraction=1.0), 400, 1, np.random.default_rng(4))
    mags, z = np.array([s.mag_i for s in free]), np.array([s.z for s in free])
    np.testing.assert_allclose(mags, [float(ab_magnitude(OBS_WAVE_AA, s.flam)) for s in free], atol=1e-12)
    counts, _ = np.histogram(mags, bins=4, range=(19.0, 22.0))
    assert np.all(np.abs(counts - 100) < 4 * 10)
    # Brightness no longer tracks redshift: the median magnitude above and below the median z agree.
    high = z > np.median(z)
    assert abs(np.median(mags[high]) - np.median(mags[~high])) < 0.4
    default = draw_sources(config, 50, 1, np.random.default_rng(4))
    again = draw_sources(PopulationConfig(mag_i_min=19.0, mag_i_max=22.0, mag_free_fraction=0.0), 50, 1, np.random.default_rng(4))
    assert [(s.z, s.mag_i, s.sed_id) for s in default] == [(s.z, s.mag_i, s.sed_id) for s in again]
