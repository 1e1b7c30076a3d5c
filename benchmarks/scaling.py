"""Scale-out on one machine: simulate and predict throughput here, on 1 and on 2 Dask workers.

Run: python benchmarks/scaling.py [--sources 400] [--shards 4] [--copies 8] [--n-mc 100]

Simulates `--sources` default sources as `--shards` sample files (`slitcli.sim.shards`),
then predicts `--copies` copies of those files with the shipped CNN at T = `--n-mc`
(`slitcli.routes.predict_files`), each way three times:

- here: in this process, one file after another (Torch and Numba use every core);
- 1 worker, 2 workers: a Dask LocalCluster of that many processes, one file per task,
  the cores shared out (`slitcli.parallel.Executor`). The cluster is started and warmed
  (libraries loaded, a first file done) before the timing; its start-up is printed apart.

Then the bytes per source of each product, measured on the files made. Every figure
is the best of `--repeat` runs. The outputs of every run are byte-identical (the tests
check it); only the time differs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")

from slitcli.instrument import load_instrument  # noqa: E402
from slitcli.parallel import Executor  # noqa: E402
from slitcli.routes import Route, catalog_table, predict_files  # noqa: E402
from slitcli.sim.population import PopulationConfig, PopulationProvider  # noqa: E402
from slitcli.sim.shards import run_sample_shards  # noqa: E402
from slitcli.sim.simulate import SimulateConfig  # noqa: E402
from timing import best_of  # noqa: E402



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=400, help="sources simulated per run")
    parser.add_argument("--shards", type=int, default=4, help="sample files they are split into")
    parser.add_argument("--copies", type=int, default=8, help="copies of the files predicted per run")
    parser.add_argument("--n-mc", type=int, default=100, help="Monte Carlo passes of the CNN")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure (best kept)")
    args = parser.parse_args()

    inst, cfg = load_instrument(), SimulateConfig()
    provider = PopulationProvider(PopulationConfig(), first_id=1)
    route = Route("cnn", n_mc=args.n_mc, contamination="ignore")
    root = Path(tempfile.mkdtemp(prefix="slitcli-scaling-"))
    try:
        samples = root / "samples"

        def simulate(executor):
            run_sample_shards(samples, provider, args.sources, args.shards, inst, cfg, 1, first_id=1, engine="numba", provenance={}, provider_id="embedded", executor=executor, overwrite=True)

        copies = []

        def predict(executor):
            tables = predict_files(route, copies, executor)
            return catalog_table(tables, copies, route)

        rows = []
        for label, workers in (("here", None), ("1 worker", 1), ("2 workers", 2)):
            t0 = time.perf_counter()
            with Executor(workers) as executor:
                started = time.perf_counter() - t0
                simulate(executor)  # warm-up: libraries loaded, kernels compiled (cached)
                if not copies:
                    for k in range(args.copies):
                        src = sorted(samples.glob("sample_*.fits"))[k % args.shards]
                        dst = root / f"copy_{k:03d}.fits"
                        shutil.copyfile(src, dst)
                        copies.append(dst)
                predict(executor)
                t_sim = best_of(lambda: simulate(executor), args.repeat)
                t_pred = best_of(lambda: predict(executor), args.repeat)
            n_pred = args.sources // args.shards * args.copies
            rows.append((label, started, args.sources / t_sim, n_pred / t_pred))

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{cores} cores; simulate: {args.sources} default sources in {args.shards} files; predict: {args.copies} files, {n_pred} sources, CNN T = {args.n_mc}")
        print(f"{'where':<10}  {'cluster start [s]':>17}  {'simulate [src/s]':>16}  {'predict [src/s]':>15}")
        for label, started, sim, pred in rows:
            print(f"{label:<10}  {started:>17.1f}  {sim:>16.1f}  {pred:>15.1f}")
        one, two = rows[1], rows[2]
        print(f"{'2 / 1':<10}  {'':>17}  {two[2] / one[2]:>15.2f}x  {two[3] / one[3]:>14.2f}x")
        print(f"{'2 / here':<10}  {'':>17}  {two[2] / rows[0][2]:>15.2f}x  {two[3] / rows[0][3]:>14.2f}x")

        sample_bytes = sum(p.stat().st_size for p in samples.glob("sample_*.fits")) / args.sources
        ecsv = root / "z.ecsv"
        predict(Executor()).write(ecsv, format="ascii.ecsv")
        print(f"bytes per source: sample file {sample_bytes / 1e6:.3f} MB; ECSV catalogue row {ecsv.stat().st_size / n_pred:.0f} B")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
