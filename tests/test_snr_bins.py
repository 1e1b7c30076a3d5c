"""SNR_GI bins of the per-bin calibrations."""

from __future__ import annotations

import numpy as np

from slitcli.snr_bins import bin_index, group_bins, per_source


def test_bin_index_by_lower_edges_with_faint_and_nan_in_the_first():
    edges = (0.0, 3.0, 5.0, 10.0)
    assert bin_index(edges, [-1.0, 0.5, 3.0, 4.9, 5.0, 10.0, 1e4, np.nan]).tolist() == [0, 0, 1, 1, 2, 3, 3, 0]


def test_group_bins_from_the_bright_end_and_short_faint_group_joins():
    assert group_bins([500, 200, 200, 200], 150) == [[3], [2], [1], [0]]
    assert group_bins([500, 200, 100, 60], 150) == [[3, 2], [1], [0]]
    assert group_bins([100, 200, 200, 200], 150) == [[3], [2], [1, 0]]
    assert group_bins([10, 10, 10, 10], 150) == [[3, 2, 1, 0]]


def test_per_source_values_by_bin_or_one_for_all():
    assert per_source((4.0, 2.0, 1.0), (0.0, 3.0, 10.0), [1.0, 5.0, 30.0]).tolist() == [4.0, 2.0, 1.0]
    assert per_source(2.5, (), [1.0, 30.0]).tolist() == [2.5, 2.5]
