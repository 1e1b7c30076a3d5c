"""The example input script writes files that `slitcli simulate` accepts."""

import subprocess
import sys
from pathlib import Path

from astropy.table import Table
from typer.testing import CliRunner

from slitcli.cli import app

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "make_example_inputs.py"


def test_example_inputs_simulate(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(tmp_path), "-n", "4", "--seed", "1"], check=True, capture_output=True)
    out = tmp_path / "sample.fits"
    args = ["simulate", "--hsc", tmp_path / "example_hsc.fits", "--desi", tmp_path / "example_desi.fits", "-o", out]
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.output
    assert "matched 4 of 4 images" in result.output
    t = Table.read(out, hdu="SOURCES")
    assert len(t) == 4 and t["SED_ID"][0].startswith("example_desi.fits:")
