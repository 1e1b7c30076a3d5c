"""Physics of the simulator: flux conservation, line positions, noise statistics."""

import dataclasses

import numpy as np
import pytest
from conftest import expected_rate_e_s, gaussian_blob, make_source

from slitcli.sim.simulate import (
    SimulateConfig,
    band_layout,
    direct_stamp,
    simulate_band,
    simulate_chunk,
)

WAVE = np.arange(3000.0, 11000.0, 0.5)


def line_sed(center_aa, flux=1e-15, sigma_aa=1.0):
    return flux * np.exp(-0.5 * ((WAVE - center_aa) / sigma_aa) ** 2) / (np.sqrt(2 * np.pi) * sigma_aa)


@pytest.mark.parametrize("band_name, lo, hi", [("GV", 4300.0, 5900.0), ("GI", 6600.0, 9600.0)])
def test_noiseless_counts_equal_integral_of_flux_times_sensitivity(csst, point_image, band_name, lo, hi):
    flam = np.where((WAVE >= lo) & (WAVE <= hi), 3e-17, 0.0) + line_sed(0.5 * (lo + hi), 2e-16)
    source = make_source(flam, WAVE, point_image)
    cfg = SimulateConfig(bands=(band_name,))
    layout = band_layout(csst.band(band_name), (cfg.cutout_height, cfg.cutout_width))
    stamp = direct_stamp(source, csst, cfg.stamp_size)
    counts = simulate_band(stamp, source, csst, layout, cfg).sum() * csst.total_exposure_s
    expected = expected_rate_e_s(csst, csst.band(band_name), WAVE, flam, lo, hi) * csst.total_exposure_s
    assert counts == pytest.approx(expected, rel=0.005)


def test_counts_of_a_real_extended_galaxy_over_the_cutout_wavelengths(csst):
    """A real SED and HXDF shape: counts equal the integral over the wavelengths the cutout sees."""
    from slitcli.sim.population import PopulationConfig, draw_sources

    source = draw_sources(PopulationConfig(), 1, 1, np.random.default_rng(5))[0]
    cfg = SimulateConfig(bands=("GV",), cutout_height=64, cutout_width=700)
    layout = band_layout(csst.band("GV"), (cfg.cutout_height, cfg.cutout_width))
    stamp = direct_stamp(source, csst, cfg.stamp_size)
    counts = simulate_band(stamp, source, csst, layout, cfg).sum()
    # A 700-column cutout holds every wavelength with throughput; the stamp keeps stamp.sum() of the light.
    expected = expected_rate_e_s(csst, csst.band("GV"), source.wave_aa, source.flam, 3000.0, 7000.0) * stamp.sum()
    assert stamp.sum() > 0.9
    assert counts == pytest.approx(expected, rel=0.005)


def line_column(image):
    profile = image.sum(axis=0)
    return float((profile * np.arange(profile.size)).sum() / profile.sum())


@pytest.mark.parametrize("band_name, line_aa", [("GV", 4861.0), ("GV", 5900.0), ("GI", 6563.0), ("GI", 9500.0)])
@pytest.mark.parametrize("offset", [(0.0, 0.0), (3.3, -2.0), (-7.6, 4.4)])
def test_emission_line_lands_where_the_wcs_says(csst, band_name, line_aa, offset):
    x_off, y_off = offset
    image = gaussian_blob(21, 0.8, x_off, y_off)
    source = make_source(line_sed(line_aa), WAVE, image)
    cfg = SimulateConfig(bands=(band_name,))
    layout = band_layout(csst.band(band_name), (cfg.cutout_height, cfg.cutout_width))
    model = simulate_band(direct_stamp(source, csst, cfg.stamp_size), source, csst, layout, cfg)
    predicted = layout.crpix1 - 1.0 + (line_aa - layout.crval1_aa) / layout.cdelt1_aa + x_off
    assert line_column(model) == pytest.approx(predicted, abs=0.2)
    rows = model.sum(axis=1)
    assert (rows * np.arange(rows.size)).sum() / rows.sum() == pytest.approx(layout.y_direct_pix + y_off, abs=0.2)


def test_line_position_with_another_instrument_dispersion(tmp_path, csst):
    """A second instrument (GV at 7.1 A/pixel, as CESS samples it) puts the line where its WCS says."""
    gv = csst.band("GV")
    order = dataclasses.replace(gv.first_order, dldp=(3800.0, 7.1))
    other = csst.replace(bands=(dataclasses.replace(gv, orders=(order,)),))
    layout = band_layout(other.band("GV"), (40, 480))
    assert layout.cdelt1_aa == pytest.approx(7.1)
    source = make_source(line_sed(5007.0), WAVE, gaussian_blob(15, 0.8))
    cfg = SimulateConfig(bands=("GV",))
    model = simulate_band(direct_stamp(source, other, 64), source, other, layout, cfg)
    predicted = layout.crpix1 - 1.0 + (5007.0 - layout.crval1_aa) / 7.1
    assert line_column(model) == pytest.approx(predicted, abs=0.2)


def test_wavelength_shift_moves_the_spectrum_not_the_wcs(csst):
    source = make_source(line_sed(5500.0), WAVE, gaussian_blob(15, 0.8))
    layout = band_layout(csst.band("GV"), (40, 480))
    stamp = direct_stamp(source, csst, 64)
    base = simulate_band(stamp, source, csst, layout, SimulateConfig(bands=("GV",)))
    shifted = simulate_band(stamp, source, csst, layout, SimulateConfig(bands=("GV",), wavelength_shift_pix=2.5))
    assert line_column(shifted) - line_column(base) == pytest.approx(2.5, abs=0.05)


def test_zeroth_order_holds_a_tenth_of_the_first_order_light(csst, point_image):
    flam = np.where((WAVE > 4300) & (WAVE < 5900), 3e-17, 0.0)
    source = make_source(flam, WAVE, point_image)
    wide = (40, 1200)
    layout = band_layout(csst.band("GV"), wide)
    layout = dataclasses.replace(layout, x_direct_pix=400.0)
    stamp = direct_stamp(source, csst, 64)
    first = simulate_band(stamp, source, csst, layout, SimulateConfig(bands=("GV",))).sum()
    both = simulate_band(stamp, source, csst, layout, SimulateConfig(bands=("GV",), zeroth_order=True)).sum()
    assert (both - first) / first == pytest.approx(0.1, rel=1e-3)


def test_noise_is_normalised_by_err(csst):
    """(data - noiseless)/ERR has unit standard deviation and zero mean over many pixels."""
    flam = 2e-17 * np.ones_like(WAVE) + line_sed(5600.0, 5e-16) + line_sed(8000.0, 5e-16)
    sources = [make_source(flam * 30.0**k, WAVE, gaussian_blob(31, 3.0), source_id=k) for k in range(4)]
    noisy = simulate_chunk(sources, 0, csst, SimulateConfig(), np.random.SeedSequence(11))
    for band in ("GV", "GI"):
        usable = noisy.dq[band] == 0  # the brightest source saturates: clipped and flagged
        pull = ((noisy.sci[band].astype(float) - noisy.model[band]) / noisy.err[band])[usable]
        assert pull.size > 70000
        assert np.std(pull) == pytest.approx(1.0, abs=0.02)
        assert abs(np.mean(pull)) < 0.01
        # Pixels where the source's shot noise dominates the background and read noise.
        bright = noisy.model[band][usable] > 2.0
        assert bright.sum() > 2000
        assert np.std(pull[bright]) == pytest.approx(1.0, abs=0.03)


def test_err_of_a_blank_pixel_is_the_analytic_value(csst):
    flam = np.zeros_like(WAVE)
    chunk = simulate_chunk([make_source(flam, WAVE, gaussian_blob(9, 1.0))], 0, csst, SimulateConfig(bands=("GI",)), np.random.SeedSequence(0))
    t = 600.0
    expected = np.sqrt(t * (0.46 + 0.02) + 4 * 5.0**2) / t
    assert chunk.err["GI"][0, 0, 0] == pytest.approx(expected, rel=1e-6)
    assert np.std(chunk.sci["GI"]) == pytest.approx(expected, rel=0.02)


def test_noiseless_writes_the_model_with_the_same_err(csst):
    source = make_source(line_sed(5600.0, 1e-15), WAVE, gaussian_blob(15, 1.0))
    cfg = SimulateConfig(bands=("GV",))
    a = simulate_chunk([source], 0, csst, dataclasses.replace(cfg, noiseless=True), np.random.SeedSequence(1))
    b = simulate_chunk([source], 0, csst, cfg, np.random.SeedSequence(1))
    np.testing.assert_array_equal(a.sci["GV"], a.model["GV"])
    np.testing.assert_array_equal(a.err["GV"], b.err["GV"])


def test_saturated_pixels_are_flagged(csst):
    source = make_source(line_sed(5600.0, 1e-11), WAVE, gaussian_blob(9, 0.5))
    chunk = simulate_chunk([source], 0, csst, SimulateConfig(bands=("GV",)), np.random.SeedSequence(1))
    dq = chunk.dq["GV"][0]
    sat = chunk.model["GV"][0] * 150.0 >= 90000.0
    assert sat.any()
    np.testing.assert_array_equal(dq != 0, sat)
    assert np.all(dq[sat] == 3)


def test_snr_grows_with_flux(csst):
    base = 2e-18 * np.ones_like(WAVE)
    sources = [make_source(base * f, WAVE, gaussian_blob(21, 2.0), source_id=i) for i, f in enumerate((1, 10, 100))]
    chunk = simulate_chunk(sources, 0, csst, SimulateConfig(), np.random.SeedSequence(2))
    snr = chunk.snr["GI"]
    assert snr[0] < snr[1] < snr[2]
    assert snr[2] > 10
