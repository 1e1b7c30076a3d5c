"""Plots: valid PNG files written in place, titled with the model and catalogues, drawing the metrics' numbers."""

from itertools import pairwise

import numpy as np
import pytest
from astropy.table import Table
from matplotlib.collections import PolyCollection
from PIL import Image

from slitcli.evaluation import metrics, plots
from slitcli.evaluation.evaluate import join_truth, metrics_table
from slitcli.evaluation.report import plot_title, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TITLE = "CNN model my-model\npredictions z.ecsv against truth sample.fits"


def data(n=200, seed=2):
    rng = np.random.default_rng(seed)
    z_true = rng.uniform(0.1, 2.0, n)
    zerr = 0.02 * (1 + z_true)
    return z_true + rng.normal(0, zerr), zerr, z_true, 10 ** rng.uniform(-0.5, 1.5, n)


CALLS = {
    "z_pred_vs_true": lambda d, p, **kw: plots.plot_z_pred_vs_true(d[0], d[2], p, snr=d[3], **kw),
    "z_pred_vs_true without SNR": lambda d, p, **kw: plots.plot_z_pred_vs_true(d[0], d[2], p, **kw),
    "calibration": lambda d, p, **kw: plots.plot_calibration(d[0], d[1], d[2], p, snr=d[3], dof=5.0, **kw),
    "calibration without SNR": lambda d, p, **kw: plots.plot_calibration(d[0], d[1], d[2], p, **kw),
    "residual_vs_snr": lambda d, p, **kw: plots.plot_residual_vs_snr(d[0], d[1], d[2], d[3], p, **kw),
    "pit": lambda d, p, **kw: plots.plot_pit(d[0], d[1], d[2], p, **kw),
}
FIGURES = {
    "z_pred_vs_true": lambda d, **kw: plots.z_pred_vs_true_figure(d[0], d[2], snr=d[3], **kw),
    "calibration": lambda d, **kw: plots.calibration_figure(d[0], d[1], d[2], snr=d[3], **kw),
    "residual_vs_snr": lambda d, **kw: plots.residual_vs_snr_figure(d[0], d[1], d[2], d[3], **kw),
    "pit": lambda d, **kw: plots.pit_figure(d[0], d[1], d[2], **kw),
}


def png_title(path) -> str | None:
    with Image.open(path) as image:
        return image.text.get("Title")


@pytest.mark.parametrize("n", [200, 1])
@pytest.mark.parametrize("name", list(CALLS))
def test_writes_png_and_nothing_else(tmp_path, name, n):
    d = data(n)
    path = tmp_path / "plot.png"
    assert CALLS[name](d, path, title=TITLE) == path
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    assert png_title(path) == TITLE.replace("\n", "; ")


@pytest.mark.parametrize("name", list(FIGURES))
def test_figures_carry_the_title(name):
    assert FIGURES[name](data(), title=TITLE).get_suptitle() == TITLE
    assert FIGURES[name](data()).get_suptitle() == ""


def test_residual_plot_with_no_positive_snr(tmp_path):
    path = plots.plot_residual_vs_snr([0.5, 0.6], [0.1, 0.1], [0.4, 0.5], [0.0, -1.0], tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_empty_snr_panels_and_equal_snr(tmp_path):
    z = np.linspace(0.0, 1.0, 10)
    path = plots.plot_z_pred_vs_true(z, z, tmp_path / "z.png", snr=np.ones(10), snr_cuts=(1, 2, 3))
    assert path.read_bytes()[:8] == PNG_MAGIC
    path = plots.plot_residual_vs_snr(z, np.full(10, 0.1), z, np.full(10, 3.0), tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


# --- titles from the catalogue's and the metrics' meta -------------------------------------------


def test_title_names_the_cnn_model_and_the_files():
    title = plot_title({"METHOD": "cnn", "MODEL": "slitnet-csst-default", "INPUTS": "t300.fits", "PREDFILE": "z300.ecsv", "TRUTHFILE": "t300.fits"})
    assert title == "CNN model slitnet-csst-default\npredictions z300.ecsv against truth t300.fits"


def test_title_of_a_template_fit_with_bytes_meta_and_other_inputs():
    title = plot_title({"METHOD": b"template", "TEMPLATE": "cww_E,kinney_sb1", "INPUTS": "a.fits,b.fits", "PREDFILE": b"z.fits", "TRUTHFILE": "truth.ecsv"})
    assert title == "template fit\npredictions z.fits against truth truth.ecsv (predicted from a.fits,b.fits)"


def test_title_without_provenance_says_so():
    assert plot_title({}) == "unknown model"
    assert plot_title({"MODEL": "m1", "TRUTHFILE": "t.fits"}) == "CNN model m1\ntruth t.fits"


def test_report_plots_are_titled_with_model_and_catalogues(tmp_path):
    z_pred, zerr, z_true, snr = data(300)
    ids = np.arange(1, 301)
    pred = Table({"SOURCE_ID": ids, "Z": z_pred, "ZERR": zerr})
    pred.meta.update(METHOD="cnn", MODEL="my-model", ZDOF=5.0, INPUTS="sample.fits")
    joined = join_truth(pred, Table({"SOURCE_ID": ids, "Z_TRUE": z_true, "SNR_GI": snr}), "SNR_GI")
    table = metrics_table(joined)
    table.meta.update(PREDFILE="z.ecsv", TRUTHFILE="sample.fits")
    written = write_report(tmp_path / "rep", joined, table)
    pngs = [p for p in written if p.suffix == ".png"]
    assert [p.name for p in pngs] == ["z_pred_vs_true.png", "calibration.png", "residual_vs_snr.png", "pit.png"]
    for path in pngs:
        assert png_title(path) == TITLE.replace("\n", "; "), path.name


# --- the numbers drawn ----------------------------------------------------------------------------


def heteroscedastic(n=4000, under=1.0, seed=5):
    """Gaussian residuals whose width falls with SNR; ZERR is the true width divided by `under`."""
    rng = np.random.default_rng(seed)
    z_true = rng.uniform(0.1, 1.5, n)
    snr = 10 ** rng.uniform(-0.3, 1.7, n)
    sigma = (0.003 + 0.05 / snr) * (1 + z_true)
    return z_true + rng.normal(0, sigma) + 0.002 * (1 + z_true), sigma / under, z_true, snr


def bin_masks(snr, edges):
    masks = [(snr >= lo) & (snr < hi) for lo, hi in pairwise(edges)]
    masks[-1] |= snr == edges[-1]
    return masks


def test_binned_residuals_are_the_metrics_of_each_bin():
    z_pred, zerr, z_true, snr = heteroscedastic()
    snr[:5] = [0.0, -1.0, np.nan, 0.0, 0.0]  # not on a log axis: in no bin
    stats = plots.binned_residuals(z_pred, zerr, z_true, snr, n_bins=8)
    edges = stats["edges"]
    assert edges.size == 9 and np.all(np.diff(edges) > 0)
    masks = bin_masks(snr, edges)
    assert [int(m.sum()) for m in masks] == stats["n"].tolist()
    assert stats["n"].sum() == snr.size - 5 and stats["n"].min() >= 0.95 * stats["n"].max()  # equal counts
    for b, m in enumerate(masks):
        assert stats["sigma_nmad"][b] == metrics.sigma_nmad(z_pred[m], z_true[m])
        assert stats["bias_median"][b] == metrics.bias_median(z_pred[m], z_true[m])
        assert stats["zerr_median"][b] == np.median(zerr[m] / (1 + z_true[m]))
        assert edges[b] <= stats["snr_median"][b] <= edges[b + 1]
    # Right-sized Gaussian errors: measured scatter = predicted ZERR (falling 10x with SNR); bias 0.002 seen.
    assert np.allclose(stats["sigma_nmad"], stats["zerr_median"], rtol=0.15)
    assert stats["sigma_nmad"][0] > 5 * stats["sigma_nmad"][-1]
    assert np.allclose(stats["bias_median"], 0.002, atol=0.3 * stats["sigma_nmad"] + 3e-4)


def test_binned_residuals_show_underestimated_errors():
    z_pred, zerr, z_true, snr = heteroscedastic(under=2.0)
    stats = plots.binned_residuals(z_pred, zerr, z_true, snr)
    assert np.allclose(stats["sigma_nmad"] / stats["zerr_median"], 2.0, rtol=0.15)


def test_binned_residuals_of_few_sources_keep_enough_per_bin():
    z_pred, zerr, z_true, snr = heteroscedastic(n=70)
    stats = plots.binned_residuals(z_pred, zerr, z_true, snr, n_bins=10, min_per_bin=20)
    assert stats["n"].size == 3 and stats["n"].min() >= 20


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_residual_figure_draws_the_binned_metrics():
    z_pred, zerr, z_true, snr = heteroscedastic()
    stats = plots.binned_residuals(z_pred, zerr, z_true, snr)
    fig = plots.residual_vs_snr_figure(z_pred, zerr, z_true, snr)
    top, bottom = fig.axes
    lines = lines_by_label(bottom)
    edges = stats["edges"]
    for b, m in enumerate(bin_masks(snr, edges)):
        assert lines["$\\sigma_{\\rm NMAD}$ (measured)"].get_ydata()[b] == metrics.sigma_nmad(z_pred[m], z_true[m])
        assert lines["median ZERR/(1+z) (predicted)"].get_ydata()[b] == np.median(zerr[m] / (1 + z_true[m]))
    # The error bars of the top panel: median bias +- sigma_NMAD per bin.
    (bars,) = top.containers
    assert np.array_equal(bars.lines[0].get_ydata(), stats["bias_median"])
    segments = bars.lines[2][0].get_segments()
    assert np.allclose([s[1][1] - s[0][1] for s in segments], 2 * stats["sigma_nmad"])


def test_calibration_figure_has_one_curve_per_snr_bin():
    z_pred, zerr, z_true, snr = heteroscedastic(n=2000)
    snr[:10] = 0.5 + np.arange(10) * 0.01  # 10 sources below 1: too few for a curve
    snr[10:] = np.maximum(snr[10:], 1.0)
    fig = plots.calibration_figure(z_pred, zerr, z_true, dof=4.0, snr=snr, snr_cuts=(1, 3, 10), snr_label="SNR_GI")
    lines = lines_by_label(fig.axes[0])
    drawn = {label.split(":")[0]: line for label, line in lines.items() if len(line.get_xdata())}
    assert list(drawn) == ["calibrated", "all sources", "SNR_GI in [1, 3)", "SNR_GI in [3, 10)", "SNR_GI >= 10"]
    assert "SNR_GI < 1: n = 10, not drawn" in lines
    for label, mask in [("all sources", np.ones(snr.size, bool)), ("SNR_GI in [3, 10)", (snr >= 3) & (snr < 10))]:
        _, expected = metrics.calibration_curve(z_pred[mask], zerr[mask], z_true[mask], dof=4.0)
        assert np.array_equal(drawn[label].get_ydata(), expected)
    _, gaussian = metrics.calibration_curve(z_pred, zerr, z_true)
    assert not np.array_equal(drawn["all sources"].get_ydata(), gaussian)  # the dof is used


def test_snr_bins_partition_the_finite_snr():
    snr = np.array([0.2, 1.0, 2.9, 3.0, 9.99, 10.0, 50.0, np.nan])
    masks = plots.snr_bin_masks(snr, (3, 1, 10), "SNR")
    assert list(masks) == ["SNR < 1", "SNR in [1, 3)", "SNR in [3, 10)", "SNR >= 10"]
    assert np.array_equal(np.sum(list(masks.values()), axis=0), [1, 1, 1, 1, 1, 1, 1, 0])
    assert np.flatnonzero(masks["SNR in [1, 3)"]).tolist() == [1, 2]


def test_z_pred_vs_true_panels_all_sources_first_with_density_and_numbers():
    z_pred, _, z_true, snr = heteroscedastic(n=1000)
    fig = plots.z_pred_vs_true_figure(z_pred, z_true, snr=snr, snr_cuts=(1, 3))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["all sources", "SNR_GI >= 1", "SNR_GI >= 3"]
    norms = set()
    for ax, mask in zip(panels, [np.ones(snr.size, bool), snr >= 1, snr >= 3]):
        (hexes,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        counts = hexes.get_array()
        assert counts.sum() == mask.sum() and counts.min() >= 1  # every source shaded, no empty hexagons
        if ax.get_title() == "all sources":
            assert hexes.norm.vmax == counts.max() > 2
        norms.add(id(hexes.norm))
        text = "\n".join(t.get_text() for t in ax.texts)
        assert f"n = {mask.sum()}" in text
        assert f"= {metrics.sigma_nmad(z_pred[mask], z_true[mask]):.4f}" in text
        assert f"= {metrics.outlier_fraction(z_pred[mask], z_true[mask], 0.15):.3f}" in text
    assert len(norms) == 1  # one colour scale for all panels
