"""Training throughput on the CPU: samples per second of one optimiser step (forward, backward,
AdamW update) for each architecture, with the default on-the-fly augmentation.

Run: python benchmarks/train.py [--batch 32] [--steps 10]

Random cutouts of the default 2 x 40 x 480 layout; the timing does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from slitcli.nn import create_model
from slitcli.nn.augment import apply, random_params
from slitcli.nn.train import TrainConfig, normalise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    rng = np.random.default_rng(0)
    sci = rng.normal(0, 0.03, (args.batch, 2, 40, 480)).astype(np.float32)
    err = np.full_like(sci, 0.03)
    scales = np.array([0.03, 0.03], np.float32)
    t = torch.rand(args.batch)
    print(f"batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"{'architecture':<12} {'parameters':>11} {'samples/s':>10} {'of which augment+normalise':>27}")
    for name, kw in (("slitnet", {}), ("resnet34", {})):
        model = create_model(name, **kw).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        steps = args.steps if name == "slitnet" else max(2, args.steps // 5)
        t_aug = 0.0
        for k in range(steps + 1):
            if k == 1:
                t0, t_aug = time.perf_counter(), 0.0
            ta = time.perf_counter()
            s, _ = apply(sci, err, random_params(args.batch, cfg.augment, rng), rng)
            x = torch.from_numpy(normalise(s, scales))
            t_aug += time.perf_counter() - ta
            mu, logvar = model(x)
            loss = torch.mean((mu - t) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t0
        n_par = sum(p.numel() for p in model.parameters())
        print(f"{name:<12} {n_par / 1e6:>10.2f}M {steps * args.batch / dt:>10.1f} {100 * t_aug / dt:>26.0f}%")


if __name__ == "__main__":
    main()
