"""Diagnostic plots of predicted redshifts, written as PNG files.

Each plot has a ``*_figure`` function that takes arrays (dimensionless redshifts,
uncertainties and SNR) and returns a `matplotlib.figure.Figure` drawn with the Agg canvas
(no pyplot global state), and a ``plot_*`` function that draws the same figure, writes it
as PNG under a temporary name, renames it into place and returns the path. `title` (for
example the model and the catalogue, see `slitcli.evaluation.report.plot_title`) is the
figure's title and the PNG's ``Title`` text chunk.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from slitcli.evaluation import metrics
from slitcli.io.png import save_png

__all__ = [
    "binned_residuals",
    "calibration_figure",
    "pit_figure",
    "plot_calibration",
    "plot_pit",
    "plot_residual_vs_snr",
    "plot_z_pred_vs_true",
    "residual_vs_snr_figure",
    "snr_bin_masks",
    "z_pred_vs_true_figure",
]

_OUTLIER_LINES = ((0.02, "tab:orange", "--"), (0.15, "tab:red", ":"))
_TEXT_BOX = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85}
#: Calibration curves of SNR bins with fewer sources than this are not drawn (too noisy).
MIN_CURVE_SOURCES = 20


def _figure(figsize, title: str | None) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _note(ax, text: str, loc: str = "upper left") -> None:
    x, ha = (0.04, "left") if loc.endswith("left") else (0.96, "right")
    y, va = (0.96, "top") if loc.startswith("upper") else (0.04, "bottom")
    ax.text(x, y, text, transform=ax.transAxes, va=va, ha=ha, fontsize=8, bbox=_TEXT_BOX)


def _floats(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def snr_bin_masks(snr, cuts=(1, 3, 5, 10), snr_label: str = "SNR_GI") -> dict[str, np.ndarray]:
    """Boolean masks of SNR bins between consecutive `cuts`, keyed by label.

    ``"< c0"``, ``"[c0, c1)"``, ..., ``">= c_last"`` (labels prefixed with `snr_label`);
    NaN SNR falls in none of them.
    """
    snr = np.asarray(snr, dtype=np.float64)
    edges = [-np.inf, *sorted(float(c) for c in cuts), np.inf]
    masks = {}
    for lo, hi in pairwise(edges):
        if lo == -np.inf:
            label = f"{snr_label} < {hi:g}"
        elif hi == np.inf:
            label = f"{snr_label} >= {lo:g}"
        else:
            label = f"{snr_label} in [{lo:g}, {hi:g})"
        masks[label] = (snr >= lo) & (snr < hi)
    return masks


def binned_residuals(z_pred, zerr, z_true, snr, *, n_bins: int = 10, min_per_bin: int = 20) -> dict[str, np.ndarray]:
    """Measured scatter and bias of dz/(1+z) against the predicted ZERR/(1+z), per SNR bin.

    The bins hold about equal numbers of the sources with finite SNR > 0 (at most
    `n_bins`, at least `min_per_bin` sources each when there are that many); bin i holds
    ``edges[i] <= snr < edges[i+1]``, the last bin also ``snr == edges[-1]``.

    Returns
    -------
    dict of ndarray
        ``edges`` (n+1 SNR values), and per bin: ``n``, ``snr_median``, ``sigma_nmad``
        (`metrics.sigma_nmad`), ``bias_median`` (`metrics.bias_median`) and
        ``zerr_median`` (median of ZERR/(1+z_true)). Where the predicted errors
        are right, sigma_nmad about equals zerr_median (exactly, for Gaussian residuals
        of one width and small dz). Empty arrays
        when no source has SNR > 0.
    """
    z_pred, zerr, z_true, snr = _floats(z_pred, zerr, z_true, snr)
    shown = np.isfinite(snr) & (snr > 0)
    keys = ("n", "snr_median", "sigma_nmad", "bias_median", "zerr_median")
    if not shown.any():
        return {"edges": np.array([]), **{k: np.array([]) for k in keys}}
    values = snr[shown]
    k = int(np.clip(values.size // max(min_per_bin, 1), 1, max(n_bins, 1)))
    edges = np.unique(np.quantile(values, np.linspace(0, 1, k + 1)))
    if edges.size == 1:
        edges = np.array([edges[0] / 1.1, edges[0] * 1.1])
    which = np.clip(np.searchsorted(edges, snr, side="right") - 1, 0, edges.size - 2)
    rows = {key: [] for key in keys}
    for b in range(edges.size - 1):
        m = shown & (which == b)
        n = int(m.sum())
        rows["n"].append(n)
        if n == 0:
            for key in keys[1:]:
                rows[key].append(np.nan)
            continue
        rows["snr_median"].append(np.median(snr[m]))
        rows["sigma_nmad"].append(metrics.sigma_nmad(z_pred[m], z_true[m]))
        rows["bias_median"].append(metrics.bias_median(z_pred[m], z_true[m]))
        rows["zerr_median"].append(np.median(zerr[m] / (1 + z_true[m])))
    return {"edges": edges, **{key: np.asarray(v, dtype=np.int64 if key == "n" else np.float64) for key, v in rows.items()}}


def z_pred_vs_true_figure(z_pred, z_true, *, snr=None, snr_cuts=(1, 3, 5, 10), snr_label: str = "SNR_GI", title: str | None = None) -> Figure:
    """Predicted against true redshift as log-scaled density: all sources, then one panel per SNR cut.

    Each panel has the 1:1 line, the outlier boundaries |dz|/(1+z) = 0.02 and 0.15, and
    in its corner the panel's n, sigma_NMAD and outlier fractions. The hexagons share
    one colour scale (sources per hexagon); single sources show as the faintest colour.
    """
    z_pred, z_true = _floats(z_pred, z_true)
    panels = {"all sources": np.ones(z_true.size, dtype=bool)}
    if snr is not None:
        snr = np.asarray(snr, dtype=np.float64)
        panels.update({f"{snr_label} >= {cut:g}": snr >= cut for cut in snr_cuts})
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig = _figure((3.7 * ncols + 0.8, 3.6 * nrows + 0.5), title)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    lo = min(z_true.min(), z_pred.min(), 0.0)
    hi = max(z_true.max() * 1.05, z_pred.max() * 1.05, lo + 0.1)
    line = np.linspace(lo, hi, 200)
    norm = LogNorm(vmin=1, vmax=2)
    hexes = []
    for ax, (name, mask) in zip(axes, panels.items()):
        n = int(mask.sum())
        if n:
            hexes.append(ax.hexbin(z_true[mask], z_pred[mask], gridsize=45, extent=(lo, hi, lo, hi), mincnt=1, cmap="viridis", norm=norm, lw=0.1))
        ax.plot(line, line, color="k", lw=0.6, alpha=0.8, label="z_pred = z_true")
        for t, color, style in _OUTLIER_LINES:
            for sign in (1, -1):
                ax.plot(line, line + sign * t * (1 + line), color=color, ls=style, lw=0.9, label=f"|dz|/(1+z) = {t:g}" if sign == 1 else None)
        if n:
            _note(ax, f"n = {n}\n$\\sigma_{{\\rm NMAD}}$ = {metrics.sigma_nmad(z_pred[mask], z_true[mask]):.4f}\n"
                      f"$\\eta_{{0.02}}$ = {metrics.outlier_fraction(z_pred[mask], z_true[mask], 0.02):.3f}\n"
                      f"$\\eta_{{0.15}}$ = {metrics.outlier_fraction(z_pred[mask], z_true[mask], 0.15):.3f}")
        else:
            _note(ax, "no sources")
        ax.set_title(name, fontsize=10)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal")
        ax.set_xlabel("true redshift")
        ax.set_ylabel("predicted redshift")
    spare = axes[len(panels):]
    for ax in spare:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    if hexes:
        norm.vmax = max(2.0, max(float(h.get_array().max()) for h in hexes))
        if spare.size:  # colour bar and legend in the first empty slot
            cax = spare[0].inset_axes([0.08, 0.1, 0.07, 0.8])
            fig.colorbar(hexes[0], cax=cax, label="sources per hexagon")
            spare[0].legend(handles, labels, loc="center", bbox_to_anchor=(0.62, 0.5), fontsize=8.5, frameon=False)
        else:
            fig.colorbar(hexes[0], ax=axes.tolist(), label="sources per hexagon", shrink=0.8)
    if not (hexes and spare.size):
        axes[0].legend(loc="lower right", fontsize=7)
    return fig


def calibration_figure(z_pred, zerr, z_true, *, dof: float = np.inf, snr=None, snr_cuts=(1, 3, 5, 10), snr_label: str = "SNR_GI", title: str | None = None) -> Figure:
    """Coverage of the central intervals of the predictive distribution against their confidence level.

    One curve for all sources and, with `snr`, one per SNR bin between the `snr_cuts`
    (`snr_bin_masks`; bins of fewer than `MIN_CURVE_SOURCES` sources are listed but not
    drawn), with the diagonal. `dof` is the predictive distribution's (inf: Gaussian).
    """
    z_pred, zerr, z_true = _floats(z_pred, zerr, z_true)
    fig = _figure((5.6, 5.6), title)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="calibrated")
    curves = {"all sources": np.ones(z_true.size, dtype=bool)}
    if snr is not None:
        curves.update(snr_bin_masks(snr, snr_cuts, snr_label))
    colours = iter(["tab:purple", "tab:blue", "tab:green", "tab:orange", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for name, mask in curves.items():
        n = int(mask.sum())
        is_all = name == "all sources"
        colour = "k" if is_all else next(colours, "tab:gray")
        if n < (1 if is_all else MIN_CURVE_SOURCES):
            ax.plot([], [], color=colour, lw=0, label=f"{name}: n = {n}, not drawn")
            continue
        levels, cov = metrics.calibration_curve(z_pred[mask], zerr[mask], z_true[mask], dof=dof)
        err = metrics.calibration_error(z_pred[mask], zerr[mask], z_true[mask], dof=dof)
        ax.plot(levels, cov, color=colour, lw=2.2 if is_all else 1.4, label=f"{name}: n = {n}, RMS err {err:.3f}")
    shape = "Gaussian" if not np.isfinite(dof) else f"Student t, dof = {dof:g}"
    _note(ax, f"predictive distribution: {shape}\nabove the diagonal: ZERR too large\nbelow: ZERR too small")
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="confidence level of the central interval", ylabel="coverage (fraction of true z inside)")
    ax.legend(loc="lower right", fontsize=7.5)
    return fig


def residual_vs_snr_figure(z_pred, zerr, z_true, snr, *, snr_label: str = "SNR_GI", n_bins: int = 10, title: str | None = None) -> Figure:
    """dz/(1+z) against SNR (log axis), with the measured scatter and bias per bin beside the predicted ZERR.

    Top: the sources, each bin's median bias +- sigma_NMAD (measured) and +- the bin's
    median ZERR/(1+z) (predicted). Bottom: sigma_NMAD and median ZERR/(1+z) per bin on a
    log scale; where the predicted errors are right the two lines agree. Bins from
    `binned_residuals`. Sources with SNR <= 0 cannot be placed on the log axis, and
    residuals beyond the top panel's range are not drawn; the panel says how many.
    """
    z_pred, zerr, z_true, snr = _floats(z_pred, zerr, z_true, snr)
    resid = (z_pred - z_true) / (1 + z_true)
    shown = np.isfinite(snr) & (snr > 0)
    stats = binned_residuals(z_pred, zerr, z_true, snr, n_bins=n_bins)
    fig = _figure((7.0, 6.6), title)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.6, 1.0])
    top.axhline(0.0, color="k", lw=0.8)
    notes = []
    if shown.any():
        edges, mid = stats["edges"], stats["snr_median"]
        scale = np.nanmax(np.concatenate([np.abs(stats["bias_median"]) + stats["sigma_nmad"], stats["zerr_median"]]))
        lim = float(np.clip(4 * scale, 0.02, 0.5)) if np.isfinite(scale) else 0.5
        inside = shown & (np.abs(resid) <= lim)
        top.scatter(snr[inside], resid[inside], s=3, alpha=0.35, color="0.45", lw=0, label="sources")
        for sign, marker in ((1, "^"), (-1, "v")):
            out = shown & (sign * resid > lim)
            top.scatter(snr[out], np.full(out.sum(), sign * lim), s=12, marker=marker, color="0.3", lw=0)
        for sign, label in ((1, "$\\pm$ median ZERR/(1+z) per bin (predicted)"), (-1, None)):
            top.stairs(sign * stats["zerr_median"], edges, color="tab:red", lw=1.4, label=label, baseline=None)
        top.errorbar(mid, stats["bias_median"], yerr=stats["sigma_nmad"], fmt="o", color="tab:blue", ms=4, capsize=3, lw=1.4,
                     label="median bias $\\pm\\ \\sigma_{\\rm NMAD}$ per bin (measured)")
        top.set_ylim(-1.06 * lim, 1.06 * lim)
        beyond = int(np.count_nonzero(shown & (np.abs(resid) > lim)))
        if beyond:
            notes.append(f"{beyond} source(s) beyond $\\pm${lim:.2g}, drawn as triangles at the edge")
        bottom.plot(mid, stats["sigma_nmad"], "o-", color="tab:blue", ms=4, label="$\\sigma_{\\rm NMAD}$ (measured)")
        bottom.plot(mid, stats["zerr_median"], "s--", color="tab:red", ms=4, label="median ZERR/(1+z) (predicted)")
        bottom.plot(mid, np.abs(stats["bias_median"]), "^:", color="0.35", ms=4, label="|median bias| (measured)")
        bottom.set_yscale("log")
        bottom.set_xscale("log")
        top.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=7.5, frameon=False, handletextpad=0.4, columnspacing=1.0)
        bottom.legend(loc="upper right", fontsize=7.5)
        bottom.text(0.01, 0.04, f"{edges.size - 1} bins of ~{int(np.median(stats['n']))} sources", transform=bottom.transAxes, ha="left", va="bottom", fontsize=7.5)
    hidden = int((~shown).sum())
    if hidden:
        notes.append(f"{hidden} source(s) with {snr_label} <= 0 not shown")
    if notes:
        _note(top, "\n".join(notes), loc="lower right")
    top.set_ylabel("(z_pred - z_true) / (1 + z_true)")
    bottom.set(xlabel=snr_label, ylabel="per SNR bin, as dz/(1+z)")
    return fig


def pit_figure(z_pred, zerr, z_true, *, n_bins: int = 20, dof: float = np.inf, title: str | None = None, pit_values=None, shape: str | None = None) -> Figure:
    """Histogram of the PIT values (the predictive CDF at the truth); flat at 1 when calibrated.

    The PIT is that of the Gaussian (or Student t of `dof`) of `z_pred`, `zerr`, or
    `pit_values` when given (a catalogue's gridded PDFs), described by `shape`.
    """
    values = metrics.pit(z_pred, zerr, z_true, dof) if pit_values is None else np.asarray(pit_values, np.float64)
    ks = metrics.pit_ks(z_pred, zerr, z_true, dof) if pit_values is None else metrics.ks_uniform(values)
    fig = _figure((5.6, 4.2), title)
    ax = fig.subplots()
    heights, _, _ = ax.hist(values, bins=np.linspace(0, 1, n_bins + 1), density=True, color="tab:blue", alpha=0.7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="uniform")
    shape = shape or ("Gaussian" if not np.isfinite(dof) else f"Student t, dof = {dof:g}")
    _note(ax, f"n = {values.size}, {shape}\nKS distance = {ks:.4f}\n"
              "U shape: ZERR too small; hump: too large")
    ax.set(xlim=(0, 1), ylim=(0, 1.45 * max(heights.max(), 1.0)), xlabel="PIT", ylabel="density")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_z_pred_vs_true(z_pred, z_true, path, **options) -> Path:
    """Write `z_pred_vs_true_figure` (same keyword options) to `path`."""
    return save_png(z_pred_vs_true_figure(z_pred, z_true, **options), path)


def plot_calibration(z_pred, zerr, z_true, path, **options) -> Path:
    """Write `calibration_figure` (same keyword options) to `path`."""
    return save_png(calibration_figure(z_pred, zerr, z_true, **options), path)


def plot_residual_vs_snr(z_pred, zerr, z_true, snr, path, **options) -> Path:
    """Write `residual_vs_snr_figure` (same keyword options) to `path`."""
    return save_png(residual_vs_snr_figure(z_pred, zerr, z_true, snr, **options), path)


def plot_pit(z_pred, zerr, z_true, path, **options) -> Path:
    """Write `pit_figure` (same keyword options) to `path`."""
    return save_png(pit_figure(z_pred, zerr, z_true, **options), path)
