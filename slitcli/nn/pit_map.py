"""PIT recalibration of p(z): each PDF's CDF passed through the held-out PIT's own CDF.

A temperature (`slitcli.nn.pdf_calibration`) fixes a PDF's width, not its shape or a
shift. Bordoloi, Lilly & Amara (2010, MNRAS 406, 881) remap the whole CDF instead: if G is
the CDF of the PIT values on held-out sources, then for a new source with CDF F the
recalibrated CDF is F' = G(F), whose PIT is uniform on the held-out sample by construction.
Here G is fitted separately in bins of SNR_GI (a faint source's PDF errs differently from a
bright one's) as a piecewise-linear function through the PIT's quantiles at `LEVELS`: more
knots in the tails, where the catastrophic outliers put their PIT values near 0 and 1.

On the grid of a p(z) head (node probabilities, a piecewise-linear density;
`slitcli.nn.pdf`) the new density at a node is the old one times G's mean slope over the
node's own half cells, F from the midpoint of the cell to its left to that of the cell to
its right; the result is renormalised. So the remap is local, keeps the grid and is exact
where F changes little across a cell.

Stored in a model card under ``calibration.pit_map``: ``snr_edges`` (lower edge of each
SNR bin, the first 0), ``levels`` and ``knots`` (one row of PIT quantiles per bin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slitcli.nn.pdf import normalised_cells
from slitcli.snr_bins import SNR_EDGES, bin_groups, bin_index

__all__ = ["LEVELS", "SNR_EDGES", "MIN_BIN_SOURCES", "PITMap", "fit_pit_map"]

#: Levels of G's knots: the PIT's quantiles at these are mapped to them.
#: Steps of 0.05 in the core (between knots G is linear, so a coarser grid cannot follow a
#: peaked PIT histogram), finer in the tails.
LEVELS = (0.0, 0.005, 0.01, 0.02, 0.03, *np.round(np.arange(0.05, 0.951, 0.05), 2).tolist(), 0.97, 0.98, 0.99, 0.995, 1.0)
#: A bin with fewer held-out sources shares a map with its neighbours (`fit_pit_map`): at
#: 150 sources the 5% quantile of the PIT is known to about +-0.02.
MIN_BIN_SOURCES = 150
#: Smallest step between knots (PIT units): keeps G's slope finite where PIT values tie.
_MIN_STEP = 1e-6


@dataclass(frozen=True)
class PITMap:
    """Piecewise-linear maps G of the PIT, one per SNR_GI bin.

    Attributes
    ----------
    snr_edges : tuple of float
        Lower edge of each SNR_GI bin; the first bin also takes anything below its edge.
    levels : tuple of float
        G's values at the knots, from 0 to 1.
    knots : tuple of tuple of float
        Per bin, the PIT values (0 to 1, increasing) at which G takes `levels`.
    """

    snr_edges: tuple[float, ...]
    levels: tuple[float, ...]
    knots: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        levels = np.asarray(self.levels, np.float64)
        if levels[0] != 0.0 or levels[-1] != 1.0 or np.any(np.diff(levels) <= 0):
            msg = "pit_map levels must increase from 0 to 1"
            raise ValueError(msg)
        if len(self.knots) != len(self.snr_edges) or np.any(np.diff(self.snr_edges) <= 0):
            msg = "pit_map needs one row of knots per SNR bin, and increasing snr_edges"
            raise ValueError(msg)
        for row in self.knots:
            x = np.asarray(row, np.float64)
            if x.shape != levels.shape or x[0] != 0.0 or x[-1] != 1.0 or np.any(np.diff(x) <= 0):
                msg = "each row of pit_map knots must increase from 0 to 1, one knot per level"
                raise ValueError(msg)

    @classmethod
    def from_card(cls, value: dict) -> PITMap:
        return cls(tuple(map(float, value["snr_edges"])), tuple(map(float, value["levels"])), tuple(tuple(map(float, row)) for row in value["knots"]))

    def to_card(self) -> dict:
        return {"snr_edges": list(self.snr_edges), "levels": list(self.levels), "knots": [list(row) for row in self.knots]}

    def apply(self, probs: np.ndarray, snr: np.ndarray) -> np.ndarray:
        """Remapped node probabilities [n, n_bins] of node probabilities `probs` [n, n_bins] (module docstring)."""
        p, cdf = normalised_cells(probs)
        # The CDF at every cell's midpoint, and 0 and 1 beyond the ends.
        mid = cdf[:, :-1] + 0.375 * p[:, :-1] + 0.125 * p[:, 1:]
        lo = np.concatenate([np.zeros((len(p), 1)), mid], axis=1)
        hi = np.concatenate([mid, np.ones((len(p), 1))], axis=1)
        b = bin_index(self.snr_edges, snr)
        out = np.empty_like(p)
        for k, row in enumerate(self.knots):
            m = b == k
            if not np.any(m):
                continue
            g_lo, g_hi = np.interp(lo[m], row, self.levels), np.interp(hi[m], row, self.levels)
            width = hi[m] - lo[m]
            # Where F is flat (no mass in the node's half cells) the slope is G's at that F.
            slope = np.where(width > 1e-12, (g_hi - g_lo) / np.where(width > 1e-12, width, 1.0), _slope_at(lo[m], row, self.levels))
            out[m] = p[m] * slope
        return normalised_cells(out)[0]


def _slope_at(f: np.ndarray, knots, levels) -> np.ndarray:
    """G's slope at CDF values `f`."""
    knots, levels = np.asarray(knots), np.asarray(levels)
    k = np.clip(np.searchsorted(knots, f, side="right") - 1, 0, len(knots) - 2)
    return (levels[k + 1] - levels[k]) / (knots[k + 1] - knots[k])


def fit_pit_map(pit: np.ndarray, snr: np.ndarray, snr_edges=SNR_EDGES, levels=LEVELS, min_sources: int = MIN_BIN_SOURCES) -> PITMap:
    """G per SNR bin from held-out PIT values `pit` [n] and their sources' SNR_GI [n].

    Bins are grouped from the brightest down until a group holds `min_sources` sources;
    each group's bins share the map fitted on all of the group's sources. A faintest group
    left short joins the group above it.
    """
    pit, snr = np.asarray(pit, np.float64), np.asarray(snr, np.float64)
    edges = np.asarray(snr_edges, np.float64)
    levels = np.asarray(levels, np.float64)
    rows = [None] * len(edges)
    for group, members in bin_groups(edges, snr, min_sources):
        x = np.quantile(pit[members], levels)
        x[0], x[-1] = 0.0, 1.0
        # Strictly increasing knots, kept inside [0, 1].
        x = np.minimum(np.maximum.accumulate(x + _MIN_STEP * np.arange(len(x))), 1.0 - _MIN_STEP * (len(x) - 1 - np.arange(len(x))))
        x[0], x[-1] = 0.0, 1.0
        for k in group:
            rows[k] = tuple(float(v) for v in x)
    return PITMap(tuple(float(e) for e in edges), tuple(float(v) for v in levels), tuple(rows))
