"""`slitcli predict --method template` through the command line."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import assert_one_line_error, invoke


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory):
    d = tmp_path_factory.mktemp("template")
    assert invoke("simulate", "-n", 6, "--seed", 11, "--noiseless", "-q", "-o", d / "s.fits").exit_code == 0
    return d


def test_noiseless_sample_round_trip(noiseless):
    d = noiseless
    result = invoke("predict", d / "s.fits", "--method", "template", "-o", d / "z.ecsv", "-q")
    assert result.exit_code == 0, result.output
    z = Table.read(d / "z.ecsv")
    truth = Table.read(d / "s.fits", hdu="SOURCES")
    assert list(z["SOURCE_ID"]) == list(truth["SOURCE_ID"])
    for col in ("Z", "ZERR", "ZERR_EPI", "ZERR_ALE", "Z025", "Z160", "Z500", "Z840", "Z975", "SNR_GI", "ZWARN", "CHI2", "DELTACHI2", "NPIXELS"):
        assert col in z.colnames
    assert z.meta["METHOD"] == "template" and "Sbc_B2004a" in z.meta["TEMPLATE"]
    assert np.all(z["Z025"] <= z["Z160"]) and np.all(z["Z160"] <= z["Z840"]) and np.all(z["Z840"] <= z["Z975"])
    # The simulator's SEDs are not in the basis, so a noiseless fit is not exact; still close.
    dz = np.abs(z["Z"] - truth["Z_TRUE"]) / (1 + truth["Z_TRUE"])
    assert np.median(dz) < 0.003, dz


def test_a_file_without_direct_stamps_is_refused(noiseless, tmp_path):
    with fits.open(noiseless / "s.fits") as hdul:
        fits.HDUList([h for h in hdul if h.name != "DIRECT"]).writeto(tmp_path / "nodirect.fits")
    result = invoke("predict", tmp_path / "nodirect.fits", "--method", "template", "-o", tmp_path / "z.ecsv")
    assert_one_line_error(result, "nodirect.fits", "no DIRECT HDU")
    assert not (tmp_path / "z.ecsv").exists()


def test_unknown_method_is_refused(noiseless, tmp_path):
    result = invoke("predict", noiseless / "s.fits", "--method", "redrock", "-o", tmp_path / "z.ecsv")
    assert result.exit_code == 2 and "redrock" in result.output


def test_calibrate_template_writes_its_prior_offset_temperature_and_floor(tmp_path, monkeypatch):
    """calibrate --template on a held-out sample: the card gains the n(z) prior, the
    templates' offset, T and the floor; predict --method template -m MODEL applies them
    (catalogue keys) and its PDF is the posterior under the prior (the quantiles follow Z)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sample, model = tmp_path / "val.fits", tmp_path / "model"
    assert invoke("simulate", "-n", 160, "--seed", 5, "--mag-max", 21.5, "-o", sample, "-q").exit_code == 0
    result = invoke("calibrate", sample, "--template", "-o", model)
    assert result.exit_code == 0, result.output
    assert "n(z) prior" in result.output and "template offset" in result.output
    from slitcli.nn.modelfile import load_model

    cal = load_model(model).card["calibration"]
    assert cal["template_nz_alpha"] > 0 and 0.1 < cal["template_nz_z0"] < 2.0
    assert abs(cal["template_offset"]) < 0.005 and cal["template_snr_edges"] == [0.0, 3.0, 5.0, 10.0]
    assert all(t > 0 for t in cal["template_temperature"]) and all(f >= 0 for f in cal["template_error_floor"]) and len(cal["template_temperature"]) == 4
    assert invoke("predict", sample, "-m", model, "--method", "template", "-o", tmp_path / "z.fits", "-q").exit_code == 0
    z = Table.read(tmp_path / "z.fits", hdu="REDSHIFTS")
    assert [z.meta[k] for k in ("TMPLNZA", "TMPLNZ0", "TMPLOFFS")] == pytest.approx([cal["template_nz_alpha"], cal["template_nz_z0"], cal["template_offset"]], rel=1e-12)
    assert np.all(z["Z025"] <= z["Z500"]) and np.all(z["Z500"] <= z["Z975"]) and np.all((z["ODDS"] >= 0) & (z["ODDS"] <= 1))
