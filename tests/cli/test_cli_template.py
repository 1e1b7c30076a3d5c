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
