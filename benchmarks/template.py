"""Template-route throughput: sources per second of the template fit on 1 and 2 threads, and the per-file grid.

Run: python benchmarks/template.py [--sample FILE | -n 400 --seed 2301]

Fits a default sample (made with ``slitcli simulate`` into a temporary directory unless
--sample is given) with `slitcli.classic.template_fit.fit_sample`, as ``predict --method
template`` does with the shipped model card's calibration. The point spectra of the file's grid (both bands, made once per process
and kept for the next file of the same geometry) are timed apart: they are a fixed cost
per process, not per source. The fit runs in Numba threads (`slitcli.classic.chisq`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numba

from slitcli.classic.template_fit import _GRID_CACHE, FileModels, fit_sample
from slitcli.io.samplefile import SampleReader
from slitcli.routes import Route


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=None, help="sample file (default: simulate one)")
    parser.add_argument("-n", type=int, default=400, help="sources to simulate")
    parser.add_argument("--seed", type=int, default=2301)
    parser.add_argument("--repeat", type=int, default=2, help="timings per thread count (the best is kept)")
    args = parser.parse_args()
    config = Route("template")._fit_config()  # the shipped card's n(z) prior, offset, temperature and floor, as predict uses them
    with tempfile.TemporaryDirectory() as tmp:
        sample = args.sample
        if sample is None:
            sample = Path(tmp) / "sample.fits"
            subprocess.run(["slitcli", "simulate", "-n", str(args.n), "--seed", str(args.seed), "-q", "-o", str(sample)], check=True)
        rows = []
        with SampleReader(sample, ("GV", "GI")) as reader:
            _GRID_CACHE.clear()
            start = time.perf_counter()
            FileModels.from_reader(reader, config, ("GV", "GI"))
            rows.append(("point spectra of the grid (once per process)", f"{time.perf_counter() - start:.1f} s", ""))
            fit_sample(reader, config)  # compiles (or loads) the Numba kernels
            for threads in (1, 2):
                numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
                best = float("inf")
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    fit_sample(reader, config)
                    best = min(best, time.perf_counter() - start)
                rows.append((f"fit, {numba.get_num_threads()} thread(s)", f"{best:.1f} s", f"{reader.n / best:.1f}"))
    print(f"Template route on {reader.n} sources ({sample.name}); {os.cpu_count()} CPU cores\n")
    print("| step | time | sources/s |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
