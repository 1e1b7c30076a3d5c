"""The PIT map: remapped PDFs have a uniform PIT on fresh sources drawn like the fit's."""

import numpy as np
import pytest

from slitcli.nn import pdf
from slitcli.nn.pdf_calibration import pit_ks
from slitcli.nn.pit_map import LEVELS, PITMap, fit_pit_map

T_MAX = float(np.log(3.0))
NODES = pdf.nodes(1100, T_MAX)


def _sample(n, seed, shift, width, snr):
    """Gaussian PDFs in t (sigma 0.005) on the head's grid; truths drawn `shift` sigma off and `width` times wider."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.2, 0.8, n)
    sigma = 0.005
    probs = np.exp(-0.5 * ((NODES[None, :] - centre[:, None]) / sigma) ** 2)
    truth = centre + sigma * (shift + width * rng.standard_normal(n))
    return probs, truth, np.full(n, float(snr))


def _pit(probs, truth):
    return pdf.cdf_at(probs, NODES, truth)


def test_remap_makes_a_shifted_too_narrow_pit_uniform():
    probs, truth, snr = _sample(3000, 0, shift=0.6, width=1.5, snr=2.0)
    before = _pit(probs, truth)
    pit_map = fit_pit_map(before, snr)
    fresh, fresh_truth, fresh_snr = _sample(3000, 1, shift=0.6, width=1.5, snr=2.0)
    assert pit_ks(_pit(fresh, fresh_truth)) > 0.2
    after = _pit(pit_map.apply(fresh, fresh_snr), fresh_truth)
    # A uniform sample of 3000 has KS < 0.03 with probability > 99.5%.
    assert pit_ks(after) < 0.03
    # The remapped node probabilities are a density on the grid: positive, integrating to 1.
    mapped = pit_map.apply(fresh, fresh_snr)
    assert np.all(mapped >= 0)
    np.testing.assert_allclose(pdf.cdf_at(mapped, NODES, np.full(len(mapped), NODES[-1])), 1.0, atol=1e-12)


def test_each_snr_bin_gets_its_own_map():
    faint = _sample(2000, 2, shift=0.0, width=2.0, snr=2.0)  # too narrow
    bright = _sample(2000, 3, shift=0.0, width=0.5, snr=20.0)  # too wide
    probs, truth, snr = (np.concatenate([a, b]) for a, b in zip(faint, bright, strict=True))
    pit_map = fit_pit_map(_pit(probs, truth), snr)
    faint2 = _sample(2000, 4, shift=0.0, width=2.0, snr=2.0)
    bright2 = _sample(2000, 5, shift=0.0, width=0.5, snr=20.0)
    for p, t, s in (faint2, bright2):
        assert pit_ks(_pit(p, t)) > 0.1
        assert pit_ks(_pit(pit_map.apply(p, s), t)) < 0.035
    # 68% coverage of the remapped PDFs within 0.03 of nominal in both bins.
    for p, t, s in (faint2, bright2):
        u = _pit(pit_map.apply(p, s), t)
        assert abs(np.mean(np.abs(2 * u - 1) <= 0.6827) - 0.6827) < 0.03


def test_identity_map_changes_nothing_and_short_bins_share_a_map():
    probs, _truth, snr = _sample(50, 6, 0.0, 1.0, 4.0)
    identity = PITMap((0.0,), LEVELS, (LEVELS,))
    np.testing.assert_allclose(identity.apply(probs, snr), pdf.normalised_cells(probs)[0], rtol=1e-12, atol=1e-15)
    rng = np.random.default_rng(7)
    pit = rng.uniform(size=400) ** 2
    snr = np.r_[np.full(200, 2.0), np.full(100, 4.0), np.full(60, 7.0), np.full(40, 12.0)]
    fitted = fit_pit_map(pit, snr, snr_edges=(0.0, 3.0, 5.0, 10.0), min_sources=150)
    # The three bright bins (200 sources together) share one map, fitted on all of them.
    assert fitted.knots[1] == fitted.knots[2] == fitted.knots[3] != fitted.knots[0]
    np.testing.assert_allclose(fitted.knots[1][1:-1], np.quantile(pit[200:], LEVELS)[1:-1], atol=1e-4)
    # A faint bin left short joins the group above it.
    short = fit_pit_map(pit, np.r_[np.full(100, 2.0), np.full(300, 12.0)], snr_edges=(0.0, 10.0), min_sources=150)
    assert short.knots[0] == short.knots[1]
    assert PITMap.from_card(fitted.to_card()) == fitted


def test_invalid_maps_are_refused():
    with pytest.raises(ValueError):
        PITMap((0.0,), (0.0, 0.5, 1.0), ((0.0, 0.7, 0.6),))
    with pytest.raises(ValueError):
        PITMap((0.0, 3.0), (0.0, 1.0), ((0.0, 1.0),))
