"""The first-pass contamination model (``<BAND>_CONTAM``): the neighbours' light in each cutout, from the direct image."""

import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from conftest import assert_one_line_error, assert_usage_error, gaussian_blob, invoke, make_source

from slitcli.fields.contamination import photflam
from slitcli.fields.cutout import combine_frames, cut_source, place_sources
from slitcli.fields.cutout_file import write_cutouts
from slitcli.fields.exposure import DirectImage, close_all, open_exposures
from slitcli.io.layout import band_layout
from slitcli.sim.field import FieldConfig, field_geometry, write_field
from slitcli.sim.field_render import imaging_zeropoint
from slitcli.sim.wcs import pixel_to_world, wcs_from_cards

WAVE = np.arange(3000.0, 11000.0, 0.5)
CONFIG = FieldConfig(bands=("GV", "GI"), nx=700, ny=230, noiseless=True, dither_pix=3.0)
SEED = 3


def placed(csst, source_id, x, y, flam, sigma_pix=1.5):
    """A source with spectrum `flam` at undithered 0-based detector position (x, y)."""
    ref = wcs_from_cards(field_geometry(csst, CONFIG, SEED).reference)
    ra, dec = pixel_to_world(ref, np.array([x]), np.array([y]))
    s = make_source(flam, WAVE, gaussian_blob(21, sigma_pix), source_id=source_id)
    s.ra_deg, s.dec_deg = float(ra[0]), float(dec[0])
    return s


@pytest.fixture(scope="module")
def fields(tmp_path_factory, csst):
    """A field of a target (id 1, a line spectrum), three flat-f_lambda neighbours whose spectra cross its cutout, and an isolated source (id 5); and the same field with only the neighbours."""
    root = tmp_path_factory.mktemp("contam")
    line = 5e-17 + 3e-15 * np.exp(-0.5 * ((WAVE - 8000.0) / 2.0) ** 2)
    target = placed(csst, 1, 200.3, 60.6, line)
    neighbours = [
        placed(csst, 2, 262.7, 68.2, np.full(WAVE.size, 1e-16)),  # 8 rows above, 62 columns right: its spectrum and zeroth order
        placed(csst, 3, 120.2, 52.9, np.full(WAVE.size, 2e-16), 2.0),  # 8 rows below, left
        placed(csst, 4, 330.5, 44.4, np.full(WAVE.size, 5e-17)),
    ]
    isolated = placed(csst, 5, 230.4, 190.1, np.full(WAVE.size, 1e-16))
    write_field(root / "all", [target, *neighbours, isolated], csst, CONFIG, SEED)
    write_field(root / "nb", neighbours, csst, CONFIG, SEED)
    out = root / "s.fits"
    write_cutouts(sorted((root / "all").glob("exposure_*.fits")), root / "all" / "catalog.fits", out, direct_path=root / "all" / "direct.fits")
    return root, out, {s.source_id: s for s in (target, isolated)}


def truth(root, band, source):
    """The neighbours' noiseless light in `source`'s cutout: the neighbours-only exposures cut at its offsets with the data's weights; and the data's SCI."""
    instrument, _, exps = open_exposures(sorted((root / "all").glob(f"exposure_{band}_*.fits")))
    try:
        layout = band_layout(instrument.band(band), (40, 480))
        p = place_sources(np.array([source.ra_deg]), np.array([source.dec_deg]), layout, exps)
        sci, _, _, _, weights, used = cut_source(exps, p, 0, layout.shape)
        frames = [fits.getdata(f, "SCI").astype(float) for f in sorted((root / "nb").glob(f"exposure_{band}_*.fits"))]
        return combine_frames(frames, p, 0, used, weights, layout.shape), sci
    finally:
        close_all(exps)


@pytest.mark.parametrize("band", ["GV", "GI"])
def test_contam_reproduces_flat_spectrum_neighbours_within_two_percent(fields, band):
    """Issue 9's Done-when line: for flat-f_lambda neighbours, CONTAM is their noiseless light in the cutout within 2% of its total (pixel by pixel, summed)."""
    root, out, sources = fields
    expected, sci = truth(root, band, sources[1])
    with fits.open(out) as h:
        row = list(h["SOURCES"].data["SOURCE_ID"]).index(1)
        contam = h[f"{band}_CONTAM"].data[row].astype(float)
        assert h[f"{band}_CONTAM"].data.shape == h[f"{band}_SCI"].data.shape and h[f"{band}_CONTAM"].data.dtype.str[1:] == "f4"
        assert h[f"{band}_CONTAM"].header["BUNIT"] == "electron/s" and h[0].header["CONTMODL"] == "FLAT_FLAMBDA"
    total = expected.sum()
    # The target's own light is > 5% of the neighbours': had CONTAM kept it, the checks below would fail.
    assert (sci - expected).sum() > 0.05 * total > 0
    assert abs(contam.sum() - total) < 0.005 * total
    assert np.abs(contam - expected).sum() < 0.02 * total


def test_contam_is_zero_for_an_isolated_source(fields):
    """The isolated source's CONTAM holds neither its own light nor the others' (130 rows away)."""
    _, out, _ = fields
    with fits.open(out) as h:
        row = list(h["SOURCES"].data["SOURCE_ID"]).index(5)
        for band in ("GV", "GI"):
            sci = h[f"{band}_SCI"].data[row]
            assert sci.sum() > 0
            assert np.abs(h[f"{band}_CONTAM"].data[row]).max() < 1e-5 * sci.max()


def test_photflam_from_keywords_and_from_abzp(fields, csst, tmp_path):
    """PHOTFLAM is read as written; without it ABZP and PHOTPLAM give the same number (pivot-wavelength identity); with neither, a one-line error."""
    root, _, _ = fields
    zp, flam, pivot = imaging_zeropoint(csst, csst.imaging_band())
    direct = DirectImage(root / "all" / "direct.fits")
    try:
        assert photflam(direct) == pytest.approx(flam, rel=1e-6)
    finally:
        direct.close()
    copy = tmp_path / "direct.fits"
    shutil.copy(root / "all" / "direct.fits", copy)
    with fits.open(copy, mode="update") as h:
        del h["SCI"].header["PHOTFLAM"]
    direct = DirectImage(copy)
    try:
        assert photflam(direct) == pytest.approx(flam, rel=2e-3)
    finally:
        direct.close()
    with fits.open(copy, mode="update") as h:
        del h["SCI"].header["ABZP"]
    files = sorted((root / "all").glob("exposure_*.fits"))
    out = tmp_path / "s.fits"
    result = invoke("cutout", *files, "--catalog", root / "all" / "catalog.fits", "--direct", copy, "-o", out)
    assert_one_line_error(result, "direct.fits", "PHOTFLAM")
    assert not out.exists()


def test_contam_file_passes_fitsverify_and_feeds_predict(fields, tmp_path):
    """The CONTAM cubes are valid FITS and SampleReader-based commands ignore them (the CNN reads SCI/ERR/DQ only)."""
    _, out, _ = fields
    if shutil.which("fitsverify"):
        check = subprocess.run(["fitsverify", "-q", "-e", str(out)], capture_output=True, text=True)
        assert "verification OK" in check.stdout, check.stdout + check.stderr
    z = tmp_path / "z.ecsv"
    result = invoke("predict", out, "--n-mc", "2", "--device", "cpu", "-q", "-o", z)
    assert result.exit_code == 0, result.output
    assert z.exists()


# ---------------------------------------------------------------- the second pass (--refine)


@pytest.fixture(scope="module")
def coloured_fields(tmp_path_factory, csst):
    """The target of `fields` crossed by a steeply red and a blue neighbour (not flat in f_lambda), and the field of the neighbours alone."""
    root = tmp_path_factory.mktemp("refine")
    line = 5e-17 + 3e-15 * np.exp(-0.5 * ((WAVE - 8000.0) / 2.0) ** 2)
    red = 1.5e-16 * (WAVE / 7000.0) ** 3
    blue = 2.5e-16 * (WAVE / 7000.0) ** -2
    target = placed(csst, 1, 200.3, 60.6, line)
    neighbours = [placed(csst, 2, 262.7, 68.2, red), placed(csst, 3, 120.2, 52.9, blue, 2.0)]
    write_field(root / "all", [target, *neighbours], csst, CONFIG, SEED)
    write_field(root / "nb", neighbours, csst, CONFIG, SEED)
    files = sorted((root / "all").glob("exposure_*.fits"))
    outs = {}
    for name, refine in (("first", None), ("refined", 30.0)):
        outs[name] = root / f"{name}.fits"
        write_cutouts(files, root / "all" / "catalog.fits", outs[name], direct_path=root / "all" / "direct.fits", refine_mag=refine)
    return root, outs, target


@pytest.mark.parametrize("band", ["GV", "GI"])
def test_refine_fits_neighbours_that_are_not_flat(coloured_fields, band):
    """A red and a blue neighbour: the flat first pass misses their light by 67% (GV) and 27% (GI) of its total; the fitted second pass by 1.5% and 1.8%."""
    root, outs, target = coloured_fields
    expected, _ = truth(root, band, target)
    total = expected.sum()
    errors = {}
    for name, out in outs.items():
        with fits.open(out) as h:
            row = list(h["SOURCES"].data["SOURCE_ID"]).index(1)
            errors[name] = np.abs(h[f"{band}_CONTAM"].data[row] - expected).sum() / total
            model = h[0].header["CONTMODL"]
            assert model == ("REFINED_POLY2" if name == "refined" else "FLAT_FLAMBDA") and h[f"{band}_CONTAM"].header["CONTMODL"] == model
    assert errors["first"] > 0.1
    assert errors["refined"] < 0.03 and errors["refined"] < 0.2 * errors["first"]


def test_refine_keeps_flat_neighbours_flat(fields, tmp_path):
    """On the flat-spectrum neighbours of `fields` the second pass fits back (about) the flat spectrum: CONTAM still within 2%."""
    root, _, sources = fields
    out = tmp_path / "refined.fits"
    result = invoke("cutout", *sorted((root / "all").glob("exposure_*.fits")), "--catalog", root / "all" / "catalog.fits", "--direct", root / "all" / "direct.fits", "--refine", "--refine-mag", "30", "-q", "-o", out)
    assert result.exit_code == 0, result.output
    for band in ("GV", "GI"):
        expected, _ = truth(root, band, sources[1])
        with fits.open(out) as h:
            row = list(h["SOURCES"].data["SOURCE_ID"]).index(1)
            contam = h[f"{band}_CONTAM"].data[row]
            assert h[0].header["REFMAG"] == 30.0
        assert np.abs(contam - expected).sum() < 0.02 * expected.sum()
    result = invoke("cutout", *sorted((root / "all").glob("exposure_*.fits")), "--catalog", root / "all" / "catalog.fits", "--refine", "-o", tmp_path / "x.fits")
    assert_usage_error(result, "--direct")
