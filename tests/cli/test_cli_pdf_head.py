"""A network with a p(z) head through the command line: train, calibrate, predict --pdf, evaluate."""

import json

import numpy as np
import pytest
from astropy.table import Table
from conftest import TINY_SIM_YAML, invoke, tiny_train_yaml

from slitcli.io.zpdf import pdf_quantiles, read_zpdf


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pdfhead")
    (d / "sim.yaml").write_text(TINY_SIM_YAML)
    (d / "train.yaml").write_text(tiny_train_yaml() + "  head: pdf\n  pdf_bins: 200\n")
    for name, n, seed in (("train", 48, 1), ("val", 420, 2), ("test", 16, 3)):
        assert invoke("simulate", "-n", n, "--seed", seed, "--config", d / "sim.yaml", "-q", "-o", d / f"{name}.fits").exit_code == 0
    result = invoke("train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "-o", d / "model", "-q")
    assert result.exit_code == 0, result.output
    result = invoke("calibrate", d / "val.fits", "-m", d / "model", "-o", d / "model_cal", "--n-mc", 10)
    assert result.exit_code == 0, result.output
    assert "p(z) head: logit temperature" in result.output and "PIT KS distance" in result.output
    return d


def test_card_says_how_the_pdf_is_read(workdir):
    card = json.loads((workdir / "model_cal" / "model.json").read_text())
    assert card["config"]["head"] == "pdf" and card["config"]["pdf_bins"] == 200
    assert card["input"]["target"].startswith("t = ln(1 + z); p(t)")
    cal = card["calibration"]
    assert cal["pdf_point"] in ("median", "mode") and cal["temperature"] > 0 and cal["n"] == 420
    assert cal["pdf_point_score"][cal["pdf_point"]] == min(cal["pdf_point_score"].values())
    # The PIT map, fitted on the same sample, brings its PIT closer to uniform.
    assert set(cal["pit_map"]) == {"snr_edges", "levels", "knots"}
    assert cal["pit_ks_after"] < cal["pit_ks_temperature"]


def test_catalogue_columns_come_from_the_written_pdf(workdir):
    d = workdir
    result = invoke("predict", d / "test.fits", "-m", d / "model_cal", "-o", d / "z.fits", "--n-mc", 10, "--pdf", "-q")
    assert result.exit_code == 0, result.output
    z = Table.read(d / "z.fits", hdu="REDSHIFTS")
    assert z.meta["NETHEAD"] == "pdf"
    grid, pdf = read_zpdf(d / "z.fits")
    np.testing.assert_allclose(np.trapezoid(pdf, grid, axis=1), 1.0, atol=2e-3)
    # The quantile columns are the written PDF's, within a step of its grid.
    q = pdf_quantiles(grid, pdf, [0.025, 0.16, 0.5, 0.84, 0.975])
    step = np.max(np.diff(grid))
    for i, col in enumerate(("Z025", "Z160", "Z500", "Z840", "Z975")):
        np.testing.assert_allclose(z[col], q[:, i], atol=step)
    assert np.all(z["ZERR"] > 0) and np.all((z["ODDS"] >= 0) & (z["ODDS"] <= 1))
    # Same seed, same bytes of the PDF.
    assert invoke("predict", d / "test.fits", "-m", d / "model_cal", "-o", d / "z2.fits", "--n-mc", 10, "--pdf", "-q").exit_code == 0
    np.testing.assert_array_equal(read_zpdf(d / "z2.fits")[1], pdf)
    result = invoke("evaluate", d / "z.fits", "--truth", d / "test.fits", "-o", d / "report")
    assert result.exit_code == 0, result.output
    metrics = Table.read(d / "report" / "metrics.ecsv")
    assert "crps_mean" in metrics.colnames and np.isfinite(metrics["crps_mean"][0])
