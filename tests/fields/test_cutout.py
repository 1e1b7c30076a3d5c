"""Cutouts from full-frame exposures: the same light as the cutout simulator, the noise, the wavelength solution."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import gaussian_blob, make_source

from slitcli.fields.cutout import align, combine, cut_box
from slitcli.fields.cutout_file import write_cutouts
from slitcli.sim.field import FieldConfig, field_geometry, write_field
from slitcli.sim.simulate import SimulateConfig, band_layout, direct_stamp, simulate_band
from slitcli.sim.wcs import pixel_to_world, wcs_from_cards

WAVE = np.arange(3000.0, 11000.0, 0.5)


def line_sed(center_aa, flux=1e-15, sigma_aa=1.0):
    return flux * np.exp(-0.5 * ((WAVE - center_aa) / sigma_aa) ** 2) / (np.sqrt(2 * np.pi) * sigma_aa)


def lone_field(path, csst, config, seed, x, y, flam, image=None):
    """Write a field of one source whose undithered 0-based detector position is (x, y); return the source."""
    ref = wcs_from_cards(field_geometry(csst, config, seed).reference)
    ra, dec = pixel_to_world(ref, np.array([x]), np.array([y]))
    source = make_source(flam, WAVE, gaussian_blob(21, 1.5) if image is None else image, source_id=7)
    source.ra_deg, source.dec_deg = float(ra[0]), float(dec[0])
    write_field(path, [source], csst, config, seed)
    return source


def cut(field, out, pattern="exposure_*.fits", direct=True):
    files = sorted(field.glob(pattern))
    write_cutouts(files, field / "catalog.fits", out, direct_path=field / "direct.fits" if direct else None)
    return fits.open(out)


# ---------------------------------------------------------------- unit pieces


def test_align_keeps_residuals_together_and_integer_cuts():
    """Fractional positions 0.05, 0.95 are 0.1 pixel apart on the circle: cut so, not 0.9 apart."""
    u = np.array([10.05, 20.95, 30.0, -4.02])
    off, r = align(u)
    assert np.allclose(off + r, u) and np.all(off == np.rint(off))
    assert np.ptp(r) == pytest.approx(0.1, abs=1e-9)
    assert -0.5 <= r.mean() < 0.5
    off1, r1 = align(np.array([3.7]))
    assert off1[0] == 4 and r1[0] == pytest.approx(-0.3)


def test_combine_is_inverse_variance_and_respects_dq():
    shape = (2, 3)
    a = (np.full(shape, 1.0), np.full(shape, 1.0), np.ones(shape, bool), np.zeros(shape, np.int32))
    good_b = np.ones(shape, bool)
    good_b[0, 0] = False
    b = (np.full(shape, 4.0), np.full(shape, 2.0), good_b, np.where(good_b, 0, 5).astype(np.int32))
    none = (np.zeros(shape), np.zeros(shape), np.zeros(shape, bool), np.full(shape, 1, np.int32))
    sci, err, dq, nexp, w = combine([a, b, none])
    # weights 1 and 1/4: (1 + 4/4) / 1.25 = 1.6; err 1/sqrt(1.25)
    assert sci[1, 1] == pytest.approx(1.6) and err[1, 1] == pytest.approx(1 / np.sqrt(1.25))
    assert sci[0, 0] == 1.0 and err[0, 0] == 1.0 and nexp[0, 0] == 1 and nexp[1, 1] == 2
    assert np.all(dq == 0) and np.allclose(w.sum(axis=0), 1.0)
    sci, err, dq, nexp, _ = combine([none, none])
    assert np.all(dq == 1) and np.all(nexp == 0) and np.all(sci == 0)
    box = cut_box(np.arange(12.0).reshape(3, 4), -1, 2, (3, 3), fill=-1.0)
    assert box.tolist() == [[-1, -1, -1], [2, 3, -1], [6, 7, -1]]


# ---------------------------------------------------------------- physics


@pytest.mark.parametrize("band_name", ["GV", "GI"])
def test_lone_source_cutout_equals_the_cutout_simulator(tmp_path, csst, band_name):
    """Noiseless, at the layout's fractional position: the field cutout is simulate_band's within 1e-4 of the peak."""
    layout = band_layout(csst.band(band_name), (40, 480))
    config = FieldConfig(bands=(band_name,), nx=700, ny=100, noiseless=True, dither_pix=0.0, n_exposures=2)
    flam = np.full(WAVE.size, 3e-17) + line_sed(layout.crval1_aa, 2e-16, 20.0)
    x, y = 100 + layout.x_direct_pix, 30 + layout.y_direct_pix
    source = lone_field(tmp_path / "f", csst, config, 3, x, y, flam)
    with cut(tmp_path / "f", tmp_path / "s.fits") as h:
        got = h[f"{band_name}_SCI"].data[0].astype(np.float64)
        nexp = h[f"{band_name}_NEXP"].data[0]
        row = h["SOURCES"].data[0]
        stamp_direct = h["DIRECT"].data[0]
    stamp = direct_stamp(source, csst, 64)
    want = simulate_band(stamp, source, csst, layout, SimulateConfig(bands=(band_name,), zeroth_order=True))
    assert abs(row[f"DX_{band_name}"]) < 1e-6 and abs(row[f"DY_{band_name}"]) < 1e-6
    assert np.all(nexp == 2) and row[f"COVER_{band_name}"] == 1.0 and row[f"NEXP_{band_name}"] == 2
    assert np.max(np.abs(got - want)) < 1e-4 * want.max()
    assert got.sum() == pytest.approx(want.sum(), rel=0.005)
    # DIRECT: the segment's light, unit sum when the segment fits the stamp, peaked at the centre.
    assert stamp_direct.sum() == pytest.approx(1.0, abs=1e-5)
    yy, xx = np.mgrid[:64, :64]
    assert (stamp_direct * xx).sum() == pytest.approx(31.5, abs=0.6) and (stamp_direct * yy).sum() == pytest.approx(31.5, abs=0.6)


def test_noisy_cutout_pull_against_the_noiseless_simulator(tmp_path, csst):
    """Four noisy exposures combined: (SCI - simulate's noiseless cutout)/ERR has unit standard deviation."""
    band_name = "GI"
    layout = band_layout(csst.band(band_name), (40, 480))
    config = FieldConfig(bands=(band_name,), nx=700, ny=100, dither_pix=0.0)
    flam = np.full(WAVE.size, 2e-16) + line_sed(8300.0, 2e-15, 20.0)
    x, y = 100 + layout.x_direct_pix, 30 + layout.y_direct_pix
    source = lone_field(tmp_path / "f", csst, config, 4, x, y, flam)
    with cut(tmp_path / "f", tmp_path / "s.fits") as h:
        sci, err = h["GI_SCI"].data[0].astype(float), h["GI_ERR"].data[0].astype(float)
        dq, nexp = h["GI_DQ"].data[0], h["GI_NEXP"].data[0]
        assert h["GI_SCI"].header["NEXP"] == 4 and h["GI_SCI"].header["EXPTIME"] == 600.0
    want = simulate_band(direct_stamp(source, csst, 64), source, csst, layout, SimulateConfig(bands=(band_name,), zeroth_order=True))
    good = dq == 0
    assert good.mean() > 0.95 and np.all(nexp[good] >= 1) and np.mean(nexp == 4) > 0.9
    pull = (sci - want)[good] / err[good]
    assert abs(pull.std() - 1.0) < 0.05, pull.std()
    assert abs(pull.mean()) < 0.05
    # the source's own pixels alone (where its light is above the sky noise) too
    bright = good & (want > 2 * err)
    assert bright.sum() > 500
    assert abs(((sci - want)[bright] / err[bright]).std() - 1.0) < 0.1


@pytest.mark.parametrize("which", ["all four, dithered", "one dithered"])
def test_emission_line_lands_at_the_wcs_column_plus_dx(tmp_path, csst, which):
    """A narrow line's centroid is at the column the cutout's wavelength WCS gives, plus DX (rows: the layout's plus DY)."""
    lines = {"GV": 5007.0, "GI": 8500.0}
    config = FieldConfig(nx=800, ny=110, noiseless=True, dither_pix=5.0)
    lone_field(tmp_path / "f", csst, config, 5, 150.37, 50.81, line_sed(lines["GV"]) + line_sed(lines["GI"]), gaussian_blob(15, 1.0))
    pattern = "exposure_*.fits" if which.startswith("all") else "exposure_*_03.fits"
    with cut(tmp_path / "f", tmp_path / "s.fits", pattern, direct=False) as h:
        assert "DIRECT" not in h
        row = h["SOURCES"].data[0]
        for band_name, line in lines.items():
            header = h[f"{band_name}_SCI"].header
            sci = h[f"{band_name}_SCI"].data[0].astype(float)
            dx, dy = row[f"DX_{band_name}"], row[f"DY_{band_name}"]
            col = (line - header["CRVAL1"]) / header["CDELT1"] + header["CRPIX1"] - 1.0 + dx
            cols = slice(int(col) - 12, int(col) + 13)
            profile = sci[:, cols].sum(axis=0)
            got = cols.start + (profile * np.arange(profile.size)).sum() / profile.sum()
            assert got == pytest.approx(col, abs=0.05), (band_name, got, col)
            rows = sci[:, cols].sum(axis=1)
            assert (rows * np.arange(rows.size)).sum() / rows.sum() == pytest.approx(header["SRCYPOS"] - 1.0 + dy, abs=0.05)
            if which.startswith("all"):
                assert row[f"NEXP_{band_name}"] == 4 and 0 < row[f"SPREAD_{band_name}"] <= 0.75
            else:
                assert row[f"NEXP_{band_name}"] == 1 and row[f"SPREAD_{band_name}"] == 0.0
    t = Table.read(tmp_path / "s.fits", hdu="SOURCES")
    assert t["SOURCE_ID"][0] == 7 and "Z_TRUE" in t.colnames


def test_model_frames_combine_like_the_data(tmp_path, csst):
    """Stage B's route: whole model frames (here the noiseless exposures themselves), cut at the data's offsets with the data's weights, give the written cutout."""
    from slitcli.fields.cutout import combine_frames, cut_source, place_sources
    from slitcli.fields.exposure import close_all, open_exposures

    config = FieldConfig(bands=("GV",), nx=640, ny=90, noiseless=True, dither_pix=4.0)
    source = lone_field(tmp_path / "f", csst, config, 6, 120.6, 44.2, np.full(WAVE.size, 1e-16))
    files = sorted((tmp_path / "f").glob("exposure_*.fits"))
    with cut(tmp_path / "f", tmp_path / "s.fits", direct=False) as h:
        written = h["GV_SCI"].data[0].astype(float)
    instrument, _, exps = open_exposures(files)
    try:
        layout = band_layout(instrument.band("GV"), (40, 480))
        placement = place_sources(np.array([source.ra_deg]), np.array([source.dec_deg]), layout, exps)
        sci, err, dq, nexp, weights, used = cut_source(exps, placement, 0, layout.shape)
        frames = [fits.getdata(f, "SCI").astype(float) for f in files]
    finally:
        close_all(exps)
    assert used.tolist() == [0, 1, 2, 3] and np.all(nexp == 4)
    model = combine_frames(frames, placement, 0, used, weights, layout.shape)
    assert np.max(np.abs(model - written)) < 1e-6 * written.max()
    assert np.max(np.abs(sci - written)) < 1e-6 * written.max()
