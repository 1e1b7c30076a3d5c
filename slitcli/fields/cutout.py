"""Cutouts along each source's trace from full-frame exposures, combined into a sample file.

For each catalogue source and band, every exposure of that band maps the source's RA/DEC
through its celestial WCS to the detector, (x, y), and the band's cutout
(`slitcli.io.layout.band_layout`: the layout `slitcli simulate` writes) is placed so that
the source's direct position falls where the layout puts it, ``(x_direct_pix,
y_direct_pix)``.

**Sub-pixel positions.** The source's fractional pixel position on an exposure differs
from the layout's, and differs between dithered exposures. Cutouts are cut at integer
offsets, never resampled: resampling would correlate the noise of neighbouring pixels,
which the ERR cube (and the CNN, trained on independent pixels) cannot describe. The
source then sits ``r`` pixels right of (above) the layout's nominal position in one
exposure's cutout, with ``|r|`` up to about half a pixel. The integer offsets of a band's
exposures are chosen together (`align`): their fractional positions are taken on the
circle and the cut is made after the largest gap, so the residuals lie in the shortest
interval that holds them all (never wider than one pixel, for four random dithers about
half a pixel), then shifted by a whole pixel so that their mean is nearest 0. All
exposures are combined; the SOURCES table records the mean residual ``DX_<BAND>``,
``DY_<BAND>`` [pixel] (the combined source sits DX pixels right of the layout's nominal
position: a spectral feature at column c of the cutout's wavelength WCS lands at c + DX)
and ``SPREAD_<BAND>``, the largest distance of one exposure's residual from that mean
(the combination is the source smeared over that distance, small against the 4-pixel
FWHM of CSST's PSF). Keeping only the exposures whose residuals agree would throw away
most of a dithered set's depth.

**Combination.** Per pixel, inverse-variance weighted over the exposures with a good
value there (not ``DO_NOT_USE``, finite SCI, finite ERR > 0): SCI = sum(w s)/sum(w),
ERR = sum(w)^-1/2, w = ERR^-2; ``<BAND>_NEXP`` counts them. A pixel no exposure has a
good value for (off every detector, or flagged in all: cosmic rays, saturation) has
SCI = ERR = 0 and DQ = ``DO_NOT_USE`` with the OR of the exposures' flags; every other
pixel has DQ = 0.

Stage B (the contamination model) reuses `place_sources` and `cut_box`: a model frame
per exposure is cut at the same offsets and combined with the same weights (`combine`
returns them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slitcli.io.layout import DQ_DO_NOT_USE, BandLayout
from slitcli.sim.wcs import world_to_pixel

__all__ = ["CutoutConfig", "align", "Placement", "place_sources", "cut_box", "combine", "cut_source", "combine_frames"]


@dataclass(frozen=True)
class CutoutConfig:
    """Cutout geometry; sizes in pixels. The defaults are `slitcli.sim.simulate.SimulateConfig`'s."""

    bands: tuple[str, ...] = ("GV", "GI")
    cutout_height: int = 40
    cutout_width: int = 480
    stamp_size: int = 64
    chunk_size: int = 64
    noiseless: bool = False
    wavelength_shift_pix: float = 0.0

    def __post_init__(self):
        for key in ("cutout_height", "cutout_width", "stamp_size", "chunk_size"):
            if getattr(self, key) < 1:
                msg = f"{key} must be >= 1"
                raise ValueError(msg)


def align(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer cut offsets and residuals of one source's positions `u` [pixel] on several exposures.

    `u` is the position minus the layout's nominal one, per exposure. Returns (offsets,
    residuals) with u = offsets + residuals, offsets integers, the residuals in the
    shortest interval holding them all (on the circle of fractional parts) and their
    mean in [-0.5, 0.5).
    """
    u = np.asarray(u, np.float64)
    frac = u - np.floor(u)
    r = frac.copy()
    if u.size > 1:
        order = np.argsort(frac)
        fs = frac[order]
        gaps = np.diff(np.r_[fs, fs[0] + 1.0])
        j = int(np.argmax(gaps))
        if j < u.size - 1:  # the largest gap is inside [0, 1): the cluster wraps past 1
            r[order[: j + 1]] += 1.0
    r -= np.floor(r.mean() + 0.5)
    return np.rint(u - r).astype(np.int64), r


@dataclass
class Placement:
    """Where one band's cutouts of N sources lie on its K exposures.

    Attributes
    ----------
    r0, c0 : int64 [N, K]
        0-based detector row and column of each cutout's pixel (0, 0).
    used : bool [N, K]
        The cutout overlaps the exposure's detector.
    dx, dy : float [N]
        Mean sub-pixel residual over the used exposures [pixel]: the source sits there
        relative to the layout's nominal position (NaN where no exposure is used).
    spread : float [N]
        Largest distance of one used exposure's residual from (dx, dy) [pixel].
    """

    r0: np.ndarray
    c0: np.ndarray
    used: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    spread: np.ndarray


def _overlaps(r0, c0, shape, detector) -> np.ndarray:
    return (r0 < detector[0]) & (r0 + shape[0] > 0) & (c0 < detector[1]) & (c0 + shape[1] > 0)


def place_sources(ra_deg, dec_deg, layout: BandLayout, exposures) -> Placement:
    """Place the cutouts of sources at `ra_deg`, `dec_deg` on `exposures` (each with ``wcs`` and ``shape``).

    The integer offsets of each source's exposures are chosen together (`align`) among
    the exposures its cutout overlaps.
    """
    n, k = len(ra_deg), len(exposures)
    u, v = np.zeros((n, k)), np.zeros((n, k))
    for j, e in enumerate(exposures):
        x, y = world_to_pixel(e.wcs, ra_deg, dec_deg)
        u[:, j], v[:, j] = x - layout.x_direct_pix, y - layout.y_direct_pix
    shape = layout.shape
    finite = np.isfinite(u) & np.isfinite(v)
    uu, vv = np.where(finite, u, -1e9), np.where(finite, v, -1e9)
    detectors = [e.shape for e in exposures]
    nominal = np.stack([_overlaps(np.rint(vv[:, j]), np.rint(uu[:, j]), shape, detectors[j]) for j in range(k)], axis=1) if k else np.zeros((n, 0), bool)
    r0 = np.zeros((n, k), np.int64)
    c0 = np.zeros((n, k), np.int64)
    dx, dy, spread = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    used = np.zeros((n, k), bool)
    for i in range(n):
        js = np.nonzero(nominal[i] & finite[i])[0]
        if js.size == 0:
            continue
        c0[i, js], rx = align(uu[i, js])
        r0[i, js], ry = align(vv[i, js])
        ok = np.array([_overlaps(r0[i, j], c0[i, j], shape, detectors[j]) for j in js], bool)
        if not ok.any():
            continue
        used[i, js[ok]] = True
        rx, ry = rx[ok], ry[ok]
        dx[i], dy[i] = rx.mean(), ry.mean()
        spread[i] = float(np.max(np.hypot(rx - dx[i], ry - dy[i])))
    return Placement(r0, c0, used, dx, dy, spread)


def cut_box(image, r0: int, c0: int, shape: tuple[int, int], fill=0.0) -> np.ndarray:
    """The `shape` box of `image` whose pixel (0, 0) is `image`'s (r0, c0), `fill` off the image.

    `image` is anything sliced as ``image[r0:r1, c0:c1]`` with a ``shape``: a numpy
    array (a model frame) or a fitsio image HDU (read on demand, with ``get_dims``).
    """
    ny, nx = shape
    dims = tuple(image.get_dims()) if hasattr(image, "get_dims") else image.shape
    box = np.full(shape, fill, dtype=np.int64 if isinstance(fill, (int, np.integer)) else np.float64)
    a0, a1 = max(r0, 0), min(r0 + ny, dims[0])
    b0, b1 = max(c0, 0), min(c0 + nx, dims[1])
    if a1 > a0 and b1 > b0:
        box[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = image[a0:a1, b0:b1]
    return box


def combine(cuts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance combination of one source's cutouts from several exposures.

    Parameters
    ----------
    cuts : list of (sci, err, good, dq)
        Each exposure's cutout [e-/s] (`slitcli.fields.exposure.Exposure.region`).

    Returns
    -------
    sci, err : float32 [ny, nx]
        Weighted mean and its 1-sigma error [e-/s]; 0 where no exposure is good.
    dq : int32
        0 where some exposure is good, else ``DO_NOT_USE`` and the OR of the flags.
    nexp : int16
        Exposures with a good value at each pixel.
    weights : float64 [K, ny, nx]
        The normalised weights (sum 1 where any is good), for combining model frames
        cut at the same offsets.
    """
    sci = np.stack([c[0] for c in cuts])
    err = np.stack([c[1] for c in cuts])
    good = np.stack([c[2] for c in cuts])
    flags = np.bitwise_or.reduce(np.stack([c[3] for c in cuts]), axis=0)
    w = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
    wsum = w.sum(axis=0)
    nexp = good.sum(axis=0).astype(np.int16)
    any_good = nexp > 0
    weights = np.divide(w, wsum, out=np.zeros_like(w), where=any_good[None])
    out_sci = np.where(any_good, (weights * sci).sum(axis=0), 0.0).astype(np.float32)
    out_err = np.where(any_good, 1.0 / np.sqrt(np.where(any_good, wsum, 1.0)), 0.0).astype(np.float32)
    dq = np.where(any_good, 0, flags | DQ_DO_NOT_USE).astype(np.int32)
    return out_sci, out_err, dq, nexp, weights


def cut_source(exposures, placement: Placement, i: int, shape: tuple[int, int]):
    """Source `i`'s combined cutout from the exposures its placement uses, or None if it uses none.

    Returns
    -------
    (sci, err, dq, nexp, weights, used) : as `combine`, plus the indices of the exposures used
    """
    used = np.nonzero(placement.used[i])[0]
    if used.size == 0:
        return None
    cuts = [exposures[j].region(int(placement.r0[i, j]), int(placement.c0[i, j]), shape) for j in used]
    return (*combine(cuts), used)


def combine_frames(frames, placement: Placement, i: int, used: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Combine model frames (one per exposure, e-/s) into source `i`'s cutout with the data's weights.

    Each frame is cut where the data were (`placement`) and weighted as the data were
    (`combine`'s weights for exposures `used`): a model so combined is directly
    comparable to the combined SCI (stage B: the contamination model).
    """
    out = np.zeros(shape)
    for k, j in enumerate(used):
        out += weights[k] * cut_box(frames[j], int(placement.r0[i, j]), int(placement.c0[i, j]), shape, 0.0)
    return out
