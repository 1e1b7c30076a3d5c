"""The hybrid route: the range searched, and predict --method hybrid end to end."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from conftest import invoke

from slitcli.classic.template_fit import TemplateFitConfig
from slitcli.hybrid import HybridConfig, search_range

T_GRID = TemplateFitConfig().grid()
STEP = float(T_GRID[1] - T_GRID[0])


def gaussian(t, centre, sigma):
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def test_search_range_covers_the_prior_above_its_floor_plus_the_margin():
    cfg = HybridConfig(prior_floor=1e-3, margin_t=0.02)
    prior = gaussian(T_GRID, 0.5, 0.01)
    lo, hi = search_range(prior, T_GRID, cfg)
    half_width = 0.01 * np.sqrt(-2 * np.log(1e-3)) + 0.02  # where the Gaussian falls to 1e-3 of its peak, plus the margin
    assert T_GRID[lo] == pytest.approx(0.5 - half_width, abs=2 * STEP)
    assert T_GRID[hi] == pytest.approx(0.5 + half_width, abs=2 * STEP)
    assert search_range(np.ones_like(T_GRID), T_GRID, cfg) == (0, T_GRID.size - 1)
    assert search_range(gaussian(T_GRID, 0.0, 0.01), T_GRID, cfg)[0] == 0  # clipped at the grid's end


@pytest.mark.slow
def test_predict_hybrid_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sample = tmp_path / "s.fits"
    assert invoke("simulate", "-n", 6, "--seed", 11, "-o", sample, "-q").exit_code == 0
    result = invoke("predict", sample, "--method", "hybrid", "--n-mc", 10, "--pdf", "-o", tmp_path / "z.fits")
    assert result.exit_code == 0, result.output
    table = Table.read(tmp_path / "z.fits", hdu="REDSHIFTS")
    from slitcli.nn.modelfile import load_model

    assert table.meta["METHOD"] == "hybrid" and table.meta["HYBTEMP"] == load_model(None).hybrid_temperature == 4.0
    assert {"Z_CNN", "ZERR_CNN", "ZTEMPL", "ZAGREE", "NSEARCH"} <= set(table.colnames)
    assert np.all(table["NSEARCH"] < T_GRID.size)  # the likelihood is computed where the prior has mass only
    q = np.array([table[c] for c in ("Z025", "Z160", "Z500", "Z840", "Z975")])
    assert np.all(np.diff(q, axis=0) >= 0) and np.all((table["Z"] >= q[0]) & (table["Z"] <= q[-1]))
    from slitcli.io.zpdf import read_zpdf

    grid, pdf = read_zpdf(tmp_path / "z.fits")
    assert np.allclose(np.trapezoid(pdf, grid, axis=1), 1.0, rtol=1e-5)
    assert np.all((table["ZAGREE"] >= 0) & (table["ZAGREE"] <= 1))
    assert np.all((table["ODDS"] >= 0) & (table["ODDS"] <= 1 + 1e-12))
