"""The architecture table: every registered family trained from the same stream and budget.

Run: python benchmarks/architectures.py -o OUT [--steps 400] [--batch-size 64] [--head pdf]
     [--val FILE] [--test FILE] [--arch slitnet --arch vit ...]

For each architecture (default: slitnet, slitnet2, resnet18, efficientnet, vit, mixer;
resnet34, the paper's, is left out: at its full width it does not train on two cores in
a session) it runs ``slitcli train --stream`` with one stream worker and the same seed,
so every network sees the same training cutouts in the same order: 2/3 of `--steps`
pre-training and 1/3 fine-tuning, batches of `--batch-size`, validated every 100 steps
on the validation sample. Then it measures:

- parameters;
- training speed: training sources per second (stream rendering, optimiser steps and
  validations included, start-up not; on the cores this machine gives it) and the seconds one epoch of
  the shipped model's training set (42,303 cutouts) would take at that speed;
- predict speed: sources per second at T = 100 Monte Carlo passes, the model alone on 256
  random cutouts (backbone once, head sampled: `slitcli.nn.predict.mc_predict`/`mc_pdf`);
- sigma_NMAD at SNR_GI >= 1, 3, 5, 10 of ``slitcli predict`` on the test sample (no
  calibration: it does not move Z).

The validation and test samples are made if not given: ``simulate -n 1000 --seed 200``
and ``simulate -n 2000 --seed 2600``. Prints a Markdown table; writes it with the
per-architecture model directories under OUT (``architectures.ecsv``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from slitcli.evaluation.evaluate import evaluate
from slitcli.io.truth import read_truth
from slitcli.nn.layers import PDFHead
from slitcli.nn.modelfile import load_model
from slitcli.nn.predict import mc_pdf, mc_predict

DEFAULT = ("slitnet", "slitnet2", "resnet18", "efficientnet", "vit", "mixer")
SHIPPED_EPOCH = 42303
STREAM = "stream:\n  p_neighbour: 0.3\n  p_sky_residual: 0.3\n  p_wavelength_shift: 0.3\n  p_cosmic_rays: 0.3\n  p_dust: 0.5\n  p_lines: 0.5\n"


def slitcli(*args):
    subprocess.run([sys.executable, "-m", "slitcli", *map(str, args)], check=True)


def predict_rate(bundle, n=256, n_mc=100) -> float:
    torch.manual_seed(0)
    x = torch.randn(n, len(bundle.bands), *bundle.shape)
    fn = mc_pdf if isinstance(bundle.model.head, PDFHead) else mc_predict
    fn(bundle.model, x[:8], n_mc)  # warm up
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        fn(bundle.model, x, n_mc)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--arch", action="append", default=None, help="architecture (repeat; default: the zoo and slitnet)")
    parser.add_argument("--head", default="pdf", choices=("pdf", "gaussian"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--val", type=Path, default=None)
    parser.add_argument("--test", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    val, test = args.val or out / "val.fits", args.test or out / "test.fits"
    if not val.exists():
        slitcli("simulate", "-n", 1000, "--seed", 200, "-j", 2, "-q", "-o", val)
    if not test.exists():
        slitcli("simulate", "-n", 2000, "--seed", 2600, "-j", 2, "-q", "-o", test)
    truth = read_truth(test)
    pre = (2 * args.steps) // 3
    rows = []
    for arch in args.arch or DEFAULT:
        model_dir, config = out / arch, out / f"{arch}.yaml"
        config.write_text(
            f"train:\n  architecture: {arch}\n  batch_size: {args.batch_size}\n  pretrain_steps: {pre}\n  finetune_steps: {args.steps - pre}\n"
            f"  val_every: 100\n  patience: 100\n  seed: {args.seed}\nmodel:\n  head: {args.head}\n{STREAM}"
        )
        slitcli("train", "--stream", "--config", config, "--workers", 1, "--val", val, "-o", model_dir, "--overwrite", "-q")
        bundle = load_model(model_dir)
        wall = float(bundle.card["training"]["wall_s"])  # the training itself, validations included; not the command's start-up
        n_params = sum(p.numel() for p in bundle.model.parameters())
        rate = predict_rate(bundle)
        slitcli("predict", test, "-m", model_dir, "-o", out / f"z_{arch}.fits", "--overwrite", "-q")
        metrics = evaluate(Table.read(out / f"z_{arch}.fits", hdu="REDSHIFTS"), truth)
        nmad = {row["sample"]: float(row["sigma_nmad"]) for row in metrics}
        seen = args.steps * args.batch_size
        rows.append({
            "architecture": arch, "head": args.head, "params_M": n_params / 1e6, "train_src_s": seen / wall,
            "epoch_s": SHIPPED_EPOCH * wall / seen, "predict_src_s_T100": rate,
            **{f"nmad_snr{c}": nmad.get(f"SNR_GI>={c}", np.nan) for c in (1, 3, 5, 10)}, "wall_s": wall,
        })
        print(f"{arch}: {rows[-1]}", file=sys.stderr, flush=True)
    table = Table(rows=rows)
    table.meta.update(steps=args.steps, batch_size=args.batch_size, seed=args.seed, threads=torch.get_num_threads(), val=val.name, test=test.name)
    table.write(out / "architectures.ecsv", overwrite=True)
    print(f"{args.steps} steps of {args.batch_size} stream cutouts each ({args.steps * args.batch_size} sources), {args.head} head, seed {args.seed}, {torch.get_num_threads()} threads")
    print("| architecture | parameters | train [src/s] | epoch of 42,303 [s] | predict T=100 [src/s] | sigma_NMAD SNR>=1 | >=3 | >=5 | >=10 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['architecture']} | {r['params_M']:.2f} M | {r['train_src_s']:.0f} | {r['epoch_s']:.0f} | {r['predict_src_s_T100']:.0f} | "
              f"{r['nmad_snr1']:.4f} | {r['nmad_snr3']:.4f} | {r['nmad_snr5']:.4f} | {r['nmad_snr10']:.4f} |")


if __name__ == "__main__":
    main()
