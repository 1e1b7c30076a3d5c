"""Plots are valid PNG files written in place, even for degenerate inputs."""

import numpy as np
import pytest

from slitcli.evaluation import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def data(n=200, seed=2):
    rng = np.random.default_rng(seed)
    z_true = rng.uniform(0.1, 2.0, n)
    zerr = 0.02 * (1 + z_true)
    return z_true + rng.normal(0, zerr), zerr, z_true, 10 ** rng.uniform(-0.5, 1.5, n)


CALLS = {
    "z_pred_vs_true": lambda d, p: plots.plot_z_pred_vs_true(d[0], d[2], p, snr=d[3]),
    "z_pred_vs_true without SNR": lambda d, p: plots.plot_z_pred_vs_true(d[0], d[2], p),
    "calibration": lambda d, p: plots.plot_calibration(d[0], d[1], d[2], p),
    "residual_vs_snr": lambda d, p: plots.plot_residual_vs_snr(d[0], d[1], d[2], d[3], p),
    "pit": lambda d, p: plots.plot_pit(d[0], d[1], d[2], p),
}


@pytest.mark.parametrize("n", [200, 1])
@pytest.mark.parametrize("name", list(CALLS))
def test_writes_png_and_nothing_else(tmp_path, name, n):
    d = data(n)
    path = tmp_path / "plot.png"
    assert CALLS[name](d, path) == path
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_residual_plot_with_no_positive_snr(tmp_path):
    path = plots.plot_residual_vs_snr([0.5, 0.6], [0.1, 0.1], [0.4, 0.5], [0.0, -1.0], tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_empty_snr_panels_and_equal_snr(tmp_path):
    z = np.linspace(0.0, 1.0, 10)
    path = plots.plot_z_pred_vs_true(z, z, tmp_path / "z.png", snr=np.ones(10), snr_cuts=(1, 2, 3))
    assert path.read_bytes()[:8] == PNG_MAGIC
    path = plots.plot_residual_vs_snr(z, np.full(10, 0.1), z, np.full(10, 3.0), tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
