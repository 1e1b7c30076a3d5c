"""The Torch engine of the simulator: batches of sources to cutouts by convolution.

`render` turns PSF-convolved direct stamps and spectra on one wavelength grid into
each band's expected image, noisy image, ERR and DQ, all as tensors on one device
(`slitcli.sim.convolve` for the dispersion, `slitcli.sim.noise_torch` for the noise).
`simulate_chunk_torch` is `slitcli.sim.simulate.simulate_chunk` on this engine: the same
stamps, the same SNR measurement (NumPy), the same output; only the noise draws differ
(one Torch generator per source instead of one NumPy generator per chunk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from slitcli.instrument import Instrument, sensitivity
from slitcli.io.layout import BandLayout, band_layout
from slitcli.sim.convolve import disperse_batch
from slitcli.sim.noise_torch import observe, source_generators

__all__ = ["BandImages", "render", "simulate_chunk_torch"]


@dataclass
class BandImages:
    """One band's cutouts of a batch, tensors [B, ny, nx].

    Attributes
    ----------
    model : expected count rate [e-/s]
    sci : background-subtracted count rate [e-/s] (`model` itself when noiseless)
    err : 1-sigma error of `sci` [e-/s]
    dq : int32 data-quality bits
    """

    model: torch.Tensor
    sci: torch.Tensor
    err: torch.Tensor
    dq: torch.Tensor


def render(
    stamps: torch.Tensor,
    wave_aa: np.ndarray,
    flam: torch.Tensor,
    instrument: Instrument,
    layouts: list[BandLayout],
    config,
    generators: list[torch.Generator] | None,
    *,
    shift_pix: np.ndarray | None = None,
    poisson: bool = True,
) -> dict[str, BandImages]:
    """Render a batch of sources into every band's cutouts.

    Parameters
    ----------
    stamps : tensor [B, s, s]
        PSF-convolved direct stamps (fraction of the source flux per pixel), in the
        dtype and on the device to compute with.
    wave_aa : array [nw]
        Observed-frame wavelength grid shared by the batch [Angstrom].
    flam : tensor [B, nw]
        Flux densities [erg/s/cm2/Angstrom].
    layouts : list of BandLayout
    config : SimulateConfig
        Uses `oversample`, `zeroth_order`, `noiseless` and `wavelength_shift_pix`.
    generators : list of torch.Generator, or None
        One per source (`noise_torch.source_generators`), drawn band after band; None
        only when `config.noiseless`.
    shift_pix : array [B], optional
        Per-source shifts of the spectra along x [pixel], added to
        `config.wavelength_shift_pix`.
    poisson : bool
        Poisson shot noise, or its Gaussian approximation (`noise_torch`).

    Returns
    -------
    dict of band name -> BandImages
    """
    if generators is None and not config.noiseless:
        msg = "noisy cutouts need one generator per source (noise_torch.source_generators)"
        raise ValueError(msg)
    flam = torch.as_tensor(flam, dtype=torch.float64, device=stamps.device)
    shift = config.wavelength_shift_pix + (0.0 if shift_pix is None else np.asarray(shift_pix, dtype=np.float64))
    out = {}
    for layout in layouts:
        band = layout.band
        model = None
        for order in band.orders:
            if not (order.name == "+1" or (config.zeroth_order and order.name == "0")):
                continue
            sens = torch.as_tensor(sensitivity(instrument, band, order, wave_aa), device=stamps.device)
            # A wavelength-calibration error moves the spectrum, not the direct position or the WCS.
            image = disperse_batch(
                stamps, layout.x_direct_pix + shift, layout.y_direct_pix, order, wave_aa, flam * sens, layout.shape,
                oversample=config.oversample,
            )
            model = image if model is None else model + image
        sci, err, dq = observe(model, instrument, band, None if config.noiseless else generators, poisson=poisson)
        out[band.name] = BandImages(model, sci, err, dq)
    return out


def simulate_chunk_torch(sources: list, start: int, instrument: Instrument, config, seed: np.random.SeedSequence, *, device: str = "cpu"):
    """`slitcli.sim.simulate.simulate_chunk` with the Torch engine (float64).

    Source i of the chunk draws its noise from the i-th child of `seed`. Sources are
    rendered in batches of one wavelength grid. Torch runs on one thread here (restored
    after): the chunk's NumPy work (population draw, stamps, SNR) alternates with it, and
    Torch's and NumPy's thread pools spinning on the same cores slow each other down
    (on 2 cores, 2 Torch threads made `simulate` five times slower than one); worker
    processes (`iter_chunks(workers=...)`) use more cores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _simulate_chunk_torch(sources, start, instrument, config, seed, device)
    finally:
        torch.set_num_threads(threads)


def _simulate_chunk_torch(sources, start, instrument, config, seed, device):
    from slitcli.sim.simulate import SimulatedChunk, band_snr, direct_stamp

    shape = (config.cutout_height, config.cutout_width)
    layouts = [band_layout(instrument.band(name), shape) for name in config.bands]
    n = len(sources)
    names = [lay.band.name for lay in layouts]
    sci = {k: np.zeros((n, *shape), np.float32) for k in names}
    err = {k: np.zeros((n, *shape), np.float32) for k in names}
    dq = {k: np.zeros((n, *shape), np.int32) for k in names}
    model = {k: np.zeros((n, *shape), np.float32) for k in names}
    snr = {k: np.zeros(n) for k in names}
    direct = np.stack([direct_stamp(s, instrument, config.stamp_size) for s in sources]) if n else np.zeros((0, config.stamp_size, config.stamp_size))
    generators = source_generators(seed, range(n), device)
    groups: dict[bytes, list[int]] = {}
    for i, s in enumerate(sources):
        groups.setdefault(np.asarray(s.wave_aa, dtype=np.float64).tobytes(), []).append(i)
    for members in groups.values():
        wave = np.asarray(sources[members[0]].wave_aa, dtype=np.float64)
        flam = np.stack([np.asarray(sources[i].flam, dtype=np.float64) for i in members])
        stamps = torch.as_tensor(direct[members], dtype=torch.float64, device=device)
        images = render(stamps, wave, flam, instrument, layouts, config, [generators[i] for i in members])
        for lay in layouts:
            im = images[lay.band.name]
            arrays = [x.cpu().numpy() for x in (im.sci, im.err, im.dq, im.model)]
            k = lay.band.name
            sci[k][members], err[k][members], dq[k][members], model[k][members] = arrays
            for j, i in enumerate(members):
                snr[k][i] = band_snr(arrays[0][j], arrays[1][j], arrays[2][j], arrays[3][j], lay)
    return SimulatedChunk(start, sources, sci, err, dq, model, direct.astype(np.float32), snr)
