"""Cosmic rays in one exposure: how many, where, how much charge.

A simple model with documented numbers (see docs/simulate.md, "Fields"):

- Rate: 1.2 events per cm2 per second, the low-Earth-orbit rate HST's CCDs see
  (WF/PC-1: about 1.7 events per second on an 800 x 800 CCD of 15 um pixels, 1.44 cm2;
  HST Data Handbook; consistent with ACS/WFC's 1.5-3% of pixels hit in 1000 s). CSST
  flies in a similar orbit. Events per exposure are Poisson with mean
  rate x detector area x exposure time.
- Detector area from the pixel size: 10 um pixels (assumption: CSST's 9216 x 9232 CCDs
  with the 28 m focal length give 0.0737 arcsec per 10 um).
- Charge: 500 e- plus a log-normal part of median 500 e- (sigma of ln 0.8), so none
  below 500 e- and a median of 1000 e-, as ACS/WFC's (ACS Instrument Handbook: negligible
  events below 500 e-, median about 1000 e-).
- Track: a straight segment from a uniform random point in a uniform random direction,
  of projected length 1.5 tan(theta) pixels (depleted depth 1.5 pixels: assumption) for
  an isotropic flux through the detector plane (cos theta = sqrt(U), U uniform), at most
  30 pixels; the charge is spread evenly along it in 0.1-pixel steps, each step shared
  bilinearly between the four pixels it straddles. An event puts more than 10 e- in a
  median of 6 pixels (ACS/WFC: strongly peaked at 4-5 pixels, long tail).

The field simulator flags every pixel that receives at least 1 e- in DQ (JWST ``JUMP_DET``
and ``DO_NOT_USE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CosmicRays", "draw_cosmic_rays", "expected_events"]

_STEP_PIX = 0.1
_MAX_LENGTH_PIX = 30.0
_DEPTH_PIX = 1.5


@dataclass(frozen=True)
class CosmicRays:
    """Charge deposited by cosmic rays in one exposure.

    Attributes
    ----------
    index : int64 array
        Flat (row-major, y * nx + x) indices of the hit pixels, increasing, unique.
    charge_e : float64 array
        Charge [e-] each of those pixels received.
    n_events : int
        Number of cosmic rays.
    """

    index: np.ndarray
    charge_e: np.ndarray
    n_events: int

    def rows(self, nx: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices relative to row `y0`, and charges, of the hits in rows `y0` to `y1` - 1."""
        lo, hi = np.searchsorted(self.index, [y0 * nx, y1 * nx])
        return self.index[lo:hi] - y0 * nx, self.charge_e[lo:hi]


def expected_events(shape: tuple[int, int], exposure_s: float, rate_per_cm2_s: float, pixel_size_um: float) -> float:
    """Mean number of cosmic rays on a detector of `shape` (ny, nx) pixels in `exposure_s` seconds."""
    area_cm2 = shape[0] * shape[1] * (pixel_size_um * 1e-4) ** 2
    return rate_per_cm2_s * area_cm2 * exposure_s


def draw_cosmic_rays(
    shape: tuple[int, int],
    exposure_s: float,
    rng: np.random.Generator,
    *,
    rate_per_cm2_s: float = 1.2,
    pixel_size_um: float = 10.0,
) -> CosmicRays:
    """Draw the cosmic rays of one exposure (module docstring for the model)."""
    ny, nx = shape
    n = int(rng.poisson(expected_events(shape, exposure_s, rate_per_cm2_s, pixel_size_um)))
    if n == 0:
        return CosmicRays(np.zeros(0, np.int64), np.zeros(0), 0)
    x0 = rng.uniform(0.0, nx, n) - 0.5
    y0 = rng.uniform(0.0, ny, n) - 0.5
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    cos_theta = np.sqrt(rng.uniform(0.0, 1.0, n))
    with np.errstate(divide="ignore"):
        length = np.minimum(_DEPTH_PIX * np.sqrt(1.0 - cos_theta**2) / cos_theta, _MAX_LENGTH_PIX)
    charge = 500.0 + 500.0 * np.exp(0.8 * rng.standard_normal(n))
    steps = np.maximum(np.ceil(length / _STEP_PIX).astype(np.int64), 1)
    event = np.repeat(np.arange(n), steps)
    first = np.cumsum(steps) - steps
    t = (np.arange(event.size) - first[event] + 0.5) / steps[event]  # position along the track, 0..1
    x = x0[event] + t * length[event] * np.cos(phi[event])
    y = y0[event] + t * length[event] * np.sin(phi[event])
    q = charge[event] / steps[event]
    ix, iy = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - ix, y - iy
    cols = np.concatenate([ix, ix + 1, ix, ix + 1])
    rows = np.concatenate([iy, iy, iy + 1, iy + 1])
    share = np.concatenate([q * (1 - fx) * (1 - fy), q * fx * (1 - fy), q * (1 - fx) * fy, q * fx * fy])
    keep = (cols >= 0) & (cols < nx) & (rows >= 0) & (rows < ny) & (share > 0)
    flat = rows[keep] * nx + cols[keep]
    index, inverse = np.unique(flat, return_inverse=True)
    return CosmicRays(index, np.bincount(inverse, weights=share[keep], minlength=index.size), n)
