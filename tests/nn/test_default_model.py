"""The model shipped in models/ loads without pickle and predicts on the default simulator's cutouts."""

import numpy as np
from astropy.table import Table
from typer.testing import CliRunner

from slitcli.cli import app
from slitcli.nn.modelfile import default_model_dir, load_model


def test_shipped_model_card_and_weights():
    bundle = load_model()
    assert bundle.path == default_model_dir()
    assert bundle.bands == ("GV", "GI") and bundle.shape == (40, 480)
    assert bundle.temperature > 0 and bundle.card["calibration"]["fitted_on"]
    assert bundle.card["training"]["finished"]
    assert (default_model_dir() / "model.safetensors").stat().st_size < 8 * 2**20


def test_main_job_simulate_predict_evaluate(tmp_path):
    runner = CliRunner()
    sample, z, report = tmp_path / "s.fits", tmp_path / "z.ecsv", tmp_path / "report"
    assert runner.invoke(app, ["simulate", "-n", "24", "--seed", "9", "-q", "-o", str(sample)]).exit_code == 0
    result = runner.invoke(app, ["predict", str(sample), "-o", str(z), "--n-mc", "20", "-q"])
    assert result.exit_code == 0, result.output
    table = Table.read(z)
    assert len(table) == 24 and np.all(np.isfinite(table["Z"])) and np.all(table["ZERR"] > 0)
    result = runner.invoke(app, ["evaluate", str(z), "--truth", str(sample), "-o", str(report)])
    assert result.exit_code == 0, result.output
    assert (report / "metrics.ecsv").exists()
