"""Optimal extraction and the direct-stamp profile: flux of a point source, profile shapes."""

import numpy as np
import pytest
from conftest import expected_rate_e_s, gaussian_blob, make_source

from slitcli.extract import direct_profile, extract_optimal
from slitcli.sim.noise import noise_sigma
from slitcli.sim.simulate import (
    SimulateConfig,
    band_layout,
    direct_stamp,
    simulate_band,
)

WAVE = np.arange(3000.0, 11000.0, 0.5)


@pytest.mark.parametrize("band_name, lo, hi", [("GV", 4300.0, 5900.0), ("GI", 6600.0, 9600.0)])
def test_noiseless_point_source_flux_is_recovered(csst, point_image, band_name, lo, hi):
    flam = np.where((WAVE >= lo) & (WAVE <= hi), 3e-17, 0.0)
    source = make_source(flam, WAVE, point_image)
    cfg = SimulateConfig(bands=(band_name,))
    layout = band_layout(csst.band(band_name), (cfg.cutout_height, cfg.cutout_width))
    stamp = direct_stamp(source, csst, cfg.stamp_size)
    image = simulate_band(stamp, source, csst, layout, cfg)
    err = noise_sigma(image, csst, layout.band)
    profile_y, kernel_x = direct_profile(stamp, cfg.cutout_height, 0.5 * (cfg.cutout_height - 1))
    flux, flux_err = extract_optimal(image, err, np.zeros(image.shape, np.int32), np.repeat(profile_y[:, None], cfg.cutout_width, axis=1))
    # Every count lands on the cutout (the band sits inside it), so the extracted total is the integral.
    expected = expected_rate_e_s(csst, csst.band(band_name), WAVE, flam, lo, hi)
    assert flux.sum() == pytest.approx(expected, rel=0.01)
    # A point source is separable (PSF x spectrum): each column is recovered, not just the total.
    np.testing.assert_allclose(flux, image.sum(axis=0), rtol=1e-6, atol=1e-9 * image.max())
    assert np.all(flux_err > 0)
    assert kernel_x.sum() == pytest.approx(stamp.sum(), rel=1e-6)


def test_profile_and_kernel_of_a_single_pixel():
    stamp = np.zeros((9, 9))
    stamp[4, 6] = 1.0
    profile_y, kernel_x = direct_profile(stamp, 11, 5.0)
    np.testing.assert_array_equal(profile_y, np.eye(11)[5])
    np.testing.assert_array_equal(kernel_x, np.eye(9)[6])
    # Half a row off: the light is shared between two rows, as the dispersion does.
    profile_y, _ = direct_profile(stamp, 11, 5.5)
    np.testing.assert_allclose(profile_y[5:7], [0.5, 0.5])


def test_kernel_of_an_extended_source_follows_its_x_profile():
    stamp = gaussian_blob(31, 3.0, x_off=2.0)
    profile_y, kernel_x = direct_profile(stamp, 40, 19.5)
    assert profile_y.sum() == pytest.approx(1.0)
    centre = (kernel_x * np.arange(31)).sum() / kernel_x.sum()
    assert centre == pytest.approx(15.0 + 2.0, abs=1e-3)  # the stamp edge cuts the far wing


def test_masked_and_zero_error_pixels_are_ignored():
    sci = np.ones((5, 3))
    err = np.ones((5, 3))
    dq = np.zeros((5, 3), np.int32)
    dq[2, 1] = 1
    err[3, 2] = 0.0
    flux, flux_err = extract_optimal(sci * 7.0, err, dq, np.ones((5, 3)))
    np.testing.assert_allclose(flux, [35.0, 35.0, 35.0])
    assert flux_err[1] > flux_err[0]
