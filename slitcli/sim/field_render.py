"""Rendering a field: each source's direct stamp, its dispersed tile in every exposure, and the noise.

Each source is prepared once (`prepare_source`: its stamp, spectrum through each
order's sensitivity, its rate in the direct image and its isolated-cutout SNR) and then
rendered into a small tile per exposure that is added into the frame (`render_exposure`),
so memory is one frame plus a tile. Noise, cosmic rays and saturation are added in blocks
of rows by the file writer (`slitcli.sim.field_files`).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

import numpy as np

from slitcli.instrument import HC_ERG_AA, Band, ImagingBand, Instrument, sensitivity
from slitcli.io.layout import DQ_JUMP_DET, band_layout
from slitcli.sim.disperse import disperse, disperse_kernel
from slitcli.sim.field_layout import Extent, FieldConfig, band_extent
from slitcli.sim.noise import (
    DQ_DO_NOT_USE,
    DQ_SATURATED,
    add_noise,
    noise_sigma,
    saturation_flags,
)
from slitcli.sim.simulate import SimulateConfig, band_snr, direct_stamp, simulate_band
from slitcli.sim.sources import Source
from slitcli.sim.wcs import world_to_pixel

__all__ = ["imaging_zeropoint", "PreparedSource", "prepare_source", "render_direct", "render_tiles", "render_exposure", "Detector", "noisy_block", "CR_FLAG_E"]



#: Cosmic-ray charge [e-] from which a pixel is flagged JUMP_DET | DO_NOT_USE.
CR_FLAG_E = 1.0
#: Sources rendered per batch of worker-thread tasks (bounds the tiles held at once).
_BATCH = 64
_AB_FNU = 3631e-23  # erg/s/cm2/Hz
_C_AA_S = 2.99792458e18

# ---------------------------------------------------------------- photometry of the direct image


def _imaging_sensitivity(instrument: Instrument, imaging: ImagingBand, wave_aa: np.ndarray) -> np.ndarray:
    """A T(lambda) lambda/(h c) of the imaging filter [e- cm2/erg]."""
    return instrument.collecting_area_cm2 * imaging.throughput(wave_aa) * wave_aa / HC_ERG_AA


def _filter_grid(imaging: ImagingBand) -> np.ndarray:
    return np.linspace(imaging.throughput.wave_aa[0], imaging.throughput.wave_aa[-1], 4001)


def imaging_zeropoint(instrument: Instrument, imaging: ImagingBand) -> tuple[float, float, float]:
    """Photometric keywords of the direct image: (ABZP, PHOTFLAM, PHOTPLAM).

    ABZP [mag] is the AB magnitude of a source giving 1 e-/s; PHOTFLAM
    [erg/s/cm2/Angstrom per e-/s] the flat f_lambda giving 1 e-/s; PHOTPLAM [Angstrom]
    the pivot wavelength, as HST's keywords of the same names.
    """
    wave = _filter_grid(imaging)
    sens = _imaging_sensitivity(instrument, imaging, wave)
    ab_rate = np.trapezoid(_AB_FNU * _C_AA_S / wave**2 * sens, wave)
    tput = imaging.throughput(wave)
    pivot = np.sqrt(np.trapezoid(tput * wave, wave) / np.trapezoid(tput / wave, wave))
    return float(2.5 * np.log10(ab_rate)), float(1.0 / np.trapezoid(sens, wave)), float(pivot)


def _direct_rate(instrument: Instrument, imaging: ImagingBand, source: Source) -> float:
    """Count rate [e-/s] of the whole source in the direct image."""
    wave = _filter_grid(imaging)
    flam = np.interp(wave, source.wave_aa, source.flam, left=0.0, right=0.0)
    return float(np.trapezoid(flam * _imaging_sensitivity(instrument, imaging, wave), wave))


# ---------------------------------------------------------------- per-source preparation


@dataclass
class PreparedSource:
    """A source ready to render: its stamps (slitless and imaging PSF), direct-image rate [e-/s] and isolated-cutout SNR per band."""

    source: Source
    stamp: np.ndarray
    image_stamp: np.ndarray
    direct_rate_e_s: float
    snr: dict


def prepare_source(source: Source, instrument: Instrument, imaging: ImagingBand, config: FieldConfig, seed: np.random.SeedSequence) -> PreparedSource:
    """Direct stamps, direct-image rate and the isolated-cutout SNR of one source."""
    stamp = direct_stamp(source, instrument, config.stamp_size)
    if imaging.psf_fwhm_arcsec == instrument.psf_fwhm_arcsec:
        image_stamp = stamp
    else:
        image_stamp = direct_stamp(source, instrument.replace(psf_fwhm_arcsec=imaging.psf_fwhm_arcsec), config.stamp_size)
    # The SNR the source has in an isolated cutout of `slitcli simulate` (first order,
    # 4 x 150 s combined, default 40 x 480 layout), drawn from the source's own seed.
    rng = np.random.default_rng(seed)
    sim = SimulateConfig(bands=config.bands, stamp_size=config.stamp_size, oversample=config.oversample, noiseless=config.noiseless)
    snr = {}
    for name in config.bands:
        layout = band_layout(instrument.band(name), (sim.cutout_height, sim.cutout_width))
        expected = simulate_band(stamp, source, instrument, layout, sim)
        sigma = noise_sigma(expected, instrument, layout.band)
        flags = saturation_flags(expected, instrument, layout.band)
        data = expected if config.noiseless else add_noise(expected, instrument, layout.band, rng)
        snr[name] = band_snr(data, sigma, flags, expected, layout)
    return PreparedSource(source, stamp, image_stamp, _direct_rate(instrument, imaging, source), snr)


# ---------------------------------------------------------------- rendering


def _tile_bounds(x: float, y: float, extent: Extent, shape: tuple[int, int]):
    r0 = max(int(np.floor(y + extent.dy_lo)), 0)
    r1 = min(int(np.ceil(y + extent.dy_hi)) + 1, shape[0])
    c0 = max(int(np.floor(x + extent.dx_lo)), 0)
    c1 = min(int(np.ceil(x + extent.dx_hi)) + 1, shape[1])
    return (r0, r1, c0, c1) if (r1 > r0 and c1 > c0) else None


def _render_dispersed(prep: PreparedSource, x: float, y: float, instrument: Instrument, band: Band, config: FieldConfig, extent: Extent, shape):
    """Tile (r0, c0, rate [e-/s]) of one source's dispersed light in one exposure, or None if it misses the detector."""
    bounds = _tile_bounds(x, y, extent, shape)
    if bounds is None:
        return None
    r0, r1, c0, c1 = bounds
    tile = np.zeros((r1 - r0, c1 - c0))
    s = prep.source
    for name in config.orders:
        order = band.order(name)
        density = s.flam * sensitivity(instrument, band, order, s.wave_aa)
        disperse(prep.stamp, x - c0, y - r0, order, s.wave_aa, density, tile.shape, oversample=config.oversample, out=tile)
    return r0, c0, tile


_ZERO = np.zeros(1)


def render_direct(prep: PreparedSource, x: float, y: float, shape):
    """Tile (r0, c0, rate [e-/s]) of one source in the direct image: its stamp placed at (x, y) with bilinear sharing."""
    size = prep.image_stamp.shape[0]
    bounds = _tile_bounds(x, y, Extent(-0.5 * size - 1, 0.5 * size + 1, -0.5 * size - 1, 0.5 * size + 1), shape)
    if bounds is None:
        return None
    r0, r1, c0, c1 = bounds
    tile = np.zeros((r1 - r0, c1 - c0))
    rows, cols = np.nonzero(prep.image_stamp)
    weights = np.ascontiguousarray(prep.image_stamp[rows, cols], dtype=np.float64)
    x0, y0 = x - c0 - 0.5 * (size - 1), y - r0 - 0.5 * (size - 1)
    disperse_kernel(rows.astype(np.int64), cols.astype(np.int64), weights, float(x0), float(y0), _ZERO, _ZERO, np.array([prep.direct_rate_e_s]), tile)
    return r0, c0, tile


def render_tiles(render, items, workers: int):
    """Yield render(*item) for each item, in order; worker threads render (the Numba kernel releases the GIL).

    At most `_BATCH` results are held at once; the order of the results, hence of the
    additions into a frame, does not depend on `workers`.
    """
    if workers <= 1:
        for item in items:
            yield render(*item)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), _BATCH):
            yield from pool.map(lambda item: render(*item), items[start : start + _BATCH])


def render_exposure(prepared: list, wcs, instrument: Instrument, band: Band, config: FieldConfig, *, workers: int = 1, progress=None) -> np.ndarray:
    """Expected count rate [e-/s, float64 (ny, nx)] of all sources' dispersed light in one exposure.

    Parameters
    ----------
    prepared : list of PreparedSource
        The sources (`prepare_source`).
    wcs : astropy.wcs.WCS
        The exposure's celestial WCS: a source's trace starts at its pixel position there.
    progress : callable(), optional
        Called once per source.
    """
    shape = (config.ny, config.nx)
    frame = np.zeros(shape)
    extent = band_extent(band, config.orders, config.stamp_size)
    x, y = world_to_pixel(wcs, [p.source.ra_deg for p in prepared], [p.source.dec_deg for p in prepared])
    items = [(p, float(x[i]), float(y[i])) for i, p in enumerate(prepared)]

    def render(p, xi, yi):
        return _render_dispersed(p, xi, yi, instrument, band, config, extent, shape)

    for tile in render_tiles(render, items, workers):
        if tile is not None:
            r0, c0, t = tile
            frame[r0 : r0 + t.shape[0], c0 : c0 + t.shape[1]] += t
        if progress is not None:
            progress()
    return frame


# ---------------------------------------------------------------- noise


@dataclass(frozen=True)
class Detector:
    """Noise parameters of one image: n reads of t seconds combined."""

    exposure_s: float
    n_exposures: int
    sky_e_per_s: float
    dark_e_per_s: float
    read_noise_e: float
    saturation_e: float

    @property
    def total_s(self) -> float:
        return self.exposure_s * self.n_exposures

    def blank_err(self) -> float:
        """1-sigma [e-/s] of a pixel without source light."""
        t = self.total_s
        return float(np.sqrt(t * (self.sky_e_per_s + self.dark_e_per_s) + self.n_exposures * self.read_noise_e**2) / t)


def noisy_block(rate: np.ndarray, det: Detector, rng, noiseless: bool, cosmics=None):
    """SCI, ERR [e-/s, float32] and DQ (int32) of a block of expected source rates [e-/s].

    Counts are Poisson(T (s + B + D)) plus cosmic-ray charge, clipped at the full well of
    every exposure, plus Gaussian read noise of sigma sqrt(n) R, less the expected
    T (B + D); ERR is the true sigma from the expected rate (cosmic rays excluded: their
    pixels are flagged). `cosmics` is (flat indices within the block, charges [e-]).
    """
    t, n = det.exposure_s, det.n_exposures
    total = det.total_s
    background = det.sky_e_per_s + det.dark_e_per_s
    s = np.clip(rate, 0.0, None)
    expected = total * (s + background)
    err = (np.sqrt(expected + n * det.read_noise_e**2) / total).astype(np.float32)
    saturated = t * (s + background) >= det.saturation_e
    if noiseless:
        dq = np.where(saturated, DQ_SATURATED | DQ_DO_NOT_USE, 0).astype(np.int32)
        return rate.astype(np.float32), err, dq
    counts = rng.poisson(expected).astype(np.float64)
    dq = np.zeros(rate.shape, np.int32)
    if cosmics is not None and cosmics[0].size:
        index, charge = cosmics
        counts.flat[index] += charge
        hit = index[charge >= CR_FLAG_E]
        dq.flat[hit] |= DQ_JUMP_DET | DQ_DO_NOT_USE
    well = n * det.saturation_e
    saturated |= counts >= well
    dq[saturated] |= DQ_SATURATED | DQ_DO_NOT_USE
    counts = np.minimum(counts, well)
    counts += rng.normal(0.0, np.sqrt(n) * det.read_noise_e, size=rate.shape)
    return ((counts - total * background) / total).astype(np.float32), err, dq


