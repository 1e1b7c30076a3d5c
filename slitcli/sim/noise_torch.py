"""Detector noise in Torch, batched, with one random generator per source.

The model of `slitcli.sim.noise`: over N exposures of t seconds (T = N t), counts are
Poisson(T (s + B + D)) plus Gaussian read noise of sigma sqrt(N) R, clipped at N times
the full well, minus the expected sky and dark T (B + D), divided by T. ERR is the true
sigma sqrt(T (s + B + D) + N R^2) / T [e-/s] and DQ flags pixels whose expected charge
per exposure reaches the full well (SATURATED | DO_NOT_USE).

Each source draws from its own `torch.Generator`, seeded from the run's seed and the
source's index (`source_generators`), so a cutout does not depend on which batch it was
rendered in. Torch's Poisson sampler is not NumPy's: for the same seed the noise differs
from the Numba engine's, with the same distribution.

With ``poisson=False`` the Poisson draw is replaced by a Gaussian of the same mean and
variance (one normal draw per pixel for shot and read noise together): about ten times
faster, and a fair approximation when every pixel expects tens of counts or more (the
CSST sky alone gives 200-300 e- per pixel in GV and GI over 600 s); its skewness is
missing (1/sqrt(200) = 0.07 for the sky) and counts are not integers.
"""

from __future__ import annotations

import numpy as np
import torch

from slitcli.instrument import Band, Instrument
from slitcli.sim.noise import DQ_DO_NOT_USE, DQ_SATURATED

__all__ = ["source_generators", "noise_sigma_torch", "saturation_flags_torch", "observe", "add_noise_torch"]


def source_generators(seed: np.random.SeedSequence, indices, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One Torch generator per source, seeded by the child `index` of `seed`.

    Child i is the i-th `SeedSequence.spawn` child of `seed`, built directly so that it
    does not depend on how many children were spawned before.
    """
    generators = []
    for index in indices:
        child = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, int(index)), pool_size=seed.pool_size)
        g = torch.Generator(device=device)
        g.manual_seed(int(child.generate_state(1, np.uint64)[0]))
        generators.append(g)
    return generators


def noise_sigma_torch(rate_e_s: torch.Tensor, instrument: Instrument, band: Band) -> torch.Tensor:
    """True 1-sigma noise [e-/s] of pixels whose expected source rate is `rate_e_s` [e-/s]."""
    t = instrument.total_exposure_s
    background = band.sky_e_per_s + instrument.dark_e_per_s
    variance = t * (rate_e_s.clamp(min=0.0) + background) + instrument.n_exposures * instrument.read_noise_e**2
    return variance.sqrt() / t


def saturation_flags_torch(rate_e_s: torch.Tensor, instrument: Instrument, band: Band) -> torch.Tensor:
    """DQ bits (int32) of pixels whose expected charge per exposure reaches the full well.

    The test of `slitcli.sim.noise.saturation_flags`, t (s + B + D) >= full well, solved
    for the source rate s once (equal but for rates within round-off of the threshold).
    """
    threshold = instrument.saturation_e / instrument.exposure_time_s - band.sky_e_per_s - instrument.dark_e_per_s
    return (rate_e_s >= threshold).to(torch.int32).mul_(DQ_SATURATED | DQ_DO_NOT_USE)


def observe(
    rate_e_s: torch.Tensor,
    instrument: Instrument,
    band: Band,
    generators: list[torch.Generator] | None,
    *,
    poisson: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SCI, ERR and DQ of a batch of expected source rates, as `simulate` writes them.

    Parameters
    ----------
    rate_e_s : tensor [B, ny, nx]
        Expected source count rates [e-/s].
    generators : list of torch.Generator, or None
        One per source, on the tensor's device; each is advanced by this call (a normal
        draw, then the Poisson draw). None: noiseless, SCI is `rate_e_s` itself.
    poisson : bool
        Poisson shot noise (True) or its Gaussian approximation (False).

    Returns
    -------
    sci : tensor [B, ny, nx]
        Background-subtracted count rate [e-/s], in the dtype of `rate_e_s`; saturated
        pixels are clipped at the full well of every exposure.
    err : tensor [B, ny, nx]
        True 1-sigma noise [e-/s].
    dq : int32 tensor [B, ny, nx]
    """
    t = instrument.total_exposure_s
    background = band.sky_e_per_s + instrument.dark_e_per_s
    read_var = instrument.n_exposures * instrument.read_noise_e**2
    charge = (rate_e_s.clamp(min=0.0) + background).mul_(t)  # expected e- over all exposures
    sigma = (charge + read_var).sqrt_()  # e-
    err = sigma / t
    dq = saturation_flags_torch(rate_e_s, instrument, band)
    if generators is None:
        return rate_e_s, err, dq
    if len(generators) != rate_e_s.shape[0]:
        msg = f"need one generator per source: {rate_e_s.shape[0]} sources, {len(generators)} generators"
        raise ValueError(msg)
    normal = torch.empty_like(charge)
    for i, g in enumerate(generators):
        torch.randn(charge.shape[1:], generator=g, out=normal[i])
    if poisson:
        counts = torch.stack([torch.poisson(charge[i], generator=g) for i, g in enumerate(generators)])
        counts.add_(normal, alpha=float(np.sqrt(read_var)))
    else:
        counts = charge.addcmul_(sigma, normal)
    counts.clamp_(max=instrument.n_exposures * instrument.saturation_e)
    return counts.sub_(t * background).div_(t), err, dq


def add_noise_torch(
    rate_e_s: torch.Tensor,
    instrument: Instrument,
    band: Band,
    generators: list[torch.Generator],
    *,
    poisson: bool = True,
) -> torch.Tensor:
    """Noisy, background-subtracted realisations [e-/s] of expected source rates [e-/s]: `observe`'s SCI."""
    return observe(rate_e_s, instrument, band, generators, poisson=poisson)[0]
