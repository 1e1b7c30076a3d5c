"""Redshift PDFs on a grid (``ZGRID``/``ZPDF``): the CNN's predictive distribution, the round trip, qp."""

import shutil
import subprocess

import numpy as np
import pytest
from astropy.table import Table
from conftest import assert_usage_error, invoke

from slitcli.io.catalog import read_catalog, write_catalog
from slitcli.io.redshift import QUANTILES, quantiles
from slitcli.io.zpdf import pdf_quantiles, predictive_pdf, read_zpdf, z_grid


def grid_steps(grid, z):
    return np.interp(z, grid[:-1], np.diff(grid))


@pytest.mark.parametrize("dof", [np.inf, 3.0])
def test_predictive_pdf_integrates_to_one_and_holds_the_catalogue_quantiles(dof):
    """Gaussian and Student t, narrow and broad, one censored at z = 0 and one past the grid's end."""
    grid = z_grid()
    z = np.array([0.01, 0.3, 0.8, 1.5, 1.9])
    zerr = np.array([0.02, 0.004, 0.05, 0.3, 0.2])
    pdf = predictive_pdf(z, zerr, grid, dof)
    np.testing.assert_allclose(np.trapezoid(pdf, grid, axis=1), 1.0, atol=1e-9)
    assert np.all(pdf >= 0)
    expected = quantiles(z, zerr, dof)
    got = pdf_quantiles(grid, pdf, list(QUANTILES.values()))
    for k, name in enumerate(QUANTILES):
        inside = expected[name] < grid[-1]
        assert np.all(np.abs(got[inside, k] - expected[name][inside]) <= grid_steps(grid, expected[name][inside]))
        # Past the grid, the quantile reads as its last cell.
        assert np.all(got[~inside, k] >= grid[-2])
    assert (quantiles(z, zerr, dof)["Z975"] >= grid[-1]).any() and (expected["Z025"] == 0).any()


def test_zpdf_round_trips_through_a_fits_catalogue(tmp_path):
    grid = z_grid()
    pdf = predictive_pdf([0.2, 1.1], [0.01, 0.1], grid).astype(np.float32)
    table = Table({"SOURCE_ID": [7, 9], "Z": [0.2, 1.1], "ZERR": [0.01, 0.1], "ZPDF": pdf})
    out = tmp_path / "z.fits"
    write_catalog(table, out, pdf_grid=grid)
    g, p = read_zpdf(out)
    np.testing.assert_array_equal(g, grid)
    np.testing.assert_array_equal(p, pdf)
    back = read_catalog(out, ("SOURCE_ID", "Z"))
    assert list(back["SOURCE_ID"]) == [7, 9] and "ZPDF" not in back.colnames
    if shutil.which("fitsverify"):
        check = subprocess.run(["fitsverify", "-q", "-e", str(out)], capture_output=True, text=True)
        assert "verification OK" in check.stdout, check.stdout + check.stderr
    with pytest.raises(ValueError, match="FITS"):
        write_catalog(table, tmp_path / "z.ecsv", pdf_grid=grid)


def test_qp_reads_it_as_an_interpolated_ensemble():
    qp = pytest.importorskip("qp")
    grid = z_grid()
    pdf = predictive_pdf([0.2, 0.7, 1.3], [0.01, 0.05, 0.2], grid, 3.0)
    ens = qp.Ensemble(qp.interp, data={"xvals": grid, "yvals": pdf})
    np.testing.assert_allclose(ens.ppf(0.5).ravel(), pdf_quantiles(grid, pdf, [0.5])[:, 0], atol=1e-6)
    np.testing.assert_allclose(ens.pdf(grid), pdf, rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("zpdf")
    assert invoke("simulate", "-n", "10", "--seed", "5", "-q", "-o", root / "s.fits").exit_code == 0
    return root


@pytest.mark.parametrize(("method", "tolerance_steps"), [("cnn", 1.0), ("template", 2.0)])
def test_predict_pdf_matches_its_quantile_columns(tiny, method, tolerance_steps):
    """The CNN's PDF, written on its p(z) head's own nodes, is its predictive distribution
    (quantiles within a grid step); the template's is its chi-square PDF (within two: a core
    narrower than the grid is drawn at half a step's width)."""
    out = tiny / f"z_{method}.fits"
    result = invoke("predict", tiny / "s.fits", "--method", method, "--pdf", "--n-mc", "4", "--device", "cpu", "-q", "-o", out)
    assert result.exit_code == 0, result.output
    grid, pdf = read_zpdf(out)
    table = Table.read(out, hdu="REDSHIFTS")
    assert pdf.shape == (len(table), grid.size)
    if method == "cnn":  # the shipped model's 1,100 nodes, uniform in ln(1 + z)
        np.testing.assert_allclose(np.diff(np.log1p(grid)), 0.001, rtol=1e-3)
    np.testing.assert_allclose(np.trapezoid(pdf, grid, axis=1), 1.0, atol=1e-5)
    got = pdf_quantiles(grid, pdf, list(QUANTILES.values()))
    for k, name in enumerate(QUANTILES):
        inside = np.asarray(table[name]) < grid[-1]
        diff = np.abs(got[inside, k] - np.asarray(table[name])[inside])
        assert np.all(diff <= tolerance_steps * grid_steps(grid, np.asarray(table[name])[inside])), (name, diff.max())


def test_pdf_needs_a_fits_catalogue(tiny):
    assert_usage_error(invoke("predict", tiny / "s.fits", "--pdf", "-o", tiny / "z.ecsv"), "--pdf")


def test_crps_and_pit_of_a_gridded_gaussian_are_the_analytic_ones():
    """CRPS of N(mu, sigma) at y: sigma (u (2 Phi(u) - 1) + 2 phi(u) - 1/sqrt(pi)), u = (y - mu)/sigma (Gneiting & Raftery 2007); PIT = Phi(u)."""
    from scipy.stats import norm

    from slitcli.evaluation.metrics import pdf_crps, pdf_pit

    grid = z_grid()
    mu, sigma = 0.5, 0.05
    pdf = np.repeat(norm.pdf(grid, mu, sigma)[None, :], 4, axis=0)
    y = np.array([0.5, 0.47, 0.62, 0.9])
    u = (y - mu) / sigma
    expected = sigma * (u * (2 * norm.cdf(u) - 1) + 2 * norm.pdf(u) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(pdf_crps(grid, pdf, y), expected, rtol=2e-3)
    np.testing.assert_allclose(pdf_pit(grid, pdf, y), norm.cdf(u), atol=1e-4)


def test_evaluate_reports_pdf_metrics_when_the_catalogue_has_pdfs(tiny):
    from astropy.table import Table as T

    z = tiny / "z_eval.fits"
    assert invoke("predict", tiny / "s.fits", "--pdf", "--n-mc", "4", "--device", "cpu", "-q", "-o", z).exit_code == 0
    result = invoke("evaluate", z, "--truth", tiny / "s.fits", "-q", "-o", tiny / "report")
    assert result.exit_code == 0, result.output
    metrics = T.read(tiny / "report" / "metrics.ecsv")
    row = metrics[metrics["sample"] == "all"][0]
    assert np.isfinite(row["crps_mean"]) and 0 < row["crps_mean"] < 1 and 0 <= row["pit_ks_pdf"] <= 1
    # Without PDFs the columns are absent, not NaN.
    e = tiny / "z_eval.ecsv"
    assert invoke("predict", tiny / "s.fits", "--n-mc", "4", "--device", "cpu", "-q", "-o", e).exit_code == 0
    assert invoke("evaluate", e, "--truth", tiny / "s.fits", "-q", "-o", tiny / "report2").exit_code == 0
    assert "crps_mean" not in T.read(tiny / "report2" / "metrics.ecsv").colnames


def test_uncensored_predictive_pdf_has_no_spike_at_z_zero():
    """Centred at z = 0.01 with ZERR 0.05: censored, the first cell holds the mass below z = 0;
    uncensored (the hybrid route's prior), the density is smooth there."""
    from slitcli.io.zpdf import predictive_pdf, z_grid

    grid = z_grid()
    censored = predictive_pdf([0.01], [0.05], grid)[0]
    smooth = predictive_pdf([0.01], [0.05], grid, censor=False)[0]
    assert censored[0] > 10 * censored[1]
    assert smooth[0] == pytest.approx(smooth[1], rel=0.02)
    assert np.trapezoid(smooth, grid) == pytest.approx(1.0, rel=1e-9)
