"""`slitcli cutout` end to end: a simulated field cut into a sample file that predict and evaluate read; bad inputs."""

import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import assert_one_line_error, invoke


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    root = tmp_path_factory.mktemp("cutfield")
    result = invoke("simulate", "--field", "--size", "400x300", "--seed", "2", "-q", "-o", root / "f")
    assert result.exit_code == 0, result.output
    return root / "f"


def exposures(field):
    return sorted(field.glob("exposure_*.fits"))


def run_cutout(field, out, *extra, files=None, catalog=None, direct=True):
    args = [*(files or exposures(field)), "--catalog", catalog or field / "catalog.fits", "-o", out]
    if direct:
        args += ["--direct", field / "direct.fits"]
    return invoke("cutout", *args, *extra)


def test_cutout_file_feeds_predict_and_evaluate(field, tmp_path):
    out = tmp_path / "sample.fits"
    result = run_cutout(field, out)
    assert result.exit_code == 0, result.output
    assert "lie on no exposure: left out" in result.output  # the direct image's margin holds sources off the detector
    with fits.open(out) as h:
        n = h[0].header["NSOURCE"]
        assert h[0].header["BANDS"] == "GV,GI" and h[0].header["NSKIPPED"] >= 1
        for b in ("GV", "GI"):
            assert h[f"{b}_SCI"].data.shape == (n, 40, 480) and h[f"{b}_NEXP"].data.dtype.str[1:] == "i2"
            nexp, dq = h[f"{b}_NEXP"].data, h[f"{b}_DQ"].data
            assert nexp.max() == 4 and np.all((nexp == 0) == ((dq & 1) == 1))
            assert np.all(h[f"{b}_ERR"].data[nexp > 0] > 0)
        assert h["DIRECT"].data.shape == (n, 64, 64)
        sources = Table(h["SOURCES"].data)
        assert [x.name for x in h] == ["PRIMARY", "GV_SCI", "GV_ERR", "GV_DQ", "GV_NEXP", "GV_CONTAM", "GV_SENS", "GI_SCI", "GI_ERR", "GI_DQ", "GI_NEXP", "GI_CONTAM", "GI_SENS", "DIRECT", "SOURCES"]
    with fits.open(field / "catalog.fits") as h:
        catalog = Table(h["SOURCES"].data)
    assert len(sources) == n and n + h_skipped(out) == len(catalog)
    assert {"Z_TRUE", "SNR_GI", "X_DIRECT", "DX_GV", "DY_GI", "SPREAD_GV", "NEXP_GI", "COVER_GV", "IN_DIRECT"} <= set(sources.colnames)
    assert np.all(np.abs(sources["DX_GV"]) <= 0.75) and np.all((sources["COVER_GI"] >= 0) & (sources["COVER_GI"] <= 1))
    assert np.all(sources["NEXP_GV"][sources["COVER_GV"] > 0] >= 1)
    if shutil.which("fitsverify"):
        check = subprocess.run(["fitsverify", "-q", "-e", str(out)], capture_output=True, text=True)
        assert "verification OK" in check.stdout, check.stdout + check.stderr
    z = tmp_path / "z.ecsv"
    result = invoke("predict", out, "--n-mc", "2", "--device", "cpu", "-q", "-o", z)
    assert result.exit_code == 0, result.output
    predicted = Table.read(z)
    assert len(predicted) == n and list(predicted["SOURCE_ID"]) == list(sources["SOURCE_ID"])
    result = invoke("evaluate", z, "--truth", out, "-q", "-o", tmp_path / "report")
    assert result.exit_code == 0, result.output
    # template route: needs DIRECT, which --direct gave
    result = invoke("predict", out, "--method", "template", "-q", "-o", tmp_path / "zt.ecsv")
    assert result.exit_code == 0, result.output


def h_skipped(path):
    with fits.open(path) as h:
        return h[0].header["NSKIPPED"]


def test_without_direct_no_direct_hdu_and_template_refuses(field, tmp_path):
    out = tmp_path / "nodirect.fits"
    assert run_cutout(field, out, direct=False).exit_code == 0
    with fits.open(out) as h:
        assert "DIRECT" not in h
    result = invoke("predict", out, "--method", "template", "-o", tmp_path / "z.ecsv")
    assert_one_line_error(result, "DIRECT")


# ---------------------------------------------------------------- bad inputs


def edited(field, tmp_path, name, edit, hdu="SCI"):
    """A copy of one field file with its header or data edited."""
    copy = tmp_path / name
    shutil.copy(field / name, copy)
    with fits.open(copy, mode="update") as h:
        edit(h)
    return copy


def assert_refused(result, out, tmp_path, *needles):
    assert_one_line_error(result, *needles)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or "tmp" in p.name]


def test_exposures_of_different_instruments_are_refused(field, tmp_path):
    files = exposures(field)
    other = edited(field, tmp_path, files[1].name, lambda h: h[0].header.set("INSTHASH", "0123456789abcdef"))
    out = tmp_path / "s.fits"
    assert_refused(run_cutout(field, out, files=[files[0], other]), out, tmp_path, other.name, "INSTHASH", "different instruments")


def test_exposure_without_filter_is_refused(field, tmp_path):
    def drop(h):
        del h[0].header["FILTER"]
        del h["SCI"].header["FILTER"]

    bad = edited(field, tmp_path, exposures(field)[0].name, drop)
    out = tmp_path / "s.fits"
    assert_refused(run_cutout(field, out, files=[bad]), out, tmp_path, bad.name, "FILTER")


def test_exposure_without_celestial_wcs_is_refused(field, tmp_path):
    def drop(h):
        for k in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "RADESYS", "EQUINOX"):
            del h["SCI"].header[k]

    bad = edited(field, tmp_path, exposures(field)[0].name, drop)
    out = tmp_path / "s.fits"
    assert_refused(run_cutout(field, out, files=[bad]), out, tmp_path, bad.name, "celestial WCS")


def test_catalogue_without_dec_is_refused(field, tmp_path):
    with fits.open(field / "catalog.fits") as h:
        t = Table(h["SOURCES"].data)
    t.remove_column("DEC")
    cat = tmp_path / "cat.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(t, name="SOURCES")]).writeto(cat)
    out = tmp_path / "s.fits"
    assert_refused(run_cutout(field, out, catalog=cat), out, tmp_path, "cat.fits", "DEC")


def test_all_sources_off_every_exposure_is_refused(field, tmp_path):
    with fits.open(field / "catalog.fits") as h:
        t = Table(h["SOURCES"].data)
    t["DEC"] += 1.0
    cat = tmp_path / "cat.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(t, name="SOURCES")]).writeto(cat)
    out = tmp_path / "s.fits"
    assert_refused(run_cutout(field, out, catalog=cat), out, tmp_path, "cat.fits", "none of its", "any exposure")


def test_direct_image_that_does_not_overlap_is_refused(field, tmp_path):
    def move(h):
        for e in ("SCI", "SEGMENTATION"):
            h[e].header["CRVAL2"] += 1.0

    bad = edited(field, tmp_path, "direct.fits", move)
    out = tmp_path / "s.fits"
    result = invoke("cutout", *exposures(field), "--catalog", field / "catalog.fits", "--direct", bad, "-o", out)
    assert_refused(result, out, tmp_path, "direct.fits", "does not overlap")


def test_bunit_not_a_rate_is_refused(field, tmp_path):
    bad = edited(field, tmp_path, exposures(field)[0].name, lambda h: h["SCI"].header.set("BUNIT", "adu"))
    out = tmp_path / "s.fits"
    assert_refused(run_cutout(field, out, files=[bad]), out, tmp_path, bad.name, "BUNIT")


def test_instrument_file_named_by_the_exposure_or_given(field, tmp_path):
    """INSTFILE that cannot be found: refused, pointing to --instrument; --instrument with the right file: cut; a wrong one: refused."""
    from slitcli.instrument import default_instrument_path

    bad = edited(field, tmp_path, exposures(field)[0].name, lambda h: h[0].header.set("INSTFILE", "nowhere/csst_v9.yaml"))
    out = tmp_path / "s.fits"
    assert_refused(run_cutout(field, out, files=[bad], direct=False), out, tmp_path, bad.name, "nowhere/csst_v9.yaml", "--instrument")
    result = run_cutout(field, out, "--instrument", default_instrument_path(), files=[bad], direct=False)
    assert result.exit_code == 0, result.output
    other = tmp_path / "other.yaml"
    other.write_text(default_instrument_path().read_text().replace("read_noise_e: 5.0", "read_noise_e: 6.0"))
    assert other.read_text() != default_instrument_path().read_text()
    out2 = tmp_path / "s2.fits"
    assert_refused(run_cutout(field, out2, "--instrument", other, files=[bad], direct=False), out2, tmp_path, "INSTHASH", "other.yaml")


def test_same_inputs_same_bytes_and_help(field, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    assert run_cutout(field, a).exit_code == 0 and run_cutout(field, b).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    result = invoke("cutout", "--help")
    assert result.exit_code == 0 and "--catalog" in result.output and "--direct" in result.output


def test_same_exposure_twice_is_refused(field, tmp_path):
    """Combined with itself, an exposure would claim sqrt(2) too small an ERR."""
    out = tmp_path / "s.fits"
    first = exposures(field)[0]
    result = run_cutout(field, out, files=[*exposures(field), first])
    assert_refused(result, out, tmp_path, first.name, "given twice")
