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
