"""Detector noise: Poisson source, sky and dark; read noise; saturation.

Counts over N exposures of t seconds each (T = N t) are Poisson(T (s + B + D)) plus
Gaussian read noise of sigma sqrt(N) R, from which the expected sky and dark T (B + D)
are subtracted. The per-pixel variance is T (s + B + D) + N R^2 [e-^2]. Images are
returned as count rates [e-/s]: divided by T.
"""

from __future__ import annotations

import numpy as np

from slitcli.instrument import Band, Instrument
from slitcli.io.layout import DQ_DO_NOT_USE, DQ_SATURATED

__all__ = ["DQ_DO_NOT_USE", "DQ_SATURATED", "noise_sigma", "add_noise", "saturation_flags"]



def noise_sigma(rate_e_s: np.ndarray, instrument: Instrument, band: Band) -> np.ndarray:
    """True 1-sigma noise [e-/s] of pixels whose expected source rate is `rate_e_s` [e-/s]."""
    t = instrument.total_exposure_s
    background = band.sky_e_per_s + instrument.dark_e_per_s
    variance = t * (np.clip(rate_e_s, 0.0, None) + background) + instrument.n_exposures * instrument.read_noise_e**2
    return np.sqrt(variance) / t


def saturation_flags(rate_e_s: np.ndarray, instrument: Instrument, band: Band) -> np.ndarray:
    """DQ bits (int32) for pixels whose expected charge per exposure reaches the full well."""
    per_exposure = instrument.exposure_time_s * (rate_e_s + band.sky_e_per_s + instrument.dark_e_per_s)
    return np.where(per_exposure >= instrument.saturation_e, DQ_SATURATED | DQ_DO_NOT_USE, 0).astype(np.int32)


def add_noise(
    rate_e_s: np.ndarray, instrument: Instrument, band: Band, rng: np.random.Generator
) -> np.ndarray:
    """A noisy, background-subtracted realisation [e-/s] of the expected source rate [e-/s].

    Saturated pixels are clipped at the full well of every exposure.
    """
    t = instrument.total_exposure_s
    background = band.sky_e_per_s + instrument.dark_e_per_s
    counts = rng.poisson(t * (np.clip(rate_e_s, 0.0, None) + background)).astype(np.float64)
    counts += rng.normal(0.0, np.sqrt(instrument.n_exposures) * instrument.read_noise_e, size=rate_e_s.shape)
    counts = np.minimum(counts, instrument.n_exposures * instrument.saturation_e)
    return (counts - t * background) / t
