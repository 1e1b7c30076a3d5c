"""SNR_GI bins that get calibrations of their own (the PIT map, the hybrid's likelihood scale).

A network's or a likelihood's miscalibration changes with the signal: faint sources' errors
are dominated by noise that the model describes well, bright ones' by model error that it
does not. One scale fitted on all sources over-covers one end and under-covers the other,
so calibrations are fitted per bin of the published cuts, a bin with too few held-out
sources sharing its neighbours' fit.
"""

from __future__ import annotations

import numpy as np

from slitcli.errors import ConfigError

__all__ = ["SNR_EDGES", "bin_index", "group_bins", "bin_groups", "per_source", "check_per_bin", "header_text"]

#: Lower edges of the SNR_GI bins (those of the published cuts); the first takes anything fainter.
SNR_EDGES = (0.0, 3.0, 5.0, 10.0)


def bin_index(snr_edges, snr) -> np.ndarray:
    """Index of each source's SNR_GI bin, by the bins' lower edges (below the first or non-finite: the faintest)."""
    snr = np.nan_to_num(np.asarray(snr, np.float64), nan=-np.inf)
    return np.clip(np.searchsorted(np.asarray(snr_edges, np.float64), snr, side="right") - 1, 0, len(snr_edges) - 1)


def group_bins(counts, min_sources: int) -> list[list[int]]:
    """Bins grouped from the brightest down until a group holds `min_sources` sources (`counts` per bin); a faintest group left short joins the one above it."""
    counts = np.asarray(counts)
    groups, group = [], []
    for k in range(len(counts) - 1, -1, -1):
        group.append(k)
        if counts[group].sum() >= min_sources or k == 0:
            groups.append(group)
            group = []
    if len(groups) > 1 and counts[groups[-1]].sum() < min_sources:
        last = groups.pop()
        groups[-1] += last
    return groups


def bin_groups(snr_edges, snr, min_sources: int) -> list[tuple[list[int], np.ndarray]]:
    """The bins of `snr_edges` grouped by `group_bins` for sources of SNR_GI `snr`: each group's bin indices and the mask of its sources."""
    which = bin_index(snr_edges, snr)
    return [(group, np.isin(which, group)) for group in group_bins(np.bincount(which, minlength=len(snr_edges)), min_sources)]


def per_source(values, snr_edges, snr) -> np.ndarray:
    """Each source's value of a per-bin calibration `values` (one per bin of `snr_edges`; a scalar with no edges: the same for all)."""
    snr = np.asarray(snr, np.float64)
    if not snr_edges:
        return np.full(snr.shape, float(np.asarray(values).reshape(-1)[0]))
    return np.asarray(values, np.float64)[bin_index(snr_edges, snr)]


def check_per_bin(what: str, snr_edges, temperature, error_floor) -> tuple[np.ndarray, np.ndarray]:
    """`temperature` and `error_floor` as arrays, one value each per bin of `snr_edges` (one without edges); else `ConfigError` naming `what`."""
    temperature, error_floor = np.atleast_1d(temperature), np.atleast_1d(error_floor)
    if len(temperature) != max(len(snr_edges), 1) or len(error_floor) != len(temperature):
        msg = f"{what} needs one temperature and one error floor per SNR bin ({len(snr_edges)} edges), got {len(temperature)} and {len(error_floor)}"
        raise ConfigError(msg)
    return temperature, error_floor


def header_text(value):
    """A number as it is; a per-bin tuple as its comma-separated values, None as "calibrated" (a FITS header holds no lists)."""
    return ",".join("calibrated" if v is None else f"{v:.6g}" for v in value) if isinstance(value, tuple) else value
