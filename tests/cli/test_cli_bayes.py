"""train -> predict -> calibrate -> evaluate through the command line, and bad inputs."""

import shutil

import fitsio
import numpy as np
import pytest
from astropy.table import Table
from conftest import TINY_SIM_YAML, assert_usage_error, invoke, tiny_train_yaml

SIM = TINY_SIM_YAML
TRAIN = tiny_train_yaml()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bayes")
    (d / "sim.yaml").write_text(SIM)
    (d / "train.yaml").write_text(TRAIN)
    for name, n, seed in (("train", 48, 1), ("val", 24, 2), ("test", 16, 3)):
        assert invoke("simulate", "-n", n, "--seed", seed, "--config", d / "sim.yaml", "-q", "-o", d / f"{name}.fits").exit_code == 0
    result = invoke("train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "-o", d / "model", "-q")
    assert result.exit_code == 0, result.output
    return d


def test_round_trip(workdir):
    d = workdir
    assert (d / "model" / "model.safetensors").exists()
    result = invoke("calibrate", d / "val.fits", "-m", d / "model", "-o", d / "model_cal", "--n-mc", 10, "--gaussian")
    assert result.exit_code == 0, result.output
    assert "calibration error" in result.output
    result = invoke("predict", d / "test.fits", "-m", d / "model_cal", "-o", d / "z.ecsv", "--n-mc", 10, "-q")
    assert result.exit_code == 0, result.output
    z = Table.read(d / "z.ecsv")
    assert len(z) == 16
    for col in ("SOURCE_ID", "RA", "DEC", "Z", "ZERR", "ZERR_EPI", "ZERR_ALE", "Z025", "Z160", "Z500", "Z840", "Z975", "SNR_GI", "ZWARN"):
        assert col in z.colnames
    np.testing.assert_allclose(z["ZERR"] ** 2, z["ZERR_EPI"] ** 2 + z["ZERR_ALE"] ** 2, rtol=1e-6)
    assert np.all(z["Z025"] < z["Z500"]) and np.all(z["Z500"] < z["Z975"])
    import json

    card = json.loads((d / "model_cal" / "model.json").read_text())
    assert z.meta["N_MC"] == 10 and z.meta["MODEL"] == card["name"]
    assert z.meta["TEMPERAT"] == card["calibration"]["temperature"] != 1.0
    # Same seed, same numbers.
    assert invoke("predict", d / "test.fits", "-m", d / "model_cal", "-o", d / "z2.fits", "--n-mc", 10, "-q").exit_code == 0
    z2 = Table.read(d / "z2.fits")
    np.testing.assert_array_equal(z["Z"], z2["Z"])
    result = invoke("evaluate", d / "z.ecsv", "--truth", d / "test.fits", "-o", d / "report")
    assert result.exit_code == 0, result.output
    assert (d / "report" / "metrics.ecsv").exists()


def test_wrong_band_layout_is_refused(workdir, tmp_path):
    d = workdir
    gv_only = tmp_path / "gv.fits"
    assert invoke("simulate", "-n", 2, "--bands", "GV", "--config", d / "sim.yaml", "-q", "-o", gv_only).exit_code == 0
    result = invoke("predict", gv_only, "-m", d / "model", "-o", tmp_path / "z.ecsv")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "missing HDU(s) GI_SCI" in result.output and "the model needs bands GV,GI" in result.output
    assert not (tmp_path / "z.ecsv").exists()
    wide = tmp_path / "wide.fits"
    assert invoke("simulate", "-n", 2, "-q", "-o", wide).exit_code == 0
    result = invoke("predict", wide, "-m", d / "model", "-o", tmp_path / "z.ecsv")
    assert result.exit_code == 1 and "cutouts are 40 x 480 pixels; the model needs 16 x 96" in result.output


def test_nan_cutouts_are_bad_pixels(workdir, tmp_path):
    # NaN SCI pixels are flagged DO_NOT_USE and set to 0, not a reason to refuse the file
    # (docs/formats.md, bad pixels; more cases in test_cli_inputs.py).
    bad = tmp_path / "nan.fits"
    shutil.copy(workdir / "test.fits", bad)
    with fitsio.FITS(str(bad), "rw") as f:
        f["GI_SCI"].write(np.full((1, 16, 96), np.nan, np.float32), start=[3, 0, 0])
    result = invoke("predict", bad, "-m", workdir / "model", "-o", tmp_path / "z.ecsv", "--n-mc", 4)
    assert result.exit_code == 0, result.output
    assert f"{16 * 96} bad pixels" in result.output
    z = Table.read(tmp_path / "z.ecsv")
    assert z.meta["NBADPIX"] == 16 * 96 and np.all(np.isfinite(z["Z"]))
    assert z["SNR_GI"][3] == 0 and z["ZWARN"][3] & 2048  # POORDATA: no usable GI pixel


def test_calibration_lowers_the_error_of_a_mis_scaled_model(workdir, tmp_path):
    import json

    mis = tmp_path / "mis"
    shutil.copytree(workdir / "model", mis)
    card = json.loads((mis / "model.json").read_text())
    card["calibration"]["temperature"] = 25.0  # deliberately far too wide
    (mis / "model.json").write_text(json.dumps(card))
    from slitcli.evaluation.metrics import calibration_error
    from slitcli.nn.calibration import calibrate_model
    from slitcli.nn.modelfile import load_model
    from slitcli.nn.predict import PredictConfig, predict_file

    bundle = load_model(mis)
    pred = predict_file(bundle, workdir / "val.fits", PredictConfig(n_mc=10))
    truth = Table.read(workdir / "val.fits", hdu="SOURCES")
    before = calibration_error(np.asarray(pred["Z"]), np.asarray(pred["ZERR"]), np.asarray(truth["Z_TRUE"]))
    result = calibrate_model(bundle, workdir / "val.fits", PredictConfig(n_mc=10), min_snr=0.0, tails=False)
    assert result.error_after < before
    assert bundle.card["calibration"]["temperature"] == result.temperature


def test_n_mc_below_two_is_refused(workdir, tmp_path):
    result = invoke("predict", workdir / "test.fits", "-m", workdir / "model", "-o", tmp_path / "z.ecsv", "--n-mc", 1)
    assert_usage_error(result, "--n-mc")


def test_resume_via_cli_needs_no_overwrite(workdir):
    d = workdir
    result = invoke("train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "-o", d / "model", "-q")
    assert result.exit_code == 1 and "--overwrite" in result.output
