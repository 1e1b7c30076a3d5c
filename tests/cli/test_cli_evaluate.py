"""`slitcli evaluate` end to end through the command line, good input and bad."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import assert_one_line_error, assert_usage_error
from typer.testing import CliRunner

from slitcli.cli import app
from slitcli.evaluation.metrics import METRIC_KEYS, point_metrics
from slitcli.io.catalog import write_catalog

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("z_pred_vs_true.png", "calibration.png", "residual_vs_snr.png", "pit.png")
REPORT = ("metrics.ecsv", *PLOTS)


def run(*args):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def make_truth(n=80, seed=0):
    """A SOURCES-like table: ids 1..n, SNR_GI from 0.5 to 30, alternating RED/BLUE."""
    rng = np.random.default_rng(seed)
    return Table(
        {
            "SOURCE_ID": np.arange(1, n + 1, dtype=np.int64),
            "Z_TRUE": rng.uniform(0.1, 2.0, n),
            "SNR_GI": np.geomspace(0.5, 30.0, n).astype(np.float32),
            "CLASS": np.where(np.arange(n) % 2 == 0, "RED", "BLUE"),
        }
    )


def make_predictions(truth, seed=1, extra_ids=(9001, 9002)):
    """Shuffled predictions of every truth source plus `extra_ids` unknown to the truth."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    z_true = np.asarray(truth["Z_TRUE"])
    zerr = 0.03 * (1 + z_true) * rng.uniform(0.5, 1.5, n)
    z = z_true + rng.normal(0.0, 1.2 * zerr)
    z[::15] += 0.5  # catastrophic outliers
    zwarn = np.zeros(n, dtype=np.int32)
    zwarn[[3, 10, n - 1]] = [2, 65536, 2]
    order = rng.permutation(n)
    pred = Table({"SOURCE_ID": np.asarray(truth["SOURCE_ID"])[order], "Z": z[order], "ZERR": zerr[order], "ZWARN": zwarn[order]})
    for k, sid in enumerate(extra_ids):
        pred.add_row((sid, 0.5 + 0.1 * k, 0.05, 0))
    pred.meta.update(MODEL="bcnn-test", TEMP=1.3)  # FITS-safe keywords
    return pred


def write_sample_truth(path, truth, decoy_table=False):
    """A sample-file-like FITS: PRIMARY + SOURCES (after a decoy table HDU if asked)."""
    hdus = [fits.PrimaryHDU()]
    if decoy_table:
        decoy = fits.table_to_hdu(Table({"WAVELENGTH": [4000.0, 5000.0], "SENSITIVITY": [1.0, 2.0]}))
        decoy.name = "GV_SENS"
        hdus.append(decoy)
    sources = fits.table_to_hdu(truth)
    sources.name = "SOURCES"
    fits.HDUList([*hdus, sources]).writeto(path)
    return path


@pytest.fixture
def inputs(tmp_path):
    truth = make_truth()
    pred = make_predictions(truth)
    return write_catalog(pred, tmp_path / "z.ecsv"), write_sample_truth(tmp_path / "sample.fits", truth), pred, truth


def expected_metrics(pred, truth, mask_of):
    """point_metrics of the matched sources selected by mask_of(truth rows in pred order)."""
    row_of = {int(s): i for i, s in enumerate(truth["SOURCE_ID"])}
    keep = np.array([int(s) in row_of for s in pred["SOURCE_ID"]])
    rows = np.array([row_of[int(s)] for s in pred["SOURCE_ID"][keep]])
    matched = truth[rows]
    sel = mask_of(matched)
    return point_metrics(np.asarray(pred["Z"])[keep][sel], np.asarray(pred["ZERR"])[keep][sel], np.asarray(matched["Z_TRUE"])[sel])


def test_round_trip(tmp_path, inputs):
    pred_path, truth_path, pred, truth = inputs
    out = tmp_path / "report"
    result = run(pred_path, "--truth", truth_path, "-o", out)
    assert result.exit_code == 0, result.output
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT)

    t = Table.read(out / "metrics.ecsv", format="ascii.ecsv")
    samples = ["all", "SNR_GI>=1", "SNR_GI>=3", "SNR_GI>=5", "SNR_GI>=10", "CLASS=BLUE", "CLASS=RED"]
    assert list(t["sample"]) == samples
    assert t.colnames == ["sample", *METRIC_KEYS, "n_zwarn"]
    selections = {
        "all": lambda m: np.ones(len(m), dtype=bool),
        **{f"SNR_GI>={c}": (lambda m, c=c: np.asarray(m["SNR_GI"]) >= c) for c in (1, 3, 5, 10)},
        "CLASS=BLUE": lambda m: np.asarray(m["CLASS"]) == "BLUE",
        "CLASS=RED": lambda m: np.asarray(m["CLASS"]) == "RED",
    }
    for row in t:
        expected = expected_metrics(pred, truth, selections[row["sample"]])
        for key in METRIC_KEYS:
            assert row[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), (row["sample"], key)
    assert t["n"][0] == 80
    assert list(t["n_zwarn"])[0] == 3  # ZWARN != 0 kept and counted, not dropped
    assert t.meta["PREDFILE"] == "z.ecsv" and t.meta["TRUTHFILE"] == "sample.fits"
    assert t.meta["MODEL"] == "bcnn-test" and t.meta["TEMP"] == 1.3
    assert (t.meta["N_PRED"], t.meta["N_TRUTH"], t.meta["N_MATCHED"]) == (82, 80, 80)

    assert "NMAD" in result.output and "CLASS=RED" in result.output
    assert "matched 80 of 82 predictions" in result.output
    assert "2 predictions have no SOURCE_ID in sample.fits" in result.output
    assert "3 sources have ZWARN != 0" in result.output


def test_truth_sources_hdu_found_after_other_tables(tmp_path, inputs):
    pred_path, _, _, truth = inputs
    truth_path = write_sample_truth(tmp_path / "sample2.fits", truth, decoy_table=True)
    result = run(pred_path, "--truth", truth_path, "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert Table.read(tmp_path / "r" / "metrics.ecsv")["n"][0] == 80


def test_truth_catalogue_and_snr_from_predictions(tmp_path):
    truth = make_truth(n=40)
    pred = make_predictions(truth, extra_ids=())
    pred["SNR_GI"] = np.asarray(truth["SNR_GI"])[np.asarray(pred["SOURCE_ID"]) - 1]
    write_catalog(truth["SOURCE_ID", "Z_TRUE"], tmp_path / "truth.ecsv")
    write_catalog(pred, tmp_path / "z.fits")
    result = run(tmp_path / "z.fits", "--truth", tmp_path / "truth.ecsv", "-o", tmp_path / "r", "--snr-cuts", "4,2")
    assert result.exit_code == 0, result.output
    t = Table.read(tmp_path / "r" / "metrics.ecsv")
    assert list(t["sample"]) == ["all", "SNR_GI>=2", "SNR_GI>=4"]
    assert t["n"][1] == int(np.sum(truth["SNR_GI"] >= 2))
    assert (tmp_path / "r" / "residual_vs_snr.png").read_bytes()[:8] == PNG_MAGIC


def test_no_snr_anywhere_skips_snr_samples_and_plot(tmp_path):
    truth = make_truth(n=30)
    write_catalog(truth["SOURCE_ID", "Z_TRUE"], tmp_path / "truth.ecsv")
    write_catalog(make_predictions(truth, extra_ids=()), tmp_path / "z.ecsv")
    result = run(tmp_path / "z.ecsv", "--truth", tmp_path / "truth.ecsv", "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert list(Table.read(tmp_path / "r" / "metrics.ecsv")["sample"]) == ["all"]
    assert not (tmp_path / "r" / "residual_vs_snr.png").exists()
    assert "no residual_vs_snr.png" in result.output


def test_empty_sample_gives_nan_not_error(tmp_path, inputs):
    pred_path, truth_path, _, _ = inputs
    result = run(pred_path, "--truth", truth_path, "-o", tmp_path / "r", "--snr-cuts", "1000")
    assert result.exit_code == 0, result.output
    t = Table.read(tmp_path / "r" / "metrics.ecsv")
    row = t[list(t["sample"]).index("SNR_GI>=1000")]
    assert row["n"] == 0 and np.isnan(row["sigma_nmad"]) and np.isnan(row["coverage_68"])


def test_existing_report_is_untouched_without_overwrite(tmp_path, inputs):
    pred_path, truth_path, _, _ = inputs
    out = tmp_path / "report"
    assert run(pred_path, "--truth", truth_path, "-o", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert_one_line_error(run(pred_path, "--truth", truth_path, "-o", out), str(out / "metrics.ecsv"), "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    result = run(pred_path, "--truth", truth_path, "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT)


def test_one_existing_file_blocks_the_whole_report(tmp_path, inputs):
    pred_path, truth_path, _, _ = inputs
    out = tmp_path / "report"
    out.mkdir()
    (out / "pit.png").write_bytes(b"precious")
    assert_one_line_error(run(pred_path, "--truth", truth_path, "-o", out), "pit.png", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["pit.png"]
    assert (out / "pit.png").read_bytes() == b"precious"


def test_help_teaches():
    result = runner.invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    for text in ("--truth", "--output", "--snr-cuts", "--overwrite", "Examples", "SOURCES", "metrics.ecsv"):
        assert text in result.output
    assert "evaluate" in runner.invoke(app, ["--help"]).output


# ---- bad input: one line, exit 1, nothing written ---------------------------------------


def _write(tmp_path, pred=None, truth_columns=None, truth_name="sample.fits"):
    truth_table = make_truth(n=20)
    pred_table = make_predictions(truth_table, extra_ids=()) if pred is None else pred(truth_table)
    if truth_columns:
        truth_table = truth_table[truth_columns]
    truth_path = tmp_path / truth_name
    if truth_name.endswith(".fits"):
        write_sample_truth(truth_path, truth_table)
    else:
        write_catalog(truth_table, truth_path)
    return write_catalog(pred_table, tmp_path / "z.ecsv"), truth_path


def _with_nan_z(t):
    p = make_predictions(t, extra_ids=())
    p["Z"][4] = np.nan
    return p


def _shifted_ids(t):
    p = make_predictions(t, extra_ids=())
    p["SOURCE_ID"] += 1000
    return p


def _repeated_id(t):
    p = make_predictions(t, extra_ids=())
    p["SOURCE_ID"][1] = p["SOURCE_ID"][0]
    return p


BAD_INPUTS = {
    "missing predictions": (lambda p: (p / "nope.ecsv", _write(p)[1]), ["nope.ecsv", "not found"]),
    "missing truth": (lambda p: (_write(p)[0], p / "nope.fits"), ["nope.fits", "not found"]),
    "predictions lack ZERR": (lambda p: _write(p, pred=lambda t: make_predictions(t)["SOURCE_ID", "Z"]), ["z.ecsv", "missing column(s) ZERR"]),
    "truth lacks Z_TRUE": (lambda p: _write(p, truth_columns=["SOURCE_ID", "SNR_GI"], truth_name="t.ecsv"), ["t.ecsv", "missing column(s) Z_TRUE"]),
    "no common SOURCE_ID": (lambda p: _write(p, pred=_shifted_ids), ["z.ecsv", "sample.fits", "no SOURCE_ID in common"]),
    "repeated SOURCE_ID": (lambda p: _write(p, pred=_repeated_id), ["z.ecsv", "repeat SOURCE_ID"]),
    "empty predictions": (lambda p: _write(p, pred=lambda t: make_predictions(t, extra_ids=())[:0]), ["z.ecsv", "no rows"]),
    "NaN in Z": (lambda p: _write(p, pred=_with_nan_z), ["z.ecsv", "column Z has NaN"]),
    "text file named fits": (lambda p: (_write(p)[0], _text_fits(p)), ["bad.fits", "cannot read"]),
}


def _text_fits(tmp_path):
    path = tmp_path / "bad.fits"
    path.write_text("SOURCE_ID,Z_TRUE\n1,0.5\n")
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_files(tmp_path, case):
    make, needles = BAD_INPUTS[case]
    pred_path, truth_path = make(tmp_path)
    out = tmp_path / "report"
    assert_one_line_error(run(pred_path, "--truth", truth_path, "-o", out), *needles)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("cuts", ["1,x", "", "nan"])
def test_bad_snr_cuts(tmp_path, cuts):
    pred_path, truth_path = _write(tmp_path)
    assert_usage_error(run(pred_path, "--truth", truth_path, "-o", tmp_path / "r", "--snr-cuts", cuts), "--snr-cuts")
    assert not (tmp_path / "r").exists()


def test_output_is_a_file(tmp_path):
    pred_path, truth_path = _write(tmp_path)
    out = tmp_path / "report"
    out.write_text("precious")
    assert_one_line_error(run(pred_path, "--truth", truth_path, "-o", out), "report", "not a directory")
    assert out.read_text() == "precious"
