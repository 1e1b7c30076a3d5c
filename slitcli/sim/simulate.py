"""The slitless simulator: sources in, per-band 2D cutouts (SCI, ERR, DQ) out.

For each source: its direct image is resampled to the detector's pixel scale with
flux conservation, convolved with the PSF, and each band's orders are dispersed with
the source's spectrum times the order's sensitivity (`slitcli.sim.disperse`); noise is
drawn (`slitcli.sim.noise`) and the paper's SNR measured by optimal extraction with the
source's true spatial profile (`slitcli.extract`).

Randomness: the run's seed spawns one `numpy.random.SeedSequence` per chunk of
`SimulateConfig.chunk_size` sources, so the output does not depend on the number of
worker processes.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slitcli.extract import extract_optimal, snr_mean
from slitcli.instrument import Instrument, sensitivity
from slitcli.io.layout import BandLayout, band_layout
from slitcli.io.samplefile import SampleWriter
from slitcli.sim.disperse import disperse
from slitcli.sim.imaging import resample_convolve
from slitcli.sim.noise import add_noise, noise_sigma, saturation_flags
from slitcli.sim.population import PopulationConfig
from slitcli.sim.sources import Source

__all__ = [
    "SimulateConfig",
    "BandLayout",
    "band_layout",
    "write_sample",
    "direct_stamp",
    "simulate_band",
    "SimulatedChunk",
    "simulate_chunk",
    "iter_chunks",
]


@dataclass(frozen=True)
class SimulateConfig:
    """What to simulate and how; units in the names, sizes in pixels."""

    bands: tuple[str, ...] = ("GV", "GI")
    cutout_height: int = 40
    cutout_width: int = 480
    stamp_size: int = 64
    oversample: int = 5
    zeroth_order: bool = False
    noiseless: bool = False
    wavelength_shift_pix: float = 0.0
    chunk_size: int = 32
    population: PopulationConfig = field(default_factory=PopulationConfig)

    def __post_init__(self):
        if not self.bands:
            msg = "bands must name at least one band"
            raise ValueError(msg)
        for key in ("cutout_height", "cutout_width", "stamp_size", "oversample", "chunk_size"):
            if getattr(self, key) < 1:
                msg = f"{key} must be >= 1"
                raise ValueError(msg)


def direct_stamp(source: Source, instrument: Instrument, size: int) -> np.ndarray:
    """The source's direct image at the detector's scale, PSF-convolved.

    Each pixel holds the fraction of the source's total flux it receives; light
    beyond the `size` x `size` stamp is lost (the sum is then below 1).
    """
    image = np.clip(np.asarray(source.image, dtype=np.float64), 0.0, None)
    image = image / image.sum()
    stamp = resample_convolve(image, source.pixel_scale_arcsec, instrument.pixel_scale_arcsec, (size, size), instrument.psf_fwhm_arcsec / instrument.pixel_scale_arcsec)
    # The Gaussian's far tails leave a floor of tiny values around the source;
    # dispersing those pixels would cost time and carry no light.
    return np.where(stamp > 1e-9 * stamp.max(), stamp, 0.0)


def simulate_band(
    stamp: np.ndarray,
    source: Source,
    instrument: Instrument,
    layout: BandLayout,
    config: SimulateConfig,
) -> np.ndarray:
    """Expected (noiseless) count rate [e-/s] of one source in one band's cutout."""
    band = layout.band
    out = np.zeros(layout.shape, dtype=np.float64)
    for order in band.orders:
        if not (order.name == "+1" or (config.zeroth_order and order.name == "0")):
            continue
        rate_density = source.flam * sensitivity(instrument, band, order, source.wave_aa)
        disperse(
            stamp,
            # A wavelength-calibration error: the spectrum lands shifted along x while
            # the direct position and the cutout's nominal WCS stay where they were.
            layout.x_direct_pix + config.wavelength_shift_pix,
            layout.y_direct_pix,
            order,
            source.wave_aa,
            rate_density,
            layout.shape,
            oversample=config.oversample,
            out=out,
        )
    return out


@dataclass
class SimulatedChunk:
    """Simulated cutouts of consecutive sources.

    Attributes
    ----------
    start : int
        Index of the first source in the sample.
    sources : list of Source
    sci, err : dict of band name -> float32 array [n, ny, nx]
        Background-subtracted count rate and its 1-sigma error [e-/s].
    dq : dict of band name -> int32 array [n, ny, nx]
    model : dict of band name -> float32 array [n, ny, nx]
        Expected count rate [e-/s].
    direct : float32 array [n, s, s]
        PSF-convolved direct stamps (fraction of the source flux per pixel).
    snr : dict of band name -> float array [n]
    """

    start: int
    sources: list
    sci: dict
    err: dict
    dq: dict
    model: dict
    direct: np.ndarray
    snr: dict


def simulate_chunk(
    sources: list[Source],
    start: int,
    instrument: Instrument,
    config: SimulateConfig,
    seed: np.random.SeedSequence,
) -> SimulatedChunk:
    """Simulate a list of sources with one seed."""
    rng = np.random.default_rng(seed)
    shape = (config.cutout_height, config.cutout_width)
    layouts = [band_layout(instrument.band(name), shape) for name in config.bands]
    n = len(sources)
    sci = {lay.band.name: np.zeros((n, *shape), np.float32) for lay in layouts}
    err = {lay.band.name: np.zeros((n, *shape), np.float32) for lay in layouts}
    dq = {lay.band.name: np.zeros((n, *shape), np.int32) for lay in layouts}
    model = {lay.band.name: np.zeros((n, *shape), np.float32) for lay in layouts}
    snr = {lay.band.name: np.zeros(n) for lay in layouts}
    direct = np.zeros((n, config.stamp_size, config.stamp_size), np.float32)
    for i, source in enumerate(sources):
        stamp = direct_stamp(source, instrument, config.stamp_size)
        direct[i] = stamp
        for lay in layouts:
            name = lay.band.name
            expected = simulate_band(stamp, source, instrument, lay, config)
            sigma = noise_sigma(expected, instrument, lay.band)
            flags = saturation_flags(expected, instrument, lay.band)
            data = expected if config.noiseless else add_noise(expected, instrument, lay.band, rng)
            sci[name][i], err[name][i], dq[name][i], model[name][i] = data, sigma, flags, expected
            snr[name][i] = band_snr(data, sigma, flags, expected, lay)
    return SimulatedChunk(start, sources, sci, err, dq, model, direct, snr)


def band_snr(sci, err, dq, expected, layout: BandLayout) -> float:
    """The paper's SNR over the columns whose wavelength lies in the band."""
    flux, flux_err = extract_optimal(sci, err, dq, expected)
    wave = layout.wavelength(np.arange(layout.shape[1]))
    in_band = (wave >= layout.band.wave_min_aa) & (wave <= layout.band.wave_max_aa)
    return snr_mean(flux[in_band], flux_err[in_band])


SourceProvider = Callable[[int, int, np.random.Generator], list]


#: Rendering engines: the Numba kernel (reference) and the Torch convolution (`slitcli.sim.torch_engine`).
ENGINES = ("numba", "torch")


def _run_chunk(provider, index, start, count, instrument, config, seed_seq, engine="numba"):
    population_seed, noise_seed = seed_seq.spawn(2)
    sources = provider(start, count, np.random.default_rng(population_seed))
    if engine == "torch":
        from slitcli.sim.torch_engine import simulate_chunk_torch

        return simulate_chunk_torch(sources, start, instrument, config, noise_seed)
    return simulate_chunk(sources, start, instrument, config, noise_seed)


def iter_chunks(
    provider: SourceProvider,
    n: int,
    instrument: Instrument,
    config: SimulateConfig,
    seed: int,
    *,
    workers: int = 1,
    engine: str = "numba",
) -> Iterator[SimulatedChunk]:
    """Simulate `n` sources in chunks, in order.

    Parameters
    ----------
    provider : callable(start, count, rng) -> list of Source
        Gives sources `start` to `start + count - 1`, drawing any randomness from `rng`.
    n : int
        Number of sources.
    seed : int
        The run's seed.
    workers : int
        Worker processes (1: run here). At most 2 x `workers` chunks are in flight,
        so memory stays bounded whatever `n` is.
    engine : {"numba", "torch"}
        Rendering engine (`ENGINES`): the same sources and noiseless images (to
        round-off); the noise draws differ.
    """
    if engine not in ENGINES:
        msg = f"engine must be one of {', '.join(ENGINES)}, got {engine!r}"
        raise ValueError(msg)
    size = config.chunk_size
    starts = list(range(0, n, size))
    seeds = np.random.SeedSequence(seed).spawn(len(starts))
    jobs = [(provider, k, s, min(size, n - s), instrument, config, seeds[k], engine) for k, s in enumerate(starts)]
    if workers <= 1:
        for job in jobs:
            yield _run_chunk(*job)
        return
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = []
        next_job = 0
        while next_job < len(jobs) or pending:
            while next_job < len(jobs) and len(pending) < 2 * workers:
                pending.append(pool.submit(_run_chunk, *jobs[next_job]))
                next_job += 1
            yield pending.pop(0).result()


def write_sample(
    path: str | Path,
    provider,
    n: int,
    instrument: Instrument,
    config: SimulateConfig,
    seed: int,
    *,
    provenance: dict | None = None,
    overwrite: bool = False,
    workers: int = 1,
    engine: str = "numba",
    progress=None,
) -> Path:
    """Simulate `n` sources from `provider` into the sample file `path`.

    Parameters
    ----------
    provider : callable(start, count, rng) -> list of Source
    engine : {"numba", "torch"}
        Rendering engine (`iter_chunks`), recorded as the ``ENGINE`` header card.
    progress : callable(n_done), optional
        Called after each chunk with the number of sources written so far.

    Returns
    -------
    Path
        The written file. On any error nothing is left at `path` (an existing file
        there is untouched) and the temporary file is removed.
    """
    if n < 1:
        msg = f"number of sources must be >= 1, got {n}"
        raise ValueError(msg)
    shape = (config.cutout_height, config.cutout_width)
    layouts = [band_layout(instrument.band(name), shape) for name in config.bands]
    cards = {"SEED": (seed, "Seed of the run's random numbers"), "ENGINE": (engine, "Rendering engine (numba or torch)")}
    cards.update(provenance or {})
    with SampleWriter(path, n, instrument, config, layouts, cards, overwrite=overwrite) as writer:
        done = 0
        for chunk in iter_chunks(provider, n, instrument, config, seed, workers=workers, engine=engine):
            writer.write(chunk)
            done += len(chunk.sources)
            if progress is not None:
                progress(done)
        return writer.close()
