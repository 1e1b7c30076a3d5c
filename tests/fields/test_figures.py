"""Figures of the fields guide: an exposure with its sources' traces, and one source's SCI / CONTAM / SCI - CONTAM."""

import fitsio
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from conftest import gaussian_blob, make_source
from matplotlib.image import imread
from PIL import Image

from slitcli.errors import InputError
from slitcli.fields.cutout_file import write_cutouts
from slitcli.fields.figures import (
    LABEL_GID,
    PANELS,
    cutout_contam_figure,
    exposure_figure,
    plot_cutout_contam,
    plot_exposure,
)
from slitcli.sim.field import FieldConfig, field_geometry, write_field
from slitcli.sim.wcs import pixel_to_world, wcs_from_cards

WAVE = np.arange(3000.0, 11000.0, 1.0)
CONFIG = FieldConfig(bands=("GV", "GI"), nx=600, ny=200, noiseless=True, dither_pix=2.0, n_exposures=2, stamp_size=32, oversample=3)
SEED = 4
#: Undithered 0-based detector positions (x, y) of sources 1..6; 1 and 2 overlap (2 contaminates 1).
POSITIONS = {1: (200.3, 60.6), 2: (262.7, 66.2), 3: (120.2, 150.9), 4: (330.5, 40.4), 5: (470.4, 170.1), 6: (40.8, 30.2)}
#: A zoom that holds the direct positions of 1, 2 and 4 only (x0, y0, x1, y1).
REGION = (150, 20, 400, 110)


@pytest.fixture(scope="module")
def field(tmp_path_factory, csst):
    """A small noiseless field of six flat-spectrum sources (source 1 brightest) and its sample file."""
    root = tmp_path_factory.mktemp("figures")
    ref = wcs_from_cards(field_geometry(csst, CONFIG, SEED).reference)
    sources = []
    for sid, (x, y) in POSITIONS.items():
        ra, dec = pixel_to_world(ref, np.array([x]), np.array([y]))
        s = make_source(np.full(WAVE.size, 2e-16 / sid), WAVE, gaussian_blob(15, 1.5), source_id=sid)
        s.ra_deg, s.dec_deg = float(ra[0]), float(dec[0])
        sources.append(s)
    write_field(root / "f", sources, csst, CONFIG, SEED)
    sample = root / "sample.fits"
    write_cutouts(sorted((root / "f").glob("exposure_*.fits")), root / "f" / "catalog.fits", sample, direct_path=root / "f" / "direct.fits")
    return root / "f", sample


def labels(fig):
    return sorted(int(t.get_text()) for ax in fig.axes for t in ax.texts if t.get_gid() == LABEL_GID)


def direct_positions(exposure, catalog):
    """0-based (x, y) of the catalogue sources on the exposure, by astropy on the file's header (not slitcli)."""
    with fits.open(catalog) as h:
        table = h["SOURCES"].data
    with fits.open(exposure) as h:
        x, y = WCS(h["SCI"].header).all_world2pix(table["RA"], table["DEC"], 0)
    return np.asarray(table["SOURCE_ID"]), x, y


def test_exposure_figure_labels_the_sources_in_the_region(field, tmp_path):
    root, _ = field
    exposure, catalog = root / "exposure_GV_01.fits", root / "catalog.fits"
    ids, x, y = direct_positions(exposure, catalog)
    x0, y0, x1, y1 = REGION
    inside = (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)
    assert sorted(ids[inside]) == [1, 2, 4]  # the fixture's geometry, checked independently
    fig = exposure_figure(exposure, catalog, region=REGION)
    assert labels(fig) == sorted(ids[inside])
    ax = fig.axes[0]
    assert ax.get_xlim() == (x0 - 0.5, x1 - 0.5) and ax.get_ylim() == (y0 - 0.5, y1 - 0.5)
    assert ax.get_images()[0].get_array().shape == (y1 - y0, x1 - x0)
    assert "GV" in fig.get_suptitle() and "exposure_GV_01.fits" in fig.get_suptitle()
    # a label sits at its source's direct position (just above it)
    text = next(t for t in ax.texts if t.get_gid() == LABEL_GID and t.get_text() == "4")
    tx, ty = text.get_position()
    k = int(np.nonzero(ids == 4)[0][0])
    assert abs(tx - x[k]) < 0.01 and 0 < ty - y[k] < 5
    # the whole frame: every source on it; max_labels keeps the brightest (source 1)
    assert labels(exposure_figure(exposure, catalog)) == [1, 2, 3, 4, 5, 6]
    assert labels(exposure_figure(exposure, catalog, max_labels=1)) == [1]


def test_plot_exposure_writes_a_png(field, tmp_path):
    root, _ = field
    out = plot_exposure(tmp_path / "exposure.png", root / "exposure_GI_02.fits", root / "catalog.fits", region=REGION)
    assert out == tmp_path / "exposure.png" and [p.name for p in tmp_path.iterdir()] == ["exposure.png"]
    image = imread(out)
    fig = exposure_figure(root / "exposure_GI_02.fits", root / "catalog.fits", region=REGION)
    w, h = fig.get_size_inches() * 110
    assert image.shape[:2] == (round(h), round(w)) and image.std() > 0.05
    assert "exposure_GI_02.fits" in Image.open(out).text["Title"]


def test_exposure_region_off_the_detector_is_refused(field):
    root, _ = field
    with pytest.raises(InputError, match="region") as err:
        exposure_figure(root / "exposure_GV_01.fits", root / "catalog.fits", region=(700, 0, 800, 50))
    assert "\n" not in str(err.value)


def test_cutout_contam_figure_shows_sci_minus_contam(field, tmp_path):
    _, sample = field
    fig = cutout_contam_figure(sample, 1)
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_gid()}
    assert set(panels) == {f"{b} {p}" for b in ("GV", "GI") for p in PANELS}
    ids = fitsio.read(sample, "SOURCES")["SOURCE_ID"]
    i = int(np.nonzero(ids == 1)[0][0])
    for b in ("GV", "GI"):
        sci = fitsio.read(sample, f"{b}_SCI")[i].astype(np.float64)
        contam = fitsio.read(sample, f"{b}_CONTAM")[i].astype(np.float64)
        nexp = fitsio.read(sample, f"{b}_NEXP")[i]
        header = fitsio.read_header(sample, f"{b}_SCI")
        shown = panels[f"{b} SCI - CONTAM"].get_images()[0]
        np.testing.assert_array_equal(shown.get_array().data, sci - contam)
        np.testing.assert_array_equal(np.ma.getmaskarray(shown.get_array()), nexp == 0)
        if b == "GV":  # source 2's spectrum crosses source 1's GV cutout: the model is not empty
            assert np.abs(contam).max() > 0.01
        # one colour scale per band; x in wavelength from the cube's WCS
        clims = {panels[f"{b} {p}"].get_images()[0].get_clim() for p in PANELS}
        assert len(clims) == 1
        wave_first = header["CRVAL1"] + header["CDELT1"] * (1.0 - header["CRPIX1"])
        left, right = shown.get_extent()[:2]
        assert left == pytest.approx(wave_first - 0.5 * header["CDELT1"])
        assert right == pytest.approx(wave_first + (sci.shape[1] - 0.5) * header["CDELT1"])
    only = cutout_contam_figure(sample, 1, bands=["GI"])
    assert {ax.get_gid() for ax in only.axes if ax.get_gid()} == {f"GI {p}" for p in PANELS}


def test_plot_cutout_contam_writes_a_png(field, tmp_path):
    _, sample = field
    out = plot_cutout_contam(tmp_path / "contam.png", sample, 2)
    image = imread(out)
    assert image.shape[:2] == (round((1.9 * 2 + 0.8) * 110), round(13.0 * 110)) and image.std() > 0.05
    assert Image.open(out).text["Title"].startswith("source 2 in sample.fits")


def test_source_not_in_the_sample_is_refused(field):
    with pytest.raises(InputError, match="SOURCE_ID 999 is not in") as err:
        cutout_contam_figure(field[1], 999)
    assert "\n" not in str(err.value)
