"""Simulator throughput: sources per second on 1 and 2 cores, and the Numba kernel's speed-up.

Run: python benchmarks/simulate.py [-n 256]

Prints a table: end-to-end `write_sample` throughput for the default population and
cutouts (GV + GI, 40 x 480, 64 x 64 stamps) with 1 and 2 worker processes, and the
dispersion of one realistic galaxy by the Numba kernel against the plain NumPy
reference of the tests (tests/sim/test_disperse.py), same inputs, same output.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))

from test_disperse import disperse_reference  # noqa: E402
from timing import best_of  # noqa: E402

from slitcli.instrument import load_instrument, sensitivity  # noqa: E402
from slitcli.sim.disperse import disperse  # noqa: E402
from slitcli.sim.population import PopulationConfig, PopulationProvider, draw_sources  # noqa: E402
from slitcli.sim.seds import load_sed_library  # noqa: E402
from slitcli.sim.shapes import load_shape_library  # noqa: E402
from slitcli.sim.simulate import (  # noqa: E402
    SimulateConfig,
    band_layout,
    direct_stamp,
    write_sample,  # noqa: E402
)



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=256, help="sources per throughput run")
    args = parser.parse_args()
    instrument = load_instrument()
    config = SimulateConfig()
    load_sed_library(), load_shape_library()  # warm caches (forked workers inherit them)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_sample(Path(tmp) / "warm.fits", PopulationProvider(config.population), 8, instrument, config, 0)
        for workers in (1, 2):
            t0 = time.perf_counter()
            write_sample(Path(tmp) / f"w{workers}.fits", PopulationProvider(config.population), args.n, instrument, config, 1, workers=workers)
            dt = time.perf_counter() - t0
            rows.append((f"simulate, {workers} core(s), n={args.n}", f"{args.n / dt:.1f} sources/s", f"{dt:.1f} s"))

    source = draw_sources(PopulationConfig(), 1, 1, np.random.default_rng(3))[0]
    band = instrument.band("GV")
    layout = band_layout(band, (config.cutout_height, config.cutout_width))
    stamp = direct_stamp(source, instrument, config.stamp_size)
    density = source.flam * sensitivity(instrument, band, band.first_order, source.wave_aa)
    call = (stamp, layout.x_direct_pix, layout.y_direct_pix, band.first_order, source.wave_aa, density, layout.shape)
    disperse(*call)  # compile
    t_numba = best_of(lambda: disperse(*call, oversample=config.oversample), 20)
    t_numpy = best_of(lambda: disperse_reference(*call, config.oversample), 3)
    lit = int(np.count_nonzero(stamp))
    rows.append((f"disperse one GV cutout, Numba ({lit} lit pixels)", f"{1e3 * t_numba:.2f} ms", ""))
    rows.append(("disperse one GV cutout, NumPy reference", f"{1e3 * t_numpy:.1f} ms", f"Numba {t_numpy / t_numba:.0f}x faster"))

    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'result':>16}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")


if __name__ == "__main__":
    main()
