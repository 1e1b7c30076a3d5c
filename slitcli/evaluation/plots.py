"""Diagnostic plots of predicted redshifts, written as PNG files.

Each function takes arrays (dimensionless redshifts, uncertainties and SNR) and an output
path, draws on its own `matplotlib.figure.Figure` with the Agg canvas (no pyplot global
state), writes the PNG under a temporary name, renames it into place and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slitcli.evaluation import metrics
from slitcli.io.files import temporary_path

__all__ = ["plot_z_pred_vs_true", "plot_calibration", "plot_residual_vs_snr", "plot_pit"]

_DPI = 110
_OUTLIER_LINES = ((0.02, "tab:orange", "--"), (0.15, "tab:red", ":"))
_TEXT_BOX = {"boxstyle": "round", "facecolor": "white", "alpha": 0.8}


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    tmp = temporary_path(path)
    try:
        FigureCanvasAgg(fig)
        fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": "slitcli"})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _note(ax, text: str) -> None:
    ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", ha="left", fontsize=8, bbox=_TEXT_BOX)


def plot_z_pred_vs_true(z_pred, z_true, path, *, snr=None, snr_cuts=(1, 3, 5, 10), snr_label: str = "SNR_GI") -> Path:
    """Predicted against true redshift, one panel per SNR cut (one panel of all if `snr` is None).

    Each panel has the 1:1 line, the outlier boundaries |dz|/(1+z) = 0.02 and 0.15, and
    the panel's n, sigma_NMAD and outlier fractions.
    """
    z_pred, z_true = np.asarray(z_pred, dtype=np.float64), np.asarray(z_true, dtype=np.float64)
    if snr is None:
        panels = {"all sources": np.ones(z_true.size, dtype=bool)}
    else:
        snr = np.asarray(snr, dtype=np.float64)
        panels = {f"{snr_label} >= {cut:g}": snr >= cut for cut in snr_cuts}
    ncols = 1 if len(panels) == 1 else 2
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 4.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    lo = min(z_true.min(), z_pred.min(), 0.0)
    hi = max(z_true.max() * 1.05, z_pred.max() * 1.05, lo + 0.1)
    line = np.linspace(lo, hi, 200)
    for ax, (title, mask) in zip(axes, panels.items()):
        ax.plot(line, line, color="k", lw=0.8)
        for t, color, style in _OUTLIER_LINES:
            for sign in (1, -1):
                ax.plot(line, line + sign * t * (1 + line), color=color, ls=style, lw=0.8, label=f"|dz|/(1+z) = {t:g}" if sign == 1 else None)
        ax.scatter(z_true[mask], z_pred[mask], s=4, alpha=0.6, color="tab:blue", lw=0)
        n = int(mask.sum())
        if n:
            _note(ax, f"n = {n}\n$\\sigma_{{\\rm NMAD}}$ = {metrics.sigma_nmad(z_pred[mask], z_true[mask]):.4f}\n"
                      f"$\\eta_{{0.02}}$ = {metrics.outlier_fraction(z_pred[mask], z_true[mask], 0.02):.3f}\n"
                      f"$\\eta_{{0.15}}$ = {metrics.outlier_fraction(z_pred[mask], z_true[mask], 0.15):.3f}")
        else:
            _note(ax, "no sources")
        ax.set(title=title, xlim=(lo, hi), ylim=(lo, hi), aspect="equal")
        ax.set_xlabel("true redshift")
        ax.set_ylabel("predicted redshift")
    axes[0].legend(loc="lower right", fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_calibration(z_pred, zerr, z_true, path, *, dof: float = np.inf) -> Path:
    """Coverage of the central intervals of the predictive distribution against their confidence level, with the diagonal."""
    levels, cov = metrics.calibration_curve(z_pred, zerr, z_true, dof=dof)
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="calibrated")
    ax.plot(levels, cov, color="tab:blue", lw=1.5, label="predictions")
    ax.fill_between(levels, levels, cov, color="tab:blue", alpha=0.15, lw=0)
    _note(ax, f"n = {np.size(z_pred)}\nRMS calibration error = {metrics.calibration_error(z_pred, zerr, z_true, dof=dof):.4f}\n"
              "above the diagonal: ZERR too large")
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="confidence level", ylabel="coverage (fraction inside the interval)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _snr_bins(snr: np.ndarray, n_bins: int) -> np.ndarray:
    lo, hi = snr.min(), snr.max()
    if lo == hi:
        return np.array([lo / 1.1, hi * 1.1])
    return np.geomspace(lo, hi, n_bins + 1)


def plot_residual_vs_snr(z_pred, zerr, z_true, snr, path, *, snr_label: str = "SNR_GI", n_bins: int = 10) -> Path:
    """dz/(1+z) against SNR (log axis), with the binned median of +-ZERR/(1+z) as an envelope.

    Sources with SNR <= 0 cannot be placed on the log axis; the panel says how many.
    """
    z_pred, zerr, z_true, snr = (np.asarray(a, dtype=np.float64) for a in (z_pred, zerr, z_true, snr))
    resid, scaled_err = (z_pred - z_true) / (1 + z_true), zerr / (1 + z_true)
    shown = np.isfinite(snr) & (snr > 0)
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.axhline(0.0, color="k", lw=0.8)
    ax.scatter(snr[shown], resid[shown], s=4, alpha=0.6, color="tab:blue", lw=0)
    if shown.any():
        edges = _snr_bins(snr[shown], n_bins)
        which = np.clip(np.digitize(snr[shown], edges) - 1, 0, edges.size - 2)
        env = np.array([np.median(scaled_err[shown][which == b]) if np.any(which == b) else np.nan for b in range(edges.size - 1)])
        for sign, label in ((1, "median ZERR/(1+z) per SNR bin"), (-1, None)):
            ax.stairs(sign * env, edges, color="tab:red", lw=1.2, label=label, baseline=None)
        ax.set_xscale("log")
        ax.legend(loc="upper right", fontsize=8)
    hidden = int((~shown).sum())
    if hidden:
        _note(ax, f"{hidden} source(s) with {snr_label} <= 0 not shown")
    ax.set(xlabel=snr_label, ylabel="(z_pred - z_true) / (1 + z_true)")
    return _save(fig, path)


def plot_pit(z_pred, zerr, z_true, path, *, n_bins: int = 20, dof: float = np.inf) -> Path:
    """Histogram of the PIT values Phi((z_true - z_pred)/ZERR); flat at 1 when calibrated."""
    values = metrics.pit(z_pred, zerr, z_true, dof)
    fig = Figure(figsize=(5.0, 3.8), layout="constrained")
    ax = fig.subplots()
    heights, _, _ = ax.hist(values, bins=np.linspace(0, 1, n_bins + 1), density=True, color="tab:blue", alpha=0.7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="uniform")
    _note(ax, f"n = {values.size}\nKS distance = {metrics.pit_ks(z_pred, zerr, z_true, dof):.4f}\n"
              "U shape: ZERR too small; hump: too large")
    ax.set(xlim=(0, 1), ylim=(0, 1.45 * max(heights.max(), 1.0)), xlabel="PIT", ylabel="density")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)
