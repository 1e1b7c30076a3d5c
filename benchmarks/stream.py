"""Render rate of training cutouts: the Torch engine against the Numba path, same sources.

Run: python benchmarks/stream.py [-n 256] [--batch 128]

Draws `n` default-population sources once, makes their PSF-convolved direct stamps once,
then renders both bands (GV + GI, 40 x 480 cutouts, 64 x 64 stamps, noise, ERR and DQ
included; no SNR measurement, no file) with
- the Numba path of `simulate` (`simulate_band` + `slitcli.sim.noise`, one source at a time),
- the Torch engine (`slitcli.sim.torch_engine.render`, batches of `--batch`), float32 and
  float64, with Poisson noise or its Gaussian approximation, on 1 and 2 threads,
- the Torch engine in 2 processes of 1 thread each (as 2 DataLoader workers would run),
- the training stream (`slitcli.nn.stream.TrainingStream`, default mix, batches of 64, 1
  thread): sources drawn, SEDs varied, nuisances added and rendered, SNR measured.
Prints cutouts per second (one source = both bands), the ratio to the Numba path,
where the Torch engine's time goes, and what the inputs cost (population draw, stamps).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
import torch

from slitcli.instrument import load_instrument, sensitivity
from slitcli.io.layout import band_layout
from slitcli.sim.convolve import _convolve_straight, spectral_samples_batch, trace_kernel
from slitcli.sim.noise import add_noise, noise_sigma, saturation_flags
from slitcli.sim.noise_torch import observe, source_generators
from slitcli.sim.population import PopulationConfig, draw_sources
from slitcli.sim.simulate import SimulateConfig, direct_stamp, simulate_band
from slitcli.sim.torch_engine import render
from timing import best_of



def numba_render(stamps, sources, instrument, layouts, config, rng):
    for stamp, source in zip(stamps, sources):
        for lay in layouts:
            expected = simulate_band(stamp, source, instrument, lay, config)
            noise_sigma(expected, instrument, lay.band), saturation_flags(expected, instrument, lay.band)
            add_noise(expected, instrument, lay.band, rng)


def torch_render(stamps, wave, flam, instrument, layouts, config, batch, poisson):
    seed = np.random.SeedSequence(0)
    for k in range(0, stamps.shape[0], batch):
        gens = source_generators(seed, range(k, min(k + batch, stamps.shape[0])))
        render(stamps[k : k + batch], wave, flam[k : k + batch], instrument, layouts, config, gens, poisson=poisson)


def stages(stamps, wave, flam, instrument, layouts, config, batch):
    """Seconds per stage of the Torch engine over all sources (float32, 1 thread)."""
    names = ("spectral samples", "kernel binning", "convolution", "ERR + DQ only", "+ Gaussian noise", "+ Poisson noise")
    t = dict.fromkeys(names, 0.0)
    seed = np.random.SeedSequence(0)
    ny, nx = config.cutout_height, config.cutout_width
    for k in range(0, stamps.shape[0], batch):
        st, fl = stamps[k : k + batch], torch.as_tensor(flam[k : k + batch])
        hs, ws = st.shape[1:]
        for lay in layouts:
            order = lay.band.first_order
            x0 = lay.x_direct_pix - 0.5 * (ws - 1)
            dx_lo = np.array([max(-x0 - ws - 1.0, float(order.offset_of_wavelength(wave[0])))])
            dx_hi = np.array([min(nx - x0 + 1.0, float(order.offset_of_wavelength(wave[-1])))])
            clock = [time.perf_counter()]
            dx, _, rate = spectral_samples_batch(order, wave, fl * torch.as_tensor(sensitivity(instrument, lay.band, order, wave)), dx_lo, dx_hi, config.oversample)
            clock.append(time.perf_counter())
            profile, _ = trace_kernel(x0 + dx, None, rate, (hs, ws), (ny, nx))
            clock.append(time.perf_counter())
            y = lay.y_direct_pix - 0.5 * (hs - 1)
            model = _convolve_straight(st, profile[:, 0].to(st.dtype), int(np.floor(y)), y - np.floor(y), (ny, nx))
            clock.append(time.perf_counter())
            observe(model, instrument, lay.band, None)
            clock.append(time.perf_counter())
            observe(model, instrument, lay.band, source_generators(seed, range(st.shape[0])), poisson=False)
            clock.append(time.perf_counter())
            observe(model, instrument, lay.band, source_generators(seed, range(st.shape[0])), poisson=True)
            clock.append(time.perf_counter())
            for name, a, b in zip(names, clock[:-1], clock[1:]):
                t[name] += b - a
    return t


def _worker(args):
    stamps, wave, flam, instrument, layouts, config, batch, poisson, barrier = args
    torch.set_num_threads(1)
    torch_render(stamps[:batch], wave, flam[:batch], instrument, layouts, config, batch, poisson)  # warm
    barrier.wait()
    return best_of(lambda: torch_render(stamps, wave, flam, instrument, layouts, config, batch, poisson), 2)


def two_processes(stamps, wave, flam, instrument, layouts, config, batch, poisson):
    """Sources per second of two spawned processes of one thread, each rendering half, at once."""
    context = multiprocessing.get_context("spawn")
    half = stamps.shape[0] // 2
    with context.Manager() as manager, context.Pool(2) as pool:
        barrier = manager.Barrier(2)
        parts = [(stamps[i * half : (i + 1) * half], wave, flam[i * half : (i + 1) * half], instrument, layouts, config, batch, poisson, barrier) for i in range(2)]
        seconds = pool.map(_worker, parts)
    return 2 * half / max(seconds)


def stream_batches(batch: int, items: int) -> float:
    """Items (batches of `batch` sources) per second of the training stream, default mix, this thread."""
    from slitcli.nn.stream import StreamConfig, TrainingStream

    stream = TrainingStream(StreamConfig(batch_size=batch))
    stream.item(0)  # loads the SED and shape libraries
    t0 = time.perf_counter()
    for k in range(1, items + 1):
        stream.item(k)
    return items / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=256, help="sources")
    parser.add_argument("--batch", type=int, default=128, help="Torch batch size")
    args = parser.parse_args()
    instrument = load_instrument()
    config = SimulateConfig()
    layouts = [band_layout(instrument.band(b), (config.cutout_height, config.cutout_width)) for b in config.bands]
    t0 = time.perf_counter()
    sources = draw_sources(PopulationConfig(), args.n, 1, np.random.default_rng(1))
    t_draw = time.perf_counter() - t0
    t0 = time.perf_counter()
    stamps = np.stack([direct_stamp(s, instrument, config.stamp_size) for s in sources])
    t_stamp = time.perf_counter() - t0
    wave = sources[0].wave_aa
    flam = np.stack([s.flam for s in sources])
    n = args.n

    torch.set_num_threads(1)
    numba_render(stamps[:2], sources[:2], instrument, layouts, config, np.random.default_rng(0))  # compile
    t_numba = best_of(lambda: numba_render(stamps, sources, instrument, layouts, config, np.random.default_rng(0)), 2)
    numba_rate = n / t_numba
    rows = [("Numba path (simulate_band + noise), 1 thread", numba_rate)]
    # Two processes first: spawned children, before this process runs Torch's thread pools.
    st32 = torch.as_tensor(stamps, dtype=torch.float32)
    for poisson in (True, False):
        rate = two_processes(st32, wave, flam, instrument, layouts, config, args.batch, poisson)
        rows.append((f"Torch float32, {'Poisson' if poisson else 'Gaussian'} noise, 2 processes x 1 thread", rate))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.float64):
            st = torch.as_tensor(stamps, dtype=dtype)
            for poisson in (True, False):
                torch_render(st[: args.batch], wave, flam[: args.batch], instrument, layouts, config, args.batch, poisson)
                dt = best_of(lambda: torch_render(st, wave, flam, instrument, layouts, config, args.batch, poisson), 2)
                name = f"Torch {str(dtype)[6:]}, {'Poisson' if poisson else 'Gaussian'} noise, {threads} thread{'s' * (threads > 1)}"
                rows.append((name, n / dt))
    torch.set_num_threads(1)
    stream_rate = stream_batches(batch=64, items=3)
    rows.append(("stream batches/s (sources drawn + rendered), 1 thread, per source", stream_rate * 64))
    split = stages(st32, wave, flam, instrument, layouts, config, args.batch)

    width = max(len(r[0]) for r in rows)
    print(f"{n} default sources, GV + GI, {config.cutout_height} x {config.cutout_width}, batch {args.batch}")
    print(f"{'renderer':<{width}}  {'cutouts/s':>10}  {'vs Numba':>8}")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:>10.0f}  {rate / numba_rate:>7.1f}x")
    print(f"\nstream batches/s (sources drawn + rendered): {stream_rate:.2f} batches of 64 per second, 1 thread")
    print("\nwhere the time goes: Torch float32, 1 thread, per source (both bands); the noise rows")
    print("include ERR + DQ and the per-source generators")
    for name, seconds in split.items():
        print(f"  {name:<18} {1e3 * seconds / n:7.3f} ms")
    print("\ninputs, per source (not in the rates above):")
    print(f"  population draw    {1e3 * t_draw / n:7.2f} ms  (draw_sources: SED, magnitude, shape)")
    print(f"  direct stamp       {1e3 * t_stamp / n:7.2f} ms  (resample + PSF, NumPy)")


if __name__ == "__main__":
    main()
