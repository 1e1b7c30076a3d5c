"""Prediction throughput on the CPU: sources per second for T = 1, 10, 100 Monte Carlo passes,
with the backbone run once and only the head sampled (slitcli's way) against T full passes.

Run: python benchmarks/predict.py [--model DIR] [-n 256] [--threads N] [--sample FILE] [--ensemble 5]

Uses the shipped default model (or --model) on random cutouts of its input size: the
timing does not depend on the pixel values. T = 1 is a single (dropout-sampled) pass.
"Backbone once" runs the backbone and the head's first layer (before its first dropout)
once per source and samples only the rest of the head (`slitcli.nn.predict.mc_predict`;
for a model with a p(z) head `mc_pdf`, whose softmaxes over the grid are part of each pass).

Also a deep ensemble of `--ensemble` members (default 5; `slitcli.nn.ensemble`), each
running its T passes, so about 1/M of the single model's rate.

With --sample, also end to end on that sample file at T = 100: `slitcli predict FILE`
as a fresh process (start-up, imports, model loading, reading and writing included), and
`slitcli.nn.predict.predict_file` in this process with the model already loaded (start-up
excluded; reading the file included).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from slitcli.nn.modelfile import load_model
from slitcli.nn.layers import PDFHead, mc_sampling
from slitcli.nn.predict import mc_pdf, mc_predict, mc_predict_naive


def rate(fn, x, n_mc, repeat=2):
    fn(x[:8], max(n_mc, 2))  # warm up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x, n_mc)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("-n", type=int, default=256, help="sources per timing")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--sample", type=Path, default=None, help="also time predict end to end on this sample file")
    parser.add_argument("--ensemble", type=int, default=5, help="also time an ensemble of this many members (T passes each; 0 or 1: not)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_model(args.model)
    torch.manual_seed(0)
    x = torch.randn(args.n, len(bundle.bands), *bundle.shape)
    print(f"model {bundle.name} ({bundle.card['architecture']}), {args.n} sources of {len(bundle.bands)} x {bundle.shape[0]} x {bundle.shape[1]}, {torch.get_num_threads()} threads")
    print(f"{'T':>4}  {'backbone once [src/s]':>22}  {'T full passes [src/s]':>22}  {'speed-up':>8}")
    sampled, naive = (mc_pdf, pdf_naive) if isinstance(bundle.model.head, PDFHead) else (mc_predict, mc_predict_naive)
    for n_mc in (1, 10, 100):
        fast = rate(lambda xx, t: sampled(bundle.model, xx, t), x, n_mc)
        slow = rate(lambda xx, t: naive(bundle.model, xx, t), x, n_mc, repeat=1)
        print(f"{n_mc:>4}  {fast:>22.1f}  {slow:>22.1f}  {fast / slow:>7.1f}x")
    if args.ensemble > 1:
        from slitcli.nn.ensemble import make_ensemble

        # Copies of the model: an ensemble's cost does not depend on its members' weights.
        ens = make_ensemble([load_model(args.model) for _ in range(args.ensemble)]).model
        print(f"{args.ensemble}-member ensemble (backbone once per member):")
        for n_mc in (1, 10, 100):
            print(f"{n_mc:>4}  {rate(lambda xx, t: sampled(ens, xx, t), x, n_mc):>22.1f}")
    if args.sample:
        end_to_end(bundle, args.sample, args.model)


def pdf_naive(model, x, n_mc):
    """A p(z) head's mixture from `n_mc` full passes with dropout on."""
    with mc_sampling(model):
        return torch.stack([torch.softmax(model(x), -1) for _ in range(n_mc)]).mean(0)


def end_to_end(bundle, sample: Path, model) -> None:
    """Sources per second of `slitcli predict` on `sample` (T = 100), start-up included and excluded."""
    from astropy.io import fits

    from slitcli.nn.predict import PredictConfig, predict_file

    with fits.open(sample) as h:
        n = len(h["SOURCES"].data)
    predict_file(bundle, sample, PredictConfig(n_mc=100))  # warm up (reading, first batches)
    t0 = time.perf_counter()
    predict_file(bundle, sample, PredictConfig(n_mc=100))
    inside = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        command = ["slitcli", "predict", str(sample), "-q", "-o", str(Path(tmp) / "z.fits"), *(["-m", str(model)] if model else [])]
        t0 = time.perf_counter()
        subprocess.run(command, check=True)
        whole = time.perf_counter() - t0
    print(f"end to end, T = 100, {n} sources of {sample.name}: {n / inside:.1f} sources/s start-up excluded ({inside:.1f} s), {n / whole:.1f} start-up included ({whole:.1f} s, `slitcli predict`)")


if __name__ == "__main__":
    main()
