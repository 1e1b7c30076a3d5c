"""Torch noise: the statistics of slitcli.sim.noise, per-source seeds, batch independence."""

import numpy as np
import pytest
import torch

from slitcli.sim.noise import noise_sigma, saturation_flags
from slitcli.sim.noise_torch import add_noise_torch, noise_sigma_torch, saturation_flags_torch, source_generators


def expected_rates(n=6, shape=(40, 480)):
    """Sources from blank to bright, with a saturating peak in the last one [e-/s]."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    profile = np.exp(-0.5 * ((y - 20.0) / 2.5) ** 2) * (0.5 + 0.5 * np.sin(x / 40.0) ** 2)
    rates = np.stack([profile * 10.0 ** (k - 3) for k in range(n)])
    rates[-1, 20, 100] = 900.0  # 150 s x 900 e-/s > 90,000 e- full well
    return torch.tensor(rates)


@pytest.mark.parametrize("poisson", [True, False], ids=["poisson", "gaussian"])
def test_noise_is_normalised_by_err(csst, poisson):
    band = csst.band("GV")
    rates = expected_rates()
    sci = add_noise_torch(rates, csst, band, source_generators(np.random.SeedSequence(11), range(len(rates))), poisson=poisson)
    err = noise_sigma_torch(rates, csst, band)
    usable = saturation_flags_torch(rates, csst, band) == 0
    pull = ((sci - rates) / err)[usable].numpy()
    assert pull.size > 100_000
    assert np.std(pull) == pytest.approx(1.0, abs=0.02)
    assert abs(np.mean(pull)) < 0.01
    bright = rates[usable].numpy() > 2.0  # shot noise of the source dominates
    assert bright.sum() > 5000
    assert np.std(pull[bright]) == pytest.approx(1.0, abs=0.03)


def test_counts_are_poisson(csst):
    """Without read noise, counts are integers with variance = mean and skewness 1/sqrt(mean)."""
    quiet = csst.replace(read_noise_e=0.0, dark_e_per_s=0.0)
    band = csst.band("GV")
    rates = torch.full((4, 40, 480), 0.02, dtype=torch.float64)  # with the sky, 198 + 12 = 210 e- over 600 s
    sci = add_noise_torch(rates, quiet, band, source_generators(np.random.SeedSequence(4), range(4)))
    t = quiet.total_exposure_s
    counts = (sci * t + t * band.sky_e_per_s).numpy().ravel()
    lam = t * (0.02 + band.sky_e_per_s)
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert counts.mean() == pytest.approx(lam, rel=0.002)
    assert counts.var() == pytest.approx(lam, rel=0.02)
    skew = ((counts - counts.mean()) ** 3).mean() / counts.std() ** 3
    assert skew == pytest.approx(1 / np.sqrt(lam), abs=0.02)


def test_err_and_dq_equal_the_numpy_model(csst):
    band = csst.band("GI")
    rates = expected_rates()
    np.testing.assert_allclose(noise_sigma_torch(rates, csst, band).numpy(), noise_sigma(rates.numpy(), csst, band), rtol=1e-14)
    dq = saturation_flags_torch(rates, csst, band).numpy()
    np.testing.assert_array_equal(dq, saturation_flags(rates.numpy(), csst, band))
    assert dq.dtype == np.int32 and dq[-1, 20, 100] == 3 and (dq != 0).sum() == 1


def test_saturated_pixels_are_clipped_at_the_full_well(csst):
    band = csst.band("GV")
    rates = expected_rates()
    sci = add_noise_torch(rates, csst, band, source_generators(np.random.SeedSequence(1), range(len(rates))))
    t = csst.total_exposure_s
    ceiling = (csst.n_exposures * csst.saturation_e - t * (band.sky_e_per_s + csst.dark_e_per_s)) / t
    assert float(sci[-1, 20, 100]) == pytest.approx(ceiling, rel=1e-12)


def test_same_cutouts_whatever_the_batch(csst):
    """Source i's noise depends on the seed and i only: one batch of 6 = batches of 2 and 4, bit for bit."""
    band = csst.band("GV")
    rates = expected_rates()
    seed = np.random.SeedSequence(7)
    whole = add_noise_torch(rates, csst, band, source_generators(seed, range(6)))
    parts = torch.cat([
        add_noise_torch(rates[:2], csst, band, source_generators(seed, range(2))),
        add_noise_torch(rates[2:], csst, band, source_generators(seed, range(2, 6))),
    ])
    assert torch.equal(whole, parts)
    # Source 3 alone, in its own batch of one.
    alone = add_noise_torch(rates[3:4], csst, band, source_generators(seed, [3]))
    assert torch.equal(alone[0], whole[3])
    # The same as SeedSequence.spawn's children; another seed differs.
    spawned = np.random.SeedSequence(7).spawn(6)
    assert source_generators(seed, [5])[0].initial_seed() == int(spawned[5].generate_state(1, np.uint64)[0])
    other = add_noise_torch(rates, csst, band, source_generators(np.random.SeedSequence(8), range(6)))
    assert not torch.equal(other, whole)


def test_one_generator_per_source_is_required(csst):
    with pytest.raises(ValueError, match="one generator per source"):
        add_noise_torch(expected_rates(3), csst, csst.band("GV"), source_generators(np.random.SeedSequence(0), range(2)))
