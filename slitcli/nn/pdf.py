"""The network's p(z): a distribution over a grid of t = ln(1 + z), and what is read from it.

A p(z) head (`slitcli.nn.layers.PDFHead`) outputs logits over `n_bins` nodes
t_k = k dt, k = 0 .. n_bins - 1, dt = t_max / (n_bins - 1). Their softmax gives each
node's probability P_k, read as a piecewise-linear density in t with value P_k / dt at
node k (hat functions; `node_density`). Its CDF is quadratic between nodes and the
quantiles, the median among them, are solved for exactly (`cdf_quantiles`): a line
placed to a fraction of a node keeps that fraction.

Training targets the "two-hot" distribution of the true t (weight 1 - f on the node
below it, f on the one above, f = (t - t_k) / dt: its mean is t itself), optionally
smoothed by a Gaussian of `label_sigma` nodes (`target`). Two losses (`pdf_loss`):

- ``ce``: the cross-entropy with the target, the maximum-likelihood loss of a
  categorical distribution;
- ``crps``: the continuous ranked probability score of the node distribution,
  sum_k (F_k - H_k)^2 dt with F the predicted and H the target's CDF at the nodes. It
  respects the grid's order: mass one node off costs far less than mass far off, which
  the cross-entropy does not see.

Monte Carlo dropout gives T logit vectors per source; the predictive distribution is
their mixture, the mean of the T softmaxes (`mixture`). A temperature divides the logits
before the softmax (calibration: above 1 widens, below 1 narrows). From the mixture
(`summarise_pdf`): Z (its median or mode), the quantile columns, ZERR = (1 + Z) times
the half-width in t of the central 68.27% interval, ODDS, and the law of total variance
split: ZERR_EPI = (1 + Z) std over passes of each pass's mean t, ZERR_ALE = (1 + Z)
sqrt(mean over passes of each pass's variance of t). Unlike the Gaussian head's, ZERR is
not hypot(ZERR_EPI, ZERR_ALE): it is read from the PDF, whose shape need not be Gaussian.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from slitcli.io.redshift import ODDS_WIDTH, QUANTILES, SIGMA_LEVELS

__all__ = ["LOSSES", "POINTS", "nodes", "target", "pdf_loss", "median_t", "softmax", "mixture", "moments", "node_density", "cdf_quantiles", "cdf_at", "summarise_pdf", "density_on", "normalised_cells"]

LOSSES = ("ce", "crps")
#: What Z is read as from the PDF.
POINTS = ("median", "mode")


def nodes(n_bins: int, t_max: float) -> np.ndarray:
    """The grid's nodes in t = ln(1 + z): n_bins points from 0 to t_max."""
    return np.linspace(0.0, t_max, n_bins)


def target(t: torch.Tensor, n_bins: int, t_max: float, label_sigma: float = 0.0) -> torch.Tensor:
    """Target distributions [n, n_bins] of true t [n]: two-hot, or with `label_sigma` > 0 (in nodes) a Gaussian about t."""
    dt = t_max / (n_bins - 1)
    u = (t.clamp(0.0, t_max) / dt).unsqueeze(-1)  # position in nodes
    k = torch.arange(n_bins, device=t.device, dtype=t.dtype)
    if label_sigma > 0:
        w = torch.exp(-0.5 * ((k - u) / label_sigma) ** 2)
        return w / w.sum(-1, keepdim=True)
    return (1.0 - (k - u).abs()).clamp(min=0.0)


def pdf_loss(logits: torch.Tensor, t: torch.Tensor, t_max: float, kind: str = "ce", label_sigma: float = 0.0) -> torch.Tensor:
    """Mean loss of logits [n, n_bins] against true t [n] (module docstring)."""
    n_bins = logits.shape[-1]
    y = target(t, n_bins, t_max, label_sigma)
    if kind == "ce":
        return -(y * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    if kind == "crps":
        dt = t_max / (n_bins - 1)
        cdf_pred = torch.cumsum(F.softmax(logits, dim=-1), dim=-1)
        return ((cdf_pred - torch.cumsum(y, dim=-1)) ** 2).sum(-1).mean() * dt
    msg = f"unknown p(z) loss {kind!r}; known: {', '.join(LOSSES)}"
    raise ValueError(msg)


def median_t(probs: torch.Tensor, t_max: float) -> torch.Tensor:
    """Median in t of node probabilities [n, n_bins] (CDF at the nodes interpolated linearly: the validation score's, within a fraction of a node of `cdf_quantiles`'s)."""
    n_bins = probs.shape[-1]
    dt = t_max / (n_bins - 1)
    cdf = torch.cumsum(probs, dim=-1) - 0.5 * probs - 0.5 * probs[:, :1]  # the CDF at each node
    cdf = cdf / cdf[:, -1:].clamp(min=1e-30)
    k = torch.searchsorted(cdf.contiguous(), torch.full((len(cdf), 1), 0.5, dtype=cdf.dtype, device=cdf.device)).clamp(1, n_bins - 1)
    lo, hi = cdf.gather(-1, k - 1), cdf.gather(-1, k)
    frac = ((0.5 - lo) / (hi - lo).clamp(min=1e-30)).clamp(0.0, 1.0)
    return ((k - 1 + frac) * dt).squeeze(-1)


def softmax(logits: torch.Tensor, temperature=1.0) -> torch.Tensor:
    """Node probabilities of logits [T, n, n_bins] divided by `temperature` (one number, or one per source [n])."""
    temperature = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
    if temperature.ndim == 1:
        temperature = temperature[None, :, None]
    return F.softmax(logits / temperature, dim=-1)


def mixture(logits: torch.Tensor, temperature=1.0) -> torch.Tensor:
    """The Monte Carlo mixture [n, n_bins] of logits [T, n, n_bins]: the mean of softmax(logits / temperature)."""
    return softmax(logits, temperature).mean(0)


def moments(probs: torch.Tensor, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of t [...] of node probabilities [..., n_bins]."""
    t = torch.linspace(0.0, t_max, probs.shape[-1], dtype=probs.dtype, device=probs.device)
    both = probs @ torch.stack([t, t * t], dim=-1)  # one pass over the probabilities, not two
    mean = both[..., 0]
    return mean, (both[..., 1] - mean**2).clamp(min=0.0)


def node_density(probs: np.ndarray, t_max: float) -> np.ndarray:
    """Density in t [1/t] at the nodes of node probabilities [..., n_bins] (hat functions)."""
    return np.asarray(probs, np.float64) * ((probs.shape[-1] - 1) / t_max)


def normalised_cells(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node probabilities scaled so that the piecewise-linear density integrates to 1 (a cell's mass is the mean of its ends), and the CDF at the nodes."""
    p = np.asarray(probs, np.float64)
    area = p.sum(-1, keepdims=True) - 0.5 * (p[..., :1] + p[..., -1:])
    p = p / np.where(area > 0, area, 1.0)
    return p, np.cumsum(p, axis=-1) - 0.5 * p - 0.5 * p[..., :1]


def cdf_quantiles(probs: np.ndarray, t_nodes: np.ndarray, levels) -> np.ndarray:
    """Quantiles in t [n, len(levels)] of node probabilities [n, n_bins]: exact for the piecewise-linear density."""
    p, cdf = normalised_cells(probs)
    levels = np.atleast_1d(np.asarray(levels, np.float64))
    k = np.clip((cdf[:, :, None] < levels[None, None, :]).sum(axis=1) - 1, 0, cdf.shape[1] - 2)  # [n, L]: the cell
    rows = np.arange(len(cdf))[:, None]
    # Within a cell the CDF is F_k + p_k s + (p_k+1 - p_k) s^2 / 2, s in [0, 1]: solve for s.
    r = np.maximum(levels[None, :] - cdf[rows, k], 0.0)
    a, b = 0.5 * (p[rows, k + 1] - p[rows, k]), p[rows, k]
    root = b + np.sqrt(np.maximum(b * b + 4.0 * a * r, 0.0))
    s_cell = np.clip(np.divide(2.0 * r, root, out=np.zeros_like(r), where=root > 0), 0.0, 1.0)
    return t_nodes[k] + s_cell * (t_nodes[1] - t_nodes[0])


def cdf_at(probs: np.ndarray, t_nodes: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Each row's CDF (node probabilities [n, n_bins], piecewise-linear density) at its own t [n]; 0 and 1 beyond the grid."""
    p, cdf = normalised_cells(probs)
    t = np.asarray(t, np.float64)
    u = np.clip(t / (t_nodes[1] - t_nodes[0]), 0.0, len(t_nodes) - 1.0)
    k = np.minimum(np.floor(u).astype(int), len(t_nodes) - 2)
    s_cell, rows = u - k, np.arange(len(cdf))
    out = cdf[rows, k] + p[rows, k] * s_cell + 0.5 * (p[rows, k + 1] - p[rows, k]) * s_cell**2
    return np.where(t < 0, 0.0, np.where(t > t_nodes[-1], 1.0, out))


def summarise_pdf(probs: np.ndarray, t_max: float, mean_t: np.ndarray, var_t: np.ndarray, point: str = "median") -> dict:
    """Catalogue columns from the mixture's node probabilities [n, n_bins] and each pass's moments [T, n] (module docstring)."""
    t_nodes = nodes(probs.shape[-1], t_max)
    levels = np.array([*QUANTILES.values(), *SIGMA_LEVELS])
    q = cdf_quantiles(probs, t_nodes, levels)
    if point == "median":
        t_best = q[:, list(QUANTILES).index("Z500")]
    elif point == "mode":
        t_best = _mode_t(probs, t_nodes)
    else:
        msg = f"unknown point estimate {point!r}; known: {', '.join(POINTS)}"
        raise ValueError(msg)
    z = np.expm1(t_best)
    half = 0.5 * (q[:, -1] - q[:, -2])
    out = {"Z": z, "ZERR": (1 + z) * half}
    out["ZERR_EPI"] = (1 + z) * np.asarray(mean_t, np.float64).std(axis=0, ddof=1)
    out["ZERR_ALE"] = (1 + z) * np.sqrt(np.asarray(var_t, np.float64).mean(axis=0))
    out.update({name: np.expm1(q[:, i]) for i, name in enumerate(QUANTILES)})
    out["ODDS"] = cdf_at(probs, t_nodes, t_best + np.log1p(ODDS_WIDTH)) - cdf_at(probs, t_nodes, t_best + np.log1p(-ODDS_WIDTH))
    return out


def _mode_t(probs: np.ndarray, t_nodes: np.ndarray) -> np.ndarray:
    """The most probable node, refined by the parabola through it and its neighbours."""
    k = np.clip(np.argmax(probs, axis=-1), 1, probs.shape[-1] - 2)
    rows = np.arange(len(probs))
    a, b, c = probs[rows, k - 1], probs[rows, k], probs[rows, k + 1]
    denom = a - 2 * b + c
    shift = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    return t_nodes[k] + np.clip(shift, -0.5, 0.5) * (t_nodes[1] - t_nodes[0])


def density_on(probs: np.ndarray, t_max: float, z_grid: np.ndarray) -> np.ndarray:
    """Densities per unit z [n, n_grid] on `z_grid` of node probabilities [n, n_bins] (linear between nodes, 0 beyond the grid)."""
    t_nodes = nodes(probs.shape[-1], t_max)
    dens_t = node_density(probs, t_max)
    t = np.log1p(z_grid)
    # Linear interpolation of every row at once: the same weights for each row.
    u = np.clip(t / (t_nodes[1] - t_nodes[0]), 0.0, len(t_nodes) - 1.0)
    k = np.minimum(np.floor(u).astype(int), len(t_nodes) - 2)
    w = u - k
    out = dens_t[:, k] * (1 - w) + dens_t[:, k + 1] * w
    out[:, t > t_nodes[-1]] = 0.0
    return out / (1.0 + z_grid)[None, :]
