"""Hostile inputs through the command line: augment's input, model cards, masked truths,
bad pixels, and paths that look like rich markup or emoji codes."""

import json
import os
import shutil

import fitsio
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from conftest import TINY_SIM_YAML, assert_one_line_error, invoke, tiny_train_yaml

SIM = TINY_SIM_YAML
TRAIN = tiny_train_yaml(batch_size=4)
N = 12


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A small sample (N sources, 16 x 96 cutouts), an untrained tiny model that fits it, and its predictions."""
    from slitcli.nn import create_model
    from slitcli.nn.modelfile import ModelBundle, save_model

    d = tmp_path_factory.mktemp("inputs")
    (d / "sim.yaml").write_text(SIM)
    (d / "train.yaml").write_text(TRAIN)
    result = invoke("simulate", "-n", N, "--seed", 7, "--config", d / "sim.yaml", "-q", "-o", d / "s.fits")
    assert result.exit_code == 0, result.output
    torch.manual_seed(0)
    config = {"height": 16, "width": 96, "rows": 8, "channels": [8, 8], "kernels": [3, 3], "head_hidden": [16]}
    card = {
        "name": "tiny",
        "architecture": "slitnet",
        "config": config,
        "input": {"bands": ["GV", "GI"], "height": 16, "width": 96, "scale_e_s": {"GV": 0.03, "GI": 0.03}},
        "calibration": {"temperature": 1.0},
    }
    save_model(ModelBundle(create_model("slitnet", **config).eval(), card), d / "model")
    result = invoke("predict", d / "s.fits", "-m", d / "model", "--n-mc", 4, "-q", "-o", d / "z.ecsv")
    assert result.exit_code == 0, result.output
    return d


def copy_with_sources(src, dst, edit):
    """`src` copied to `dst` with its SOURCES table changed by `edit(data)` (checksums kept valid)."""
    shutil.copy(src, dst)
    with fits.open(dst, mode="update", checksum=True) as hdul:
        edit(hdul["SOURCES"].data)
    return dst


# ------------------------------------------------------------------ augment's input


def _drop_hdu(src, dst, name):
    with fits.open(src) as hdul:
        fits.HDUList([h for h in hdul if h.name != name]).writeto(dst)
    return dst


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


def _bare(path):
    fits.HDUList([fits.PrimaryHDU()]).writeto(path)
    return path


AUGMENT_INPUTS = {
    "missing": (lambda d, w: d / "nope.fits", ["nope.fits: file not found"]),
    "a directory": (lambda d, w: d, ["is a directory, not a sample file"]),
    "empty": (lambda d, w: _file(d / "empty.fits", b""), ["empty.fits: cannot read as FITS"]),
    "text named .fits": (lambda d, w: _file(d / "notes.fits", b"SOURCE_ID Z\n1 0.5\n"), ["notes.fits: cannot read as FITS"]),
    "truncated": (lambda d, w: _file(d / "cut.fits", (w / "s.fits").read_bytes()[:20000]), ["cut.fits: truncated: HDU"]),
    "'[' in the name": (lambda d, w: _file(d / "s[1].fits", (w / "s.fits").read_bytes()), ["s[1].fits: cfitsio reads '[' in a file name as its extended syntax"]),
    "no BANDS keyword": (lambda d, w: _bare(d / "bare.fits"), ["bare.fits: HDU PRIMARY has no BANDS keyword"]),
    "a band's HDU missing": (lambda d, w: _drop_hdu(w / "s.fits", d / "nogi.fits", "GI_ERR"), ["nogi.fits: missing HDU(s) GI_ERR", "bands GV,GI"]),
}


@pytest.mark.parametrize("case", list(AUGMENT_INPUTS))
def test_augment_refuses_a_bad_input_in_one_line(work, tmp_path, case):
    make, needles = AUGMENT_INPUTS[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = make(inputs, work)
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("augment", path, "-o", out / "aug.fits", "--copies", 2)
    assert_one_line_error(result, *needles)
    assert listing(out) == []  # no output, no temporary file


def test_augment_of_a_good_sample_still_works(work, tmp_path):
    result = invoke("augment", work / "s.fits", "-o", tmp_path / "aug.fits", "--copies", 2, "-q")
    assert result.exit_code == 0, result.output
    with fitsio.FITS(str(tmp_path / "aug.fits")) as f:
        assert f["GI_SCI"].get_dims() == [2 * N, 16, 96]


# ------------------------------------------------------------------ the model card


def test_predict_with_a_broken_card_is_one_line_naming_the_card(work, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(work / "model", model)
    card = json.loads((model / "model.json").read_text())
    card["input"]["bands"] = 3
    (model / "model.json").write_text(json.dumps(card))
    result = invoke("predict", work / "s.fits", "-m", model, "-o", tmp_path / "z.ecsv")
    assert_one_line_error(result, f"{model / 'model.json'}: input.bands: expected a list of band names, got 3")
    del card["config"]
    card["input"]["bands"] = ["GV", "GI"]
    (model / "model.json").write_text(json.dumps(card))
    result = invoke("calibrate", work / "s.fits", "-m", model, "-o", tmp_path / "cal")
    assert_one_line_error(result, f"{model / 'model.json'}: missing key config")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ------------------------------------------------------------------ masked or NaN truth


@pytest.fixture(scope="module")
def nan_truth(work):
    def edit(data):
        data["Z_TRUE"][[2, 5, 9]] = np.nan

    return copy_with_sources(work / "s.fits", work / "nan_truth.fits", edit)


def test_train_refuses_nan_z_true(work, nan_truth, tmp_path):
    for train, val in ((nan_truth, work / "s.fits"), (work / "s.fits", nan_truth)):
        result = invoke("train", train, "--val", val, "--config", work / "train.yaml", "-o", tmp_path / "m")
        assert_one_line_error(result, f"{nan_truth}: HDU SOURCES: column Z_TRUE has NaN, infinite or masked values in 3 of {N} rows (SOURCE_ID 3, 6, 10)")
        assert not (tmp_path / "m").exists()


def test_train_refuses_nan_snr_when_it_cuts_on_it(work, tmp_path):
    def edit(data):
        data["SNR_GI"][0] = np.nan

    bad = copy_with_sources(work / "s.fits", tmp_path / "nan_snr.fits", edit)
    (tmp_path / "cut.yaml").write_text(TRAIN.replace("min_snr: 0.0", "min_snr: 0.5"))
    result = invoke("train", bad, "--val", work / "s.fits", "--config", tmp_path / "cut.yaml", "-o", tmp_path / "m")
    assert_one_line_error(result, f"{bad}: HDU SOURCES: column SNR_GI has NaN, infinite or masked values in 1 of {N} rows (SOURCE_ID 1)")


def test_calibrate_refuses_nan_z_true(work, nan_truth, tmp_path):
    result = invoke("calibrate", nan_truth, "-m", work / "model", "-o", tmp_path / "cal", "--n-mc", 2)
    assert_one_line_error(result, f"{nan_truth}: HDU SOURCES: column Z_TRUE has NaN, infinite or masked values in 3 of {N} rows")
    assert not (tmp_path / "cal").exists()


def test_evaluate_refuses_nan_z_true_and_nan_snr(work, nan_truth, tmp_path):
    result = invoke("evaluate", work / "z.ecsv", "--truth", nan_truth, "-o", tmp_path / "report")
    assert_one_line_error(result, f"{nan_truth}: HDU SOURCES: column Z_TRUE has NaN, infinite or masked values in 3 of {N} rows")
    assert not (tmp_path / "report").exists()

    def edit(data):
        data["SNR_GI"][[0, 1]] = np.inf

    bad = copy_with_sources(work / "s.fits", tmp_path / "inf_snr.fits", edit)
    result = invoke("evaluate", work / "z.ecsv", "--truth", bad, "-o", tmp_path / "report")
    assert_one_line_error(result, f"{bad}: HDU SOURCES: column SNR_GI has NaN, infinite or masked values in 2 of {N} rows (SOURCE_ID 1, 2)")
    assert not (tmp_path / "report").exists()


def test_evaluate_refuses_a_masked_ecsv_truth(work, tmp_path):
    truth = Table.read(work / "s.fits", hdu="SOURCES")["SOURCE_ID", "Z_TRUE"]
    truth["Z_TRUE"] = MaskedColumn(truth["Z_TRUE"], mask=np.arange(N) == 4)
    truth.write(tmp_path / "truth.ecsv")
    result = invoke("evaluate", work / "z.ecsv", "--truth", tmp_path / "truth.ecsv", "-o", tmp_path / "report")
    assert_one_line_error(result, f"{tmp_path / 'truth.ecsv'}: column Z_TRUE has NaN, infinite or masked values in 1 of {N} rows (SOURCE_ID 5)")
    assert not (tmp_path / "report").exists()


# ------------------------------------------------------------------ bad pixels


def test_mask_bad_pixels_flags_neutralises_and_counts():
    from slitcli.io.samplefile import mask_bad_pixels

    rng = np.random.default_rng(1)
    sci = rng.normal(size=(2, 2, 4, 5)).astype(np.float32)
    err = rng.uniform(1.0, 2.0, size=sci.shape).astype(np.float32)
    dq = np.zeros(sci.shape, np.int32)
    dq[0, 0, 0, 0] = 2  # SATURATED, kept
    sci[0, 0, 0, 0] = np.nan
    err[0, 1, 2, 3] = 0.0
    err[1, 0, 1, 1] = -np.inf
    err[1, 1] = np.nan  # a whole band without a usable ERR
    before_sci, before_err = sci.copy(), err.copy()
    assert mask_bad_pixels(sci, err, dq) == 1 + 1 + 1 + 20
    bad = np.zeros(sci.shape, bool)
    bad[0, 0, 0, 0] = bad[0, 1, 2, 3] = bad[1, 0, 1, 1] = True
    bad[1, 1] = True
    assert np.all(sci[bad] == 0) and np.all(np.isfinite(err)) and np.all(np.isfinite(sci))
    assert np.all(dq[bad] & 1) and dq[0, 0, 0, 0] == 3 and not np.any(dq[~bad])
    np.testing.assert_array_equal(sci[~bad], before_sci[~bad])
    np.testing.assert_array_equal(err[~bad], before_err[~bad])
    # The median ERR of the good pixels of the same cutout and band; 0 where there is none.
    assert err[0, 1, 2, 3] == np.median(np.delete(before_err[0, 1].ravel(), 2 * 5 + 3))
    assert err[1, 0, 1, 1] == np.median(np.delete(before_err[1, 0].ravel(), 1 * 5 + 1))
    assert np.all(err[1, 1] == 0)


@pytest.fixture(scope="module")
def bad_pixels(work):
    """The sample with 10 ERR = 0, one ERR = NaN and one SCI = NaN pixel, and source 3's GI ERR all -1."""
    bad = work / "bad_pixels.fits"
    shutil.copy(work / "s.fits", bad)
    with fitsio.FITS(str(bad), "rw") as f:
        gi_err, gv_err, gv_sci = f["GI_ERR"].read(), f["GV_ERR"].read(), f["GV_SCI"].read()
        gi_err[0, 8, 40:50] = 0.0
        gv_err[1, 3, 3] = np.nan
        gv_sci[2, 8, 60] = np.nan
        gi_err[3] = -1.0
        f["GI_ERR"].write(gi_err)
        f["GV_ERR"].write(gv_err)
        f["GV_SCI"].write(gv_sci)
    return bad, 10 + 1 + 1 + 16 * 96


def test_predict_treats_bad_pixels_as_dq_and_counts_them(work, bad_pixels, tmp_path):
    bad, n_bad = bad_pixels
    result = invoke("predict", bad, "-m", work / "model", "--n-mc", 4, "-o", tmp_path / "z.fits")
    assert result.exit_code == 0, result.output
    assert f"{n_bad} bad pixels (SCI NaN or infinite, or ERR <= 0, NaN or infinite): flagged DO_NOT_USE, SCI set to 0" in result.output
    z, clean = Table.read(tmp_path / "z.fits"), Table.read(work / "z.ecsv")
    assert z.meta["NBADPIX"] == n_bad and clean.meta["NBADPIX"] == 0
    for col in ("Z", "ZERR", "Z025", "Z975", "SNR_GI"):
        assert np.all(np.isfinite(z[col])), col
    # Sources without a bad pixel are predicted exactly as from the clean file.
    np.testing.assert_array_equal(z["Z"][4:], clean["Z"][4:])
    np.testing.assert_array_equal(z["SNR_GI"][4:], clean["SNR_GI"][4:])
    # Source 3 lost its whole GI band: no SNR_GI, POORDATA.
    assert z["SNR_GI"][3] == 0 and z["ZWARN"][3] & 2048


def test_template_route_treats_bad_pixels_the_same_way(work, bad_pixels, tmp_path):
    bad, n_bad = bad_pixels
    result = invoke("predict", bad, "--method", "template", "-o", tmp_path / "z.ecsv")
    assert result.exit_code == 0, result.output
    assert f"{n_bad} bad pixels" in result.output
    z = Table.read(tmp_path / "z.ecsv")
    assert z.meta["NBADPIX"] == n_bad and np.all(np.isfinite(z["Z"])) and np.all(np.isfinite(z["ZERR"]))
    assert z["SNR_GI"][3] == 0 and z["ZWARN"][3] & 2048


def test_train_reads_bad_pixels_as_zeros_and_reports_them(work, bad_pixels, tmp_path):
    from slitcli.nn.train import load_train_data

    bad, n_bad = bad_pixels
    data = load_train_data(bad, ("GV", "GI"), 0.0, keep_err=True)
    clean = load_train_data(work / "s.fits", ("GV", "GI"), 0.0, keep_err=True)
    assert data.bad_pixels == n_bad and clean.bad_pixels == 0
    assert np.all(np.isfinite(data.sci)) and np.all(np.isfinite(data.err))
    no_gi = np.zeros(data.err.shape, bool)
    no_gi[3, 1] = True  # no usable ERR in that cutout band: ERR 0 there, flagged
    assert np.all(data.err[~no_gi] > 0) and np.all(data.err[no_gi] == 0)
    assert data.sci[2, 0, 8, 60] == 0 and np.all(data.sci[3, 1] == 0)
    np.testing.assert_array_equal(data.sci[4:], clean.sci[4:])
    result = invoke("train", bad, "--val", work / "s.fits", "--config", work / "train.yaml", "-o", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert f"{n_bad} bad pixels" in result.output
    assert (tmp_path / "m" / "model.safetensors").exists()


# ------------------------------------------------------------------ markup and emoji codes


@pytest.fixture(params=["log file", "terminal"])
def stderr_kind(request, monkeypatch):
    """Run each test with plain log lines and with rich's handler (as on a terminal)."""
    from slitcli.cli import _common

    monkeypatch.setattr(_common, "_is_terminal", lambda: request.param == "terminal")
    return request.param


def test_error_message_prints_a_markup_like_path_as_written(tmp_path, stderr_kind):
    name = str(tmp_path / "a:smile:[bold]b[/bold].fits")
    result = invoke("predict", name, "-o", tmp_path / "z.ecsv")
    assert_one_line_error(result)
    assert result.output.strip() == f"slitcli: error: {name}: file not found"
    assert not os.path.exists(tmp_path / "z.ecsv")


def test_info_message_prints_a_markup_like_path_as_written(work, tmp_path, stderr_kind):
    directory = tmp_path / ":train:"  # no '[': cfitsio would read it as its extended file name syntax
    directory.mkdir()
    out = directory / "s:smile:.fits"
    result = invoke("simulate", "-n", 1, "--config", work / "sim.yaml", "-o", out)
    assert result.exit_code == 0, result.output
    if stderr_kind == "log file":
        assert f"wrote 1 sources to {out} (bands GV, GI)" in result.output.splitlines(), result.output
    else:  # rich's handler wraps long lines at the console width; the characters stay as written
        assert str(out) in "".join(line.strip() for line in result.output.splitlines()), result.output
    assert "\N{STEAM LOCOMOTIVE}" not in result.output and "\N{SMILING FACE WITH SMILING EYES}" not in result.output
