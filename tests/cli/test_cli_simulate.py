"""`slitcli simulate` end to end through the command line, good input and bad."""

import shutil
import subprocess

import fitsio
import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from conftest import assert_one_line_error, assert_usage_error, write_desi, write_hsc
from typer.testing import CliRunner

from slitcli.cli import app
from slitcli.config import to_dict

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["simulate", *map(str, args)])


@pytest.fixture(scope="module")
def default_sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("default") / "sample.fits"
    result = run("-n", 40, "--seed", 7, "-q", "-o", path)
    assert result.exit_code == 0, result.output
    return path


def test_default_sample_layout_and_readers(default_sample):
    with fits.open(default_sample) as h:
        names = [x.name for x in h]
        assert names == ["PRIMARY", "GV_SCI", "GV_ERR", "GV_DQ", "GV_SENS", "GI_SCI", "GI_ERR", "GI_DQ", "GI_SENS", "DIRECT", "SOURCES"]
        assert h["GI_SCI"].data.shape == (40, 40, 480)
        hdr = h["GV_SCI"].header
        assert (hdr["CTYPE1"], hdr["CUNIT1"], hdr["BUNIT"], hdr["EXPTIME"]) == ("WAVE", "Angstrom", "electron/s", 600.0)
        assert h[0].header["SEED"] == 7 and h[0].header["ORIGIN"] == "slitcli"
    with fitsio.FITS(str(default_sample)) as f:
        assert f["GV_ERR"][3:5, :, :].shape == (2, 40, 480)
    t = Table.read(default_sample, hdu="SOURCES")
    assert list(t["SOURCE_ID"]) == list(range(1, 41))
    assert t["RA"].unit == "deg"
    assert np.all((t["Z_TRUE"] > 0) & (t["Z_TRUE"] < 2.0))
    assert np.all(t["MAG_I"] <= 23.5)
    assert set(t["CLASS"]) <= {"RED", "BLUE"}
    assert np.all(t["SNR_GI"] >= 0)


def test_default_sample_passes_fitsverify(default_sample):
    exe = shutil.which("fitsverify")
    if exe is None:
        import os

        if os.environ.get("CI"):
            pytest.fail("fitsverify is missing in CI (.ci/run installs it)")
        pytest.skip("fitsverify not installed (apt-get install fitsverify)")
    out = subprocess.run([exe, "-q", str(default_sample)], capture_output=True, text=True)
    assert "verification OK" in out.stdout, out.stdout


def test_same_seed_same_bytes_any_worker_count(tmp_path, default_sample):
    again = tmp_path / "again.fits"
    assert run("-n", 40, "--seed", 7, "-q", "-j", 2, "-o", again).exit_code == 0
    other = tmp_path / "other.fits"
    assert run("-n", 40, "--seed", 8, "-q", "-o", other).exit_code == 0
    with fits.open(default_sample) as a, fits.open(again) as b, fits.open(other) as c:
        for ext in range(1, len(a)):
            assert a[ext].data.tobytes() == b[ext].data.tobytes(), a[ext].name
        assert a["GV_SCI"].data.tobytes() != c["GV_SCI"].data.tobytes()


def test_existing_output_is_untouched_without_overwrite(tmp_path):
    out = tmp_path / "s.fits"
    out.write_bytes(b"precious")
    assert_one_line_error(run("-n", 2, "-q", "-o", out), str(out), "--overwrite")
    assert out.read_bytes() == b"precious"
    assert run("-n", 2, "-q", "-o", out, "--overwrite").exit_code == 0
    assert fits.getheader(out)["NSOURCE"] == 2


def test_hsc_desi_inputs_sky_and_id_match(tmp_path):
    hsc, desi = write_hsc(tmp_path / "hsc.fits"), write_desi(tmp_path / "desi.fits")
    out = tmp_path / "s.fits"
    result = run("--hsc", hsc, "--desi", desi, "-o", out)
    assert result.exit_code == 0, result.output
    assert "matched 3 of 3 images" in result.output
    t = Table.read(out, hdu="SOURCES")
    assert list(t["SOURCE_ID"]) == [100, 101, 102]
    np.testing.assert_allclose(t["Z_TRUE"], [0.3, 0.6, 0.9])
    out2 = tmp_path / "s2.fits"
    assert run("--hsc", hsc, "--desi", desi, "--match", "id", "-q", "--hsc-psf-fwhm", 0.6, "--isolate", "-o", out2).exit_code == 0
    assert fits.getdata(out2, "GV_SCI").shape == (3, 40, 480)


def test_unmatched_sources_are_reported(tmp_path):
    hsc = write_hsc(tmp_path / "hsc.fits", n=3)
    desi = write_desi(tmp_path / "desi.fits", n=2)
    result = run("--hsc", hsc, "--desi", desi, "-o", tmp_path / "s.fits")
    assert result.exit_code == 0
    assert "matched 2 of 3 images" in result.output and "1 images unmatched" in result.output


def test_second_instrument_file(tmp_path, csst):
    data = to_dict(csst)
    data["bands"][1]["orders"][0]["dldp"] = [3800.0, 7.1]
    inst = tmp_path / "cess.yaml"
    inst.write_text(yaml.safe_dump(data))
    out = tmp_path / "s.fits"
    assert run("-n", 2, "-q", "--instrument", inst, "--bands", "GV", "-o", out).exit_code == 0
    assert fits.getheader(out, "GV_SCI")["CDELT1"] == pytest.approx(7.1)


def test_config_file_and_noiseless(tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("cutout_height: 24\ncutout_width: 300\nbands: [GI]\n")
    out = tmp_path / "s.fits"
    assert run("-n", 2, "-q", "--config", cfg, "--noiseless", "-o", out).exit_code == 0
    with fits.open(out) as h:
        assert h["GI_SCI"].data.shape == (2, 24, 300)
        assert h[0].header["NOISELES"] is True
        assert np.all(h["GI_SCI"].data >= 0)


def test_help_teaches():
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--hsc", "--desi", "--seed", "--overwrite", "--instrument", "Examples"):
        assert option in result.output
    assert runner.invoke(app, ["--help"]).exit_code == 0


# ---- bad input: one line, exit 1, no output file -------------------------------------------


def _bad_hsc(tmp_path, **kw):
    return write_hsc(tmp_path / "hsc.fits", **kw), write_desi(tmp_path / "desi.fits")


def _bad_desi(tmp_path, **kw):
    return write_hsc(tmp_path / "hsc.fits"), write_desi(tmp_path / "desi.fits", **kw)


BAD_INPUTS = {
    "missing HDU": (lambda p: _bad_desi(p, drop_hdu="WAVELENGTH"), ["desi.fits", "missing HDU WAVELENGTH"]),
    "missing column": (lambda p: _bad_hsc(p, columns=["object_id", "ra", "image"]), ["hsc.fits", "lacks column(s) dec"]),
    "missing keyword": (lambda p: _bad_hsc(p, with_pixscale=False), ["hsc.fits", "PIXSCALE"]),
    "flat image column": (lambda p: _bad_hsc(p, image_shape=(576,)), ["hsc.fits", "column image must hold a 2D"]),
    "NaN image": (lambda p: _bad_hsc(p, nan_row=1), ["hsc.fits", "NaN", "row 1"]),
    "non-monotonic wavelength": (lambda p: _bad_desi(p, wave=np.r_[np.arange(3000.0, 6000.0, 2.0), 5000.0, np.arange(6002.0, 11000.0, 2.0)]), ["desi.fits", "WAVELENGTH must increase"]),
    "negative Z": (lambda p: _bad_desi(p, z=[0.3, -0.1, 0.5]), ["desi.fits", "column Z", "row 1"]),
    "missing Z": (lambda p: _bad_desi(p, meta_columns=["TARGETID", "TARGET_RA", "TARGET_DEC"]), ["desi.fits", "lacks column(s) Z"]),
    "FLUX rows misaligned": (lambda p: _bad_desi(p, flux_rows=2), ["desi.fits", "FLUX has 2 rows but METADATA has 3"]),
    "empty table": (lambda p: _bad_hsc(p, n=0), ["hsc.fits", "no rows"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_files(tmp_path, case):
    make, needles = BAD_INPUTS[case]
    hsc, desi = make(tmp_path)
    out = tmp_path / "out.fits"
    assert_one_line_error(run("--hsc", hsc, "--desi", desi, "-q", "-o", out), *needles)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_text_file_named_fits(tmp_path):
    fake = tmp_path / "cat.fits"
    fake.write_text("object_id,ra,dec\n1,2,3\n")
    assert_one_line_error(run("--hsc", fake, "--desi", write_desi(tmp_path / "d.fits"), "-o", tmp_path / "o.fits"), "cat.fits", "not a FITS file")


def test_truncated_fits(tmp_path):
    hsc = write_hsc(tmp_path / "hsc.fits")
    data = hsc.read_bytes()
    hsc.write_bytes(data[: len(data) - 5000])
    result = run("--hsc", hsc, "--desi", write_desi(tmp_path / "d.fits"), "-o", tmp_path / "o.fits")
    assert_one_line_error(result, "hsc.fits")
    assert not (tmp_path / "o.fits").exists()


def test_missing_file(tmp_path):
    assert_one_line_error(run("--hsc", tmp_path / "nope.fits", "--desi", write_desi(tmp_path / "d.fits"), "-o", tmp_path / "o.fits"), "nope.fits", "not found")


def test_only_one_of_hsc_and_desi(tmp_path):
    assert_usage_error(run("--hsc", write_hsc(tmp_path / "h.fits"), "-o", tmp_path / "o.fits"), "--hsc and --desi go together")


@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_n(tmp_path, n):
    assert_usage_error(run("-n", n, "-o", tmp_path / "o.fits"), "--n-sources", "greater than or equal to 1")
    assert not (tmp_path / "o.fits").exists()


def test_malformed_instrument_yaml(tmp_path):
    bad = tmp_path / "inst.yaml"
    bad.write_text("name: X\nbands: [\n")
    assert_one_line_error(run("-n", 1, "--instrument", bad, "-o", tmp_path / "o.fits"), "inst.yaml", "malformed YAML")


def test_instrument_yaml_with_unknown_key(tmp_path, csst):
    data = to_dict(csst)
    data["bands"][2]["orders"][0]["tilt"] = 0.1
    inst = tmp_path / "inst.yaml"
    inst.write_text(yaml.safe_dump(data))
    assert_one_line_error(run("-n", 1, "--instrument", inst, "-o", tmp_path / "o.fits"), "bands[2].orders[0]", "unknown key(s) tilt", "valid keys are name, enabled, dldp")


def test_unknown_band(tmp_path):
    assert_one_line_error(run("-n", 1, "--bands", "GX", "-o", tmp_path / "o.fits"), "no band 'GX'", "GU, GV, GI")


def test_missing_output_directory(tmp_path):
    assert_one_line_error(run("-n", 1, "-o", tmp_path / "no" / "o.fits"), "does not exist")
