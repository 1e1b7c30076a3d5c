"""`slitcli simulate --field` through the command line: the directory, its readers, usage and user errors."""

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from conftest import assert_one_line_error, assert_usage_error, invoke, write_desi, write_hsc

from slitcli.config import to_dict


@pytest.fixture(scope="module")
def field_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("field") / "f"
    result = invoke("simulate", "--field", "--size", "320x160", "--density", 60, "--dither", 3, "--seed", 4, "-j", 2, "-q", "-o", path)
    assert result.exit_code == 0, result.output
    return path


def test_field_directory_layout_and_readers(field_dir):
    from slitcli.io.truth import read_truth

    names = sorted(p.name for p in field_dir.iterdir())
    assert names == ["catalog.fits", "direct.fits"] + [f"exposure_{b}_{k:02d}.fits" for b in ("GI", "GV") for k in range(1, 5)]
    truth = read_truth(field_dir / "catalog.fits")  # what evaluate --truth and calibrate read
    assert len(truth) > 5 and np.all(truth["Z_TRUE"] > 0)
    with fits.open(field_dir / "direct.fits") as h:
        assert [x.name for x in h] == ["PRIMARY", "SCI", "ERR", "DQ", "SEGMENTATION"]
        assert set(np.unique(h["SEGMENTATION"].data)) <= {0, *truth["SOURCE_ID"]}
    for k in range(1, 5):
        with fits.open(field_dir / f"exposure_GV_{k:02d}.fits") as h:
            assert [x.name for x in h] == ["PRIMARY", "SCI", "ERR", "DQ", "SENS"]
            assert h["SCI"].data.shape == (160, 320)
            wcs = WCS(h["SCI"].header)
            assert wcs.has_celestial and wcs.celestial.wcs.ctype[0] == "RA---TAN"
            assert abs(h[0].header["DITHX"]) <= 3 and abs(h[0].header["DITHY"]) <= 3
            assert h[0].header["SEED"] == 4


def test_field_from_your_galaxies_keeps_their_ids_and_positions(tmp_path):
    hsc, desi = write_hsc(tmp_path / "hsc.fits", n=4), write_desi(tmp_path / "desi.fits", n=4)
    out = tmp_path / "f"
    result = invoke("simulate", "--field", "--hsc", hsc, "--desi", desi, "--size", 256, "--bands", "GI", "--noiseless", "-o", out)
    assert result.exit_code == 0, result.output
    cat = Table.read(out / "catalog.fits", hdu="SOURCES")
    assert list(cat["SOURCE_ID"]) == [100, 101, 102, 103]
    np.testing.assert_allclose(cat["RA"], 150.0 + 0.001 * np.arange(4))
    np.testing.assert_allclose(cat["Z_TRUE"], np.linspace(0.3, 0.9, 4))
    with fits.open(out / "direct.fits") as h:
        x, y = WCS(h["SCI"].header).all_world2pix(cat["RA"], cat["DEC"], 1)
    np.testing.assert_allclose(x, cat["X_DIRECT"], atol=0.05)
    np.testing.assert_allclose(y, cat["Y_DIRECT"], atol=0.05)
    assert sorted(p.name for p in out.iterdir())[-1] == "exposure_GI_04.fits"


@pytest.mark.parametrize(
    "args, needle",
    [
        (("--size", 0), "--size"),
        (("--size", "100x0"), "--size"),
        (("--size", "12x"), "--size"),
        (("--size", "9300"), "--size"),
        (("--density", -1), "--density"),
        (("--dither", -0.5), "--dither"),
        (("-n", 10), "-n"),
        (("--zeroth-order",), "--zeroth-order"),
        (("--first-id", 0), "--first-id"),
    ],
)
def test_bad_field_options_are_usage_errors(tmp_path, args, needle):
    result = invoke("simulate", "--field", *args, "-o", tmp_path / "f")
    assert_usage_error(result, needle)
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("option, value", [("--size", 64), ("--density", 3), ("--dither", 1)])
def test_field_options_need_field(tmp_path, option, value):
    assert_usage_error(invoke("simulate", option, value, "-o", tmp_path / "s.fits"), option, "--field only")


def test_existing_field_file_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "f"
    out.mkdir()
    (out / "exposure_GV_02.fits").write_bytes(b"precious")
    assert_one_line_error(invoke("simulate", "--field", "--size", 64, "-q", "-o", out), "exposure_GV_02.fits", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["exposure_GV_02.fits"]
    assert (out / "exposure_GV_02.fits").read_bytes() == b"precious"


def test_instrument_without_imaging_is_one_line(tmp_path, csst):
    data = to_dict(csst)
    del data["imaging"]
    inst = tmp_path / "noimaging.yaml"
    inst.write_text(yaml.safe_dump(data))
    out = tmp_path / "f"
    assert_one_line_error(invoke("simulate", "--field", "--size", 64, "--instrument", inst, "-q", "-o", out), "no imaging entry")
    assert not out.exists()


def test_field_config_file_is_checked(tmp_path):
    cfg = tmp_path / "field.yaml"
    cfg.write_text("nx: 64\ncutout_width: 480\n")
    assert_one_line_error(invoke("simulate", "--field", "--config", cfg, "-q", "-o", tmp_path / "f"), "field.yaml", "unknown key(s) cutout_width")
