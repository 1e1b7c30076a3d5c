"""Physics and files of simulated fields: counts, trace positions through the WCS, noise, flags, bytes."""

import dataclasses
import os
import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from conftest import expected_rate_e_s, gaussian_blob, make_source

from slitcli.errors import ConfigError, InputError, OutputExistsError
from slitcli.instrument import load_instrument
from slitcli.sim import field as field_module
from slitcli.sim.cosmics import expected_events
from slitcli.sim.field import (
    FieldConfig,
    default_field_sources,
    field_geometry,
    imaging_zeropoint,
    number_counts_density,
    prepare_source,
    render_exposure,
    write_field,
)
from slitcli.sim.simulate import SimulateConfig, band_layout, direct_stamp, simulate_band
from slitcli.sim.wcs import pixel_to_world, wcs_from_cards

WAVE = np.arange(3000.0, 11000.0, 0.5)


def line_sed(center_aa, flux=1e-15, sigma_aa=1.0):
    return flux * np.exp(-0.5 * ((WAVE - center_aa) / sigma_aa) ** 2) / (np.sqrt(2 * np.pi) * sigma_aa)


def at_pixel(instrument, config, seed, x, y, flam, image=None, source_id=1):
    """A source whose undithered detector position (0-based) is (x, y)."""
    ref = wcs_from_cards(field_geometry(instrument, config, seed).reference)
    ra, dec = pixel_to_world(ref, np.array([x]), np.array([y]))
    source = make_source(flam, WAVE, gaussian_blob(15, 1.0) if image is None else image, source_id=source_id)
    source.ra_deg, source.dec_deg = float(ra[0]), float(dec[0])
    return source


def exposures(path):
    return sorted(p for p in path.iterdir() if p.name.startswith("exposure_"))


def sci_wcs(path):
    with fits.open(path) as h:
        return WCS(h["SCI"].header), h["SCI"].header, h["SCI"].data.astype(np.float64)


@pytest.fixture(scope="module")
def epoch():
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    yield
    if old is None:
        del os.environ["SOURCE_DATE_EPOCH"]
    else:
        os.environ["SOURCE_DATE_EPOCH"] = old


# ---------------------------------------------------------------- counts


@pytest.mark.parametrize("band_name, lo, hi", [("GV", 4300.0, 5900.0), ("GI", 6600.0, 9600.0)])
def test_lone_source_counts_equal_the_cutout_simulator(tmp_path, csst, band_name, lo, hi):
    """Every exposure (dithered or not) holds the cutout simulator's counts of the same source, zeroth order included."""
    flam = np.where((WAVE >= lo) & (WAVE <= hi), 3e-17, 0.0) + line_sed(0.5 * (lo + hi), 2e-16)
    config = FieldConfig(bands=(band_name,), nx=1100, ny=128, noiseless=True, dither_pix=6.0)
    source = at_pixel(csst, config, 3, 300.4, 63.7, flam, gaussian_blob(21, 1.5))
    write_field(tmp_path / "f", [source], csst, config, 3)
    stamp = direct_stamp(source, csst, config.stamp_size)
    layout = band_layout(csst.band(band_name), (128, 1600))
    cutout = simulate_band(stamp, source, csst, layout, SimulateConfig(bands=(band_name,), zeroth_order=True)).sum() * 150.0
    # Independently: the integral of f_lambda S over the band, 1 + 0.1 for the zeroth order, times the stamp's light.
    analytic = expected_rate_e_s(csst, csst.band(band_name), WAVE, flam, lo, hi) * 1.1 * stamp.sum() * 150.0
    files = exposures(tmp_path / "f")
    assert len(files) == 4
    offsets = []
    for path in files:
        _, header, sci = sci_wcs(path)
        with fits.open(path) as h:
            offsets.append((h[0].header["DITHX"], h[0].header["DITHY"]))
        assert header["EXPTIME"] == 150.0
        counts = sci.sum() * header["EXPTIME"]
        assert counts == pytest.approx(cutout, rel=0.005)
        assert counts == pytest.approx(analytic, rel=0.005)
    assert offsets[0] == (0.0, 0.0) and all(0 < max(abs(a), abs(b)) <= 6.0 for a, b in offsets[1:])


# ---------------------------------------------------------------- where light lands


def tilted(csst):
    """CSST with a tilted, offset GV trace, to check that the files' trace keywords are what the light follows."""
    gv = csst.band("GV")
    orders = tuple(dataclasses.replace(o, dydx=(2.5, 0.01)) if o.name == "+1" else o for o in gv.orders)
    return csst.replace(bands=tuple(dataclasses.replace(b, orders=orders) if b.name == "GV" else b for b in csst.bands))


@pytest.mark.parametrize("pa_deg", [0.0, 30.0])
@pytest.mark.parametrize("which", ["csst", "tilted"])
def test_emission_line_lands_where_the_exposure_wcs_and_trace_say(tmp_path, csst, pa_deg, which):
    """The line's centroid is at the exposure WCS position of RA/DEC plus the trace read from the header, in every dithered exposure."""
    inst = tilted(csst) if which == "tilted" else csst
    lines = {"GV": 5007.0, "GI": 8500.0}
    config = FieldConfig(nx=1024, ny=128, noiseless=True, dither_pix=7.0, position_angle_deg=pa_deg)
    flam = line_sed(lines["GV"]) + line_sed(lines["GI"])
    source = at_pixel(inst, config, 5, 250.3, 61.6, flam, gaussian_blob(15, 1.0, 0.0, 0.0))
    write_field(tmp_path / "f", [source], inst, config, 5)
    checked = 0
    for path in exposures(tmp_path / "f"):
        wcs, h, sci = sci_wcs(path)
        assert wcs.has_celestial and h["RADESYS"] == "ICRS"
        x_ref, y_ref = wcs.all_world2pix(source.ra_deg, source.dec_deg, 0)
        line = lines[h["FILTER"]]
        dx = (line - h["DLDP1_0"]) / h["DLDP1_1"]
        x_pred = x_ref + dx
        y_pred = y_ref + h["DYDX1_0"] + h.get("DYDX1_1", 0.0) * dx
        cols = slice(int(x_pred) - 15, int(x_pred) + 16)
        window = sci[:, cols]
        profile = window.sum(axis=0)
        x_got = cols.start + (profile * np.arange(profile.size)).sum() / profile.sum()
        rows = window.sum(axis=1)
        y_got = (rows * np.arange(rows.size)).sum() / rows.sum()
        assert x_got == pytest.approx(x_pred, abs=0.2), path.name
        assert y_got == pytest.approx(y_pred, abs=0.2), path.name
        checked += 1
    assert checked == 8


def test_sky_positions_map_to_catalogue_and_light_through_the_wcs(tmp_path, csst):
    """RA/DEC through direct.fits' WCS give X_DIRECT/Y_DIRECT (1-based) and the light's centroid; SEGMENTATION holds the IDs."""
    config = FieldConfig(bands=("GI",), nx=600, ny=300, noiseless=True, n_exposures=1, position_angle_deg=12.0)
    spots = [(40.2, 50.7), (310.6, 200.3), (550.9, 120.5), (-150.3, 20.2), (700.5, 280.8)]  # two in the margins
    sources = [at_pixel(csst, config, 2, x, y, np.full(WAVE.size, 1e-17), gaussian_blob(15, 1.2), source_id=10 + k) for k, (x, y) in enumerate(spots)]
    write_field(tmp_path / "f", sources, csst, config, 2)
    cat = Table.read(tmp_path / "f" / "catalog.fits", hdu="SOURCES")
    assert list(cat["SOURCE_ID"]) == [10, 11, 12, 13, 14]
    with fits.open(tmp_path / "f" / "direct.fits") as h:
        wcs = WCS(h["SCI"].header)
        sci, seg = h["SCI"].data.astype(float), h["SEGMENTATION"].data
        assert h["SCI"].header["RADESYS"] == "ICRS" and h["SCI"].header["CTYPE1"] == "RA---TAN"
        assert seg.dtype.kind == "i" and set(np.unique(seg)) == {0, 10, 11, 12, 13, 14}
    x, y = wcs.all_world2pix(cat["RA"], cat["DEC"], 1)
    np.testing.assert_allclose(x, cat["X_DIRECT"], atol=0.05)
    np.testing.assert_allclose(y, cat["Y_DIRECT"], atol=0.05)
    for row in cat:
        x0, y0 = row["X_DIRECT"] - 1.0, row["Y_DIRECT"] - 1.0
        assert seg[int(round(y0)), int(round(x0))] == row["SOURCE_ID"]
        sl = np.s_[int(y0) - 20 : int(y0) + 21, int(x0) - 20 : int(x0) + 21]
        yy, xx = np.mgrid[sl]
        w = sci[sl]
        assert (w * xx).sum() / w.sum() == pytest.approx(x0, abs=0.05)
        assert (w * yy).sum() / w.sum() == pytest.approx(y0, abs=0.05)


# ---------------------------------------------------------------- noise and flags


@pytest.fixture(scope="module")
def noise_pair(tmp_path_factory, csst):
    """The same field (two bright sources on a 512 x 256 detector) noisy and noiseless, cosmic rays on."""
    base = FieldConfig(bands=("GV",), nx=512, ny=256, n_exposures=2, dither_pix=3.0)
    flam = 3e-16 * np.ones(WAVE.size) + line_sed(5600.0, 2e-14)
    sources = [at_pixel(csst, base, 9, x, y, flam * f, gaussian_blob(31, 3.0), source_id=k + 1) for k, (x, y, f) in enumerate([(60.0, 80.0, 1.0), (120.0, 180.0, 3.0)])]
    out = {}
    for noiseless in (False, True):
        path = tmp_path_factory.mktemp("noise") / "f"
        write_field(path, sources, csst, dataclasses.replace(base, noiseless=noiseless), 9)
        out[noiseless] = path
    return out


def test_pull_is_unit_normal_over_blank_sky_and_sources(noise_pair):
    for noisy_path, model_path in zip(exposures(noise_pair[False]), exposures(noise_pair[True])):
        with fits.open(noisy_path) as a, fits.open(model_path) as b:
            sci, err, dq = a["SCI"].data.astype(float), a["ERR"].data.astype(float), a["DQ"].data
            model = b["SCI"].data.astype(float)
            blank_err = np.sqrt(150.0 * (0.31 + 0.02) + 25.0) / 150.0
            np.testing.assert_array_equal(err, b["ERR"].data)
        pull = (sci - model) / err
        blank = (dq == 0) & (model < 1e-4)
        assert blank.sum() > 60000
        assert np.std(pull[blank]) == pytest.approx(1.0, abs=0.02)
        assert abs(np.mean(pull[blank])) < 0.01
        assert np.allclose(err[model == 0], blank_err, rtol=1e-6)
        bright = (dq == 0) & (model > 0.5)
        assert bright.sum() > 2000
        assert np.std(pull[bright]) == pytest.approx(1.0, abs=0.03)


def test_cosmic_rays_are_flagged_at_the_documented_rate(noise_pair):
    n_events, excess = [], []
    for path, model_path in zip(exposures(noise_pair[False]), exposures(noise_pair[True])):
        with fits.open(path) as h, fits.open(model_path) as m:
            sci, err, dq = h["SCI"].data.astype(float), h["ERR"].data.astype(float), h["DQ"].data
            residual = sci - m["SCI"].data
            n = h[0].header["NCOSMIC"]
        hit = (dq & 4) != 0
        assert hit.sum() > 5 * n > 0
        assert np.all(dq[hit] & 1)  # JUMP_DET pixels are also DO_NOT_USE
        # No cosmic ray left unflagged: no pixel beyond 6 sigma of its expected value without a flag.
        assert not np.any((residual / err > 6.0) & ~hit)
        n_events.append(n)
        excess.append(residual[hit & ((dq & 2) == 0)].sum() * 150.0)
    mean = expected_events((256, 512), 150.0, 1.2, 10.0)
    assert mean == pytest.approx(1.2 * 256 * 512 * 1e-6 * 150.0)
    assert abs(sum(n_events) - len(n_events) * mean) < 5 * np.sqrt(len(n_events) * mean)
    # The charge the flagged pixels hold per event: 500 e- plus a log-normal of median 500 e- (mean 1190 e-).
    assert 900.0 < sum(excess) / sum(n_events) < 1600.0


def test_noiseless_field_has_no_cosmic_rays(noise_pair):
    for path in exposures(noise_pair[True]):
        with fits.open(path) as h:
            assert h[0].header["NCOSMIC"] == 0 and not np.any(h["DQ"].data & 4)


def test_saturated_pixels_are_flagged(tmp_path, csst):
    config = FieldConfig(bands=("GV",), nx=700, ny=64, n_exposures=1, cosmic_rays=False)
    source = at_pixel(csst, config, 1, 100.0, 32.0, line_sed(5600.0, 2e-11), gaussian_blob(9, 0.5))
    write_field(tmp_path / "noisy", [source], csst, config, 1)
    write_field(tmp_path / "model", [source], csst, dataclasses.replace(config, noiseless=True), 1)
    with fits.open(exposures(tmp_path / "noisy")[0]) as a, fits.open(exposures(tmp_path / "model")[0]) as b:
        dq, sci, model = a["DQ"].data, a["SCI"].data.astype(float), b["SCI"].data.astype(float)
    charge = 150.0 * (model + 0.31 + 0.02)
    assert (charge >= 90000.0).sum() >= 3
    assert np.all(dq[charge >= 90000.0] == 3)  # SATURATED | DO_NOT_USE
    flagged = dq != 0
    assert np.all(charge[flagged] > 0.98 * 90000.0)
    assert np.all(sci[flagged] < (90000.0 - 150.0 * 0.33) / 150.0 + 0.5)  # clipped at the full well


# ---------------------------------------------------------------- direct image and catalogue


@pytest.fixture(scope="module")
def default_field(tmp_path_factory, csst, epoch):
    config = FieldConfig(nx=400, ny=200, density_per_arcmin2=40.0, dither_pix=4.0)
    sources = default_field_sources(csst, config, 11)
    path = tmp_path_factory.mktemp("default") / "f"
    write_field(path, sources, csst, config, 11, workers=2)
    return path, config, sources


def test_catalogue_holds_every_source_with_truth_and_the_direct_photometry(default_field, csst):
    path, config, sources = default_field
    cat = Table.read(path / "catalog.fits", hdu="SOURCES")
    geometry = field_geometry(csst, config, 11)
    assert len(cat) == len(sources) == round(40.0 * geometry.area_arcmin2)
    assert list(cat["SOURCE_ID"]) == list(range(1, len(cat) + 1))
    for name in ("Z_TRUE", "SNR_GV", "SNR_GI", "CLASS", "SED_ID", "MAG_I", "X_DIRECT", "Y_DIRECT"):
        assert name in cat.colnames
    assert cat["X_DIRECT"].unit == "pix"
    with fits.open(path / "catalog.fits") as h:
        header = h["SOURCES"].header
        column = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
        assert "1-based" in header[f"TCOMM{column['X_DIRECT']}"] and header[f"TUNIT{column['FLUX_DIRECT']}"] == "ct / s"
    assert np.all((cat["Z_TRUE"] > 0) & (cat["Z_TRUE"] < 2)) and np.all(cat["SNR_GI"] >= 0)
    zp = imaging_zeropoint(csst, csst.imaging_band())[0]
    np.testing.assert_allclose(cat["MAG_DIRECT"], zp - 2.5 * np.log10(cat["FLUX_DIRECT"]), atol=1e-4)
    # The stand-in filter is the SDSS i curve that defines MAG_I.
    np.testing.assert_allclose(cat["MAG_DIRECT"], cat["MAG_I"], atol=0.01)
    with fits.open(path / "direct.fits") as h:
        assert h["SCI"].header["ABZP"] == pytest.approx(zp, abs=1e-5)
        assert h["SCI"].header["EXPTIME"] == 300.0 and h["SCI"].header["FILTER"] == "i"
        assert h["SCI"].data.shape == geometry.direct_shape


def test_direct_image_flux_is_the_source_rate(tmp_path, csst):
    """A flat f_nu source of AB magnitude 20 gives 10^(-0.4 (20 - ABZP)) e-/s in the noiseless direct image."""
    config = FieldConfig(bands=("GI",), nx=200, ny=100, noiseless=True, n_exposures=1)
    fnu = 10 ** (-0.4 * (20.0 + 48.6))
    flam = fnu * 2.99792458e18 / WAVE**2
    source = at_pixel(csst, config, 1, 100.0, 50.0, flam, gaussian_blob(15, 1.0))
    write_field(tmp_path / "f", [source], csst, config, 1)
    with fits.open(tmp_path / "f" / "direct.fits") as h:
        total = h["SCI"].data.astype(float).sum()
        zp = h["SCI"].header["ABZP"]
    stamp = direct_stamp(source, csst, config.stamp_size)
    assert total == pytest.approx(10 ** (-0.4 * (20.0 - zp)) * stamp.sum(), rel=1e-3)


def test_imaging_sky_matches_the_zodiacal_spectrum(csst):
    from importlib import resources

    zodi = Table.read(str(resources.files("slitcli") / "data" / "zodiacal_sky_v22.1.ecsv"))
    imaging = csst.imaging_band()
    wave = np.linspace(6000.0, 9000.0, 3001)
    flam = np.interp(wave, np.asarray(zodi["wavelength"], float), np.asarray(zodi["flam"], float))
    rate = np.trapezoid(flam * csst.pixel_scale_arcsec**2 * csst.collecting_area_cm2 * imaging.throughput(wave) * wave / 1.98644586e-8, wave)
    assert rate == pytest.approx(imaging.sky_e_per_s, rel=0.02)


def test_default_density_follows_the_number_counts():
    assert number_counts_density(25.0) == pytest.approx(46.0)
    assert number_counts_density(23.5) == pytest.approx(15.8, abs=0.1)
    assert FieldConfig().density == pytest.approx(number_counts_density(23.5))
    assert FieldConfig(density_per_arcmin2=0.0).density == 0.0


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, default_field, csst):
    path, config, _ = default_field
    again = tmp_path / "again"
    write_field(again, default_field_sources(csst, config, 11), csst, config, 11, workers=1)
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(p.name for p in again.iterdir()) and len(names) == 10
    for name in names:
        assert (path / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    write_field(other, default_field_sources(csst, config, 12), csst, config, 12)
    assert (path / "exposure_GV_01.fits").read_bytes() != (other / "exposure_GV_01.fits").read_bytes()


def test_every_file_passes_fitsverify(default_field):
    exe = shutil.which("fitsverify")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("fitsverify is missing in CI (.ci/run installs it)")
        pytest.skip("fitsverify not installed (apt-get install fitsverify)")
    path = default_field[0]
    for f in sorted(path.iterdir()):
        out = subprocess.run([exe, str(f)], capture_output=True, text=True)
        assert "0 warning(s) and 0 error(s)" in out.stdout, out.stdout


def test_exposures_carry_what_a_cutout_tool_needs(default_field, csst):
    path, config, _ = default_field
    with fits.open(path / "exposure_GI_03.fits") as h:
        p, s = h[0].header, h["SCI"].header
        assert (p["INSTRUME"], p["FILTER"], p["EXPNUM"], p["NEXP"], p["EXPTIME"]) == ("CSST", "GI", 3, 4, 150.0)
        assert p["INSTHASH"] and p["INSTFILE"] == "default"
        assert (s["DISPAXIS"], s["BUNIT"], s["NORDERS"], s["ORDER1"], s["ORDER2"]) == (1, "electron/s", 2, "+1", "0")
        assert s["DLDP1_1"] == pytest.approx(8.1) and s["OSCALE2"] == pytest.approx(0.1)
        assert WCS(h["ERR"].header).has_celestial and WCS(h["DQ"].header).has_celestial
        sens = h["SENS"].data
        assert sens["SENSITIVITY"].max() > 1e15
        assert h["SCI"].data.shape == (config.ny, config.nx)


# ---------------------------------------------------------------- bounds and failures


def test_rendering_holds_one_frame_not_one_per_source(csst):
    """Peak memory while rendering 40 sources stays near one frame (tiles are small)."""
    config = FieldConfig(bands=("GV",), nx=1024, ny=512, noiseless=True)
    imaging = csst.imaging_band()
    rng = np.random.default_rng(0)
    prepared = []
    for k in range(40):
        s = at_pixel(csst, config, 0, rng.uniform(0, 1024), rng.uniform(0, 512), np.full(WAVE.size, 1e-17), source_id=k + 1)
        prepared.append(prepare_source(s, csst, imaging, config, np.random.SeedSequence(k)))
    wcs = wcs_from_cards(field_geometry(csst, config, 0).reference)
    render_exposure(prepared[:1], wcs, csst, csst.band("GV"), config)  # compile and warm up
    tracemalloc.start()
    frame = render_exposure(prepared, wcs, csst, csst.band("GV"), config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert frame.sum() > 0
    assert peak < 1.5 * frame.nbytes


def test_failure_leaves_no_partial_output(tmp_path, csst, monkeypatch):
    config = FieldConfig(bands=("GV",), nx=128, ny=64, n_exposures=2, noiseless=True)
    source = at_pixel(csst, config, 0, 60.0, 30.0, np.full(WAVE.size, 1e-17))
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(*args, **kwargs)

    original = field_module.write_exposure_file
    monkeypatch.setattr(field_module, "write_exposure_file", fail_second)
    with pytest.raises(Exception, match="No space left on device"):
        write_field(tmp_path / "new" / "f", [source], csst, config, 0)
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    calls.clear()
    with pytest.raises(Exception, match="No space left on device"):
        write_field(existing, [source], csst, config, 0)
    assert list(existing.iterdir()) == []


def test_existing_files_need_overwrite(tmp_path, csst):
    config = FieldConfig(bands=("GV",), nx=64, ny=32, n_exposures=1, noiseless=True)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "catalog.fits").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="catalog.fits"):
        write_field(tmp_path / "f", [], csst, config, 0)
    assert (tmp_path / "f" / "catalog.fits").read_bytes() == b"precious"
    write_field(tmp_path / "f", [], csst, config, 0, overwrite=True)
    assert len(Table.read(tmp_path / "f" / "catalog.fits", hdu="SOURCES")) == 0


def test_bad_sources_and_settings_are_refused(tmp_path, csst):
    config = FieldConfig(bands=("GV",), nx=64, ny=32, n_exposures=1)
    twice = [at_pixel(csst, config, 0, 10.0, 10.0, np.zeros(WAVE.size), source_id=5) for _ in range(2)]
    with pytest.raises(InputError, match="SOURCE_ID 5 appears 2 times"):
        write_field(tmp_path / "a", twice, csst, config, 0)
    with pytest.raises(InputError, match="IDs must be >= 1"):
        write_field(tmp_path / "b", [at_pixel(csst, config, 0, 10.0, 10.0, np.zeros(WAVE.size), source_id=0)], csst, config, 0)
    with pytest.raises(ConfigError, match="no imaging entry"):
        write_field(tmp_path / "c", [], csst.replace(imaging=()), config, 0)
    with pytest.raises(ConfigError, match="has no order 'bogus'"):
        write_field(tmp_path / "d", [], csst, dataclasses.replace(config, orders=("+1", "bogus")), 0)
    for bad in ({"nx": 0}, {"density_per_arcmin2": -2.0}, {"dither_pix": -1.0}, {"dec_deg": 90.0}):
        with pytest.raises(ValueError):
            FieldConfig(**bad)
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_imaging_entry_is_checked_like_the_rest_of_the_instrument(tmp_path, csst):
    import yaml

    from slitcli.config import to_dict

    data = to_dict(csst)
    data["imaging"][0]["colour"] = "red"
    path = tmp_path / "inst.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"imaging\[0\]: unknown key\(s\) colour; valid keys are name, throughput"):
        load_instrument(path)
    del data["imaging"][0]["colour"]
    del data["imaging"][0]["sky_e_per_s"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"imaging\[0\]: missing required key 'sky_e_per_s'"):
        load_instrument(path)
    del data["imaging"]
    path.write_text(yaml.safe_dump(data))
    assert load_instrument(path).imaging == ()
