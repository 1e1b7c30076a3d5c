"""Prediction throughput on the CPU: sources per second for T = 1, 10, 100 Monte Carlo passes,
with the backbone run once and only the head sampled (slitcli's way) against T full passes.

Run: python benchmarks/predict.py [--model DIR] [-n 256]

Uses the shipped default model (or --model) on random cutouts of its input size: the
timing does not depend on the pixel values. T = 1 is a single (dropout-sampled) pass.
"""

from __future__ import annotations

import argparse
import time

import torch

from slitcli.nn.modelfile import load_model
from slitcli.nn.predict import mc_predict, mc_predict_naive


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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_model(args.model)
    torch.manual_seed(0)
    x = torch.randn(args.n, len(bundle.bands), *bundle.shape)
    print(f"model {bundle.name} ({bundle.card['architecture']}), {args.n} sources of {len(bundle.bands)} x {bundle.shape[0]} x {bundle.shape[1]}, {torch.get_num_threads()} threads")
    print(f"{'T':>4}  {'backbone once [src/s]':>22}  {'T full passes [src/s]':>22}  {'speed-up':>8}")
    for n_mc in (1, 10, 100):
        fast = rate(lambda xx, t: mc_predict(bundle.model, xx, t), x, n_mc)
        slow = rate(lambda xx, t: mc_predict_naive(bundle.model, xx, t), x, n_mc, repeat=1)
        print(f"{n_mc:>4}  {fast:>22.1f}  {slow:>22.1f}  {fast / slow:>7.1f}x")


if __name__ == "__main__":
    main()
