"""The accuracy study: Bayesian CNN, deterministic CNN and template fitting on one mock.

Run: python benchmarks/accuracy.py -o study [--n-train 12000] [--seed 1000]

Every step is a `slitcli` command (or, for the deterministic CNN's dropout-free pass,
the library), run in order; its wall time is recorded. Steps:

1. simulate training (n_train and the scaling subsets n_train/4, n_train/2: the same
   seed, so nested), validation and test samples from the embedded default
   population, and test samples whose spectra are shifted by 0, 0.5, 1, 2, 4 pixels
   against the WCS (``--wavelength-shift``);
2. train, with the default shift augmentations: the deterministic CNN (MSE only), then
   the Bayesian CNN from it (Gaussian NLL fine-tuning); calibrate on validation;
3. the same without shift augmentations (the robustness comparison), and with the
   smaller training sets (the scaling curve);
4. predict the test samples with each, with the template route and with the model
   shipped in models/, evaluate each against the truth;
5. write the tables into docs/results.md between its study markers (text outside
   them, the discussion, is kept) and print them.

The default sizes run in about an hour on a 2-core CPU; pass larger ones (and a GPU
with --device cuda) for a bigger study.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table, vstack
from study import Study, write_block

from slitcli.extract import data_snr, sample_band_columns
from slitcli.io.catalog import write_catalog
from slitcli.io.redshift import source_identity
from slitcli.io.samplefile import SampleReader
from slitcli.nn.modelfile import load_model
from slitcli.nn.train import normalise

SNR_CUTS = (1, 3, 5, 10)
SHIFTS = (0.0, 0.5, 1.0, 2.0, 4.0)
#: Miao et al. (2026), abstract: sigma_NMAD per SNR_GI cut, and mean E/(1+z) at SNR_GI >= 1.
PAPER = {"sigma_nmad": {1: 0.0104, 3: 0.0047, 5: 0.0037, 10: 0.0024}, "mean_zerr": {1: 0.0155}}
NO_SHIFT_AUGMENT = "train:\n  augment:\n    max_shift_x: 0\n    subpixel_x: 0.0\n"
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"


def predict_deterministic(model_dir: Path, sample: Path, output: Path) -> None:
    """One dropout-free pass: Z from the mean; ZERR from the variance output, which MSE training
    does not fit (the study reports no ZERR or coverage for this model)."""
    bundle = load_model(model_dir)
    model = bundle.model.eval()
    rows = []
    with SampleReader(sample, bundle.bands, bundle.shape) as reader, torch.inference_mode():
        sources = reader.sources()
        columns = sample_band_columns(reader, "GI")
        for start, sci, err, dq in reader.iter_chunks(256):
            mu, logvar = model(torch.from_numpy(normalise(sci, bundle.scales)))
            z = np.expm1(mu.double().numpy())
            zerr = (1 + z) * np.exp(0.5 * logvar.double().numpy())
            snr = data_snr(sci, err, dq, bundle.bands.index("GI"), columns)
            rows.append(Table({**source_identity(sources, start, len(sci)), "Z": z, "ZERR": zerr, "SNR_GI": snr}))
    table = vstack(rows)
    table.meta.update({"METHOD": "cnn-deterministic", "MODEL": bundle.name})
    write_catalog(table, output)


def metrics(report: Path) -> dict:
    """{sample name: row dict} of an evaluate report's metrics.ecsv."""
    table = Table.read(report / "metrics.ecsv")
    return {str(r["sample"]): {c: (r[c].item() if hasattr(r[c], "item") else r[c]) for c in table.colnames} for r in table}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("study"))
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--n-val", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=3000)
    parser.add_argument("--n-shift", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--doc", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "results.md")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    study = Study(out, args)
    s, j = args.seed, ["-j", args.workers, "-q"]

    # 1. Samples.
    sizes = sorted({args.n_train // 4, args.n_train // 2, args.n_train})
    for n in sizes:
        study.run(f"simulate train n={n}", out / f"train_{n}.fits", "simulate", "-n", n, "--seed", s + 1, *j, "-o", out / f"train_{n}.fits")
    study.run("simulate val", out / "val.fits", "simulate", "-n", args.n_val, "--seed", s + 2, *j, "-o", out / "val.fits")
    study.run("simulate test", out / "test.fits", "simulate", "-n", args.n_test, "--seed", s + 3, *j, "-o", out / "test.fits")
    for shift in SHIFTS:
        path = out / f"test_shift{shift:g}.fits"
        study.run(f"simulate test shift {shift:g}", path, "simulate", "-n", args.n_shift, "--seed", s + 4, "--wavelength-shift", shift, *j, "-o", path)

    # 2-3. Models: (name, training size, extra train options).
    (out / "noshift.yaml").write_text(NO_SHIFT_AUGMENT)
    variants = [(f"aug_{n}", n, []) for n in sizes] + [(f"noaug_{args.n_train}", args.n_train, ["--config", out / "noshift.yaml"])]
    epochs = ["--pretrain-epochs", args.pretrain_epochs]
    for name, n, extra in variants:
        det, bayes, cal = out / f"det_{name}", out / f"bayes_{name}", out / f"cal_{name}"
        common = [out / f"train_{n}.fits", "--val", out / "val.fits", "--device", args.device, "--seed", s, "-q", *extra]
        study.run(f"train deterministic {name}", det / "model.json", "train", *common, *epochs, "--finetune-epochs", 0, "-o", det)
        study.run(f"train bayesian {name}", bayes / "model.json", "train", *common, "--init-from", det, "--pretrain-epochs", 0, "--finetune-epochs", args.finetune_epochs, "-o", bayes)
        study.run(f"calibrate {name}", cal / "model.json", "calibrate", out / "val.fits", "-m", bayes, "-o", cal, "--device", args.device, "-q")

    # 4. Predictions and reports.
    main_name = f"aug_{args.n_train}"
    catalogues = {}  # report name -> (catalogue, truth)
    for name, _, _ in variants:
        catalogues[f"bayes_{name}"] = (["predict", out / "test.fits", "-m", out / f"cal_{name}", "--device", args.device], out / "test.fits")
    catalogues["template"] = (["predict", out / "test.fits", "--method", "template"], out / "test.fits")
    catalogues["shipped"] = (["predict", out / "test.fits", "--device", args.device], out / "test.fits")
    for shift in SHIFTS:
        path = out / f"test_shift{shift:g}.fits"
        for name in (main_name, f"noaug_{args.n_train}"):
            catalogues[f"shift{shift:g}_bayes_{name}"] = (["predict", path, "-m", out / f"cal_{name}", "--device", args.device], path)
        catalogues[f"shift{shift:g}_template"] = (["predict", path, "--method", "template"], path)
        catalogues[f"shift{shift:g}_shipped"] = (["predict", path, "--device", args.device], path)
    for key, (command, truth) in catalogues.items():
        z = out / f"z_{key}.ecsv"
        study.run(f"predict {key}", z, *command, "-q", "-o", z)
        study.run(f"evaluate {key}", out / f"report_{key}" / "metrics.ecsv", "evaluate", z, "--truth", truth, "-o", out / f"report_{key}")
    z = out / f"z_det_{main_name}.ecsv"
    study.timed(f"predict det_{main_name}", z, lambda: predict_deterministic(out / f"det_{main_name}", out / "test.fits", z))
    study.run(f"evaluate det_{main_name}", out / f"report_det_{main_name}" / "metrics.ecsv", "evaluate", z, "--truth", out / "test.fits", "-o", out / f"report_det_{main_name}")

    # 5. Tables.
    results = {key: metrics(out / f"report_{key}") for key in [*catalogues, f"det_{main_name}"]}
    cards = {name: json.loads((out / f"cal_{name}" / "model.json").read_text()) for name, _, _ in variants}
    (out / "results.json").write_text(json.dumps({"results": results, "timings": study.times}, indent=1, default=float))
    text = render(args, results, cards, study.times, sizes, main_name)
    print(text)
    write_block(args.doc, text, BEGIN, END)
    for key in (f"bayes_{main_name}", "template"):
        for png in ("z_pred_vs_true.png", "calibration.png"):
            dest = args.doc.parent / "results" / f"{key.split('_')[0]}_{png}"
            dest.parent.mkdir(exist_ok=True)
            shutil.copyfile(out / f"report_{key}" / png, dest)


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def render(args, results, cards, times, sizes, main_name) -> str:
    """The Markdown tables of the study."""
    lines = []
    cal = cards[main_name]["calibration"]
    train_card = cards[main_name]["training"]
    lines += [
        f"Command: `python benchmarks/accuracy.py -o {args.out} --n-train {args.n_train} --n-val {args.n_val} --n-test {args.n_test} "
        f"--n-shift {args.n_shift} --seed {args.seed} --pretrain-epochs {args.pretrain_epochs} --finetune-epochs {args.finetune_epochs}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, device {args.device} "
        f"({'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != 'cpu' else 'CPU'}); "
        f"the steps took {sum(times.values()) / 60:.0f} min in all (step times in `{args.out}/timings.json`; "
        f"an interrupted study resumes, skipping finished steps).",
        "",
        f"Samples (default population, seeds {args.seed + 1} training, {args.seed + 2} validation, {args.seed + 3} test, "
        f"{args.seed + 4} shifted tests): training {args.n_train} sources ({train_card['n_train']} with SNR_GI >= 1 used), "
        f"validation {args.n_val}, test {args.n_test}, shifted tests {args.n_shift} each.",
        "",
        f"Bayesian CNN ({main_name}): slitnet, {args.pretrain_epochs} MSE epochs then {args.finetune_epochs} NLL epochs at most "
        f"(early stopping on validation); training {times.get(f'train deterministic {main_name}', 0) / 60:.1f} + "
        f"{times.get(f'train bayesian {main_name}', 0) / 60:.1f} min; calibrated on validation: T = {cal['temperature']:.3f}, "
        f"tails {'Gaussian' if cal.get('tail_dof') is None else 'Student t, dof = ' + format(cal['tail_dof'], 'g')}.",
        "",
        "### Accuracy on the test sample",
        "",
        "| method | SNR_GI >= | n | sigma_NMAD | f(>0.02) | f(>0.15) | bias | mean ZERR/(1+z) | cov. 68% | cov. 95% |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("Bayesian CNN (this study, calibrated)", f"bayes_{main_name}"),
        ("CNN, deterministic (this study)", f"det_{main_name}"),
        ("Template fit (CWW+Kinney + lines)", "template"),
        ("Shipped default model (models/)", "shipped"),
    ]
    for label, key in rows:
        for cut in SNR_CUTS:
            m = dict(results[key].get(f"SNR_GI>={cut}", {}))
            if key.startswith("det_"):
                # A deterministic network has no uncertainty of its own: no ZERR, no coverage.
                m.update(mean_zerr=None, coverage_68=None, coverage_95=None)
            lines.append(
                f"| {label} | {cut} | {m.get('n', 0)} | {_fmt(m.get('sigma_nmad'))} | {_fmt(m.get('outlier_frac_002'), 3)} | "
                f"{_fmt(m.get('outlier_frac_015'), 3)} | {_fmt(m.get('bias_median'), 4)} | {_fmt(m.get('mean_zerr'))} | "
                f"{_fmt(m.get('coverage_68'), 3)} | {_fmt(m.get('coverage_95'), 3)} |"
            )
    for cut in SNR_CUTS:
        lines.append(f"| Paper (Miao et al. 2026), their mock | {cut} | - | {_fmt(PAPER['sigma_nmad'][cut])} | - | - | - | {_fmt(PAPER['mean_zerr'].get(cut))} | - | - |")
    lines += ["", "### Bayesian CNN against the template fit", "", "| SNR_GI >= | sigma_NMAD CNN | sigma_NMAD template | CNN / template | f(>0.02) CNN | f(>0.02) template |", "|---|---|---|---|---|---|"]
    for cut in SNR_CUTS:
        a, b = results[f"bayes_{main_name}"].get(f"SNR_GI>={cut}", {}), results["template"].get(f"SNR_GI>={cut}", {})
        ratio = a.get("sigma_nmad", np.nan) / b.get("sigma_nmad", np.nan) if b.get("sigma_nmad") else np.nan
        lines.append(f"| {cut} | {_fmt(a.get('sigma_nmad'))} | {_fmt(b.get('sigma_nmad'))} | {_fmt(ratio, 2)} | {_fmt(a.get('outlier_frac_002'), 3)} | {_fmt(b.get('outlier_frac_002'), 3)} |")
    lines += [
        "",
        "### Wavelength-calibration errors",
        "",
        f"Test samples of {args.n_shift} sources whose spectra land shifted along the dispersion against the nominal WCS "
        "(the source does not move). sigma_NMAD and median bias at SNR_GI >= 3.",
        "",
        "| shift [pix] | CNN with shift aug.: sigma_NMAD | bias | CNN without: sigma_NMAD | bias | shipped model (shift aug.): sigma_NMAD | bias | template: sigma_NMAD | bias |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shift in SHIFTS:
        cells = []
        for key in (f"shift{shift:g}_bayes_{main_name}", f"shift{shift:g}_bayes_noaug_{args.n_train}", f"shift{shift:g}_shipped", f"shift{shift:g}_template"):
            m = results[key].get("SNR_GI>=3", {})
            cells += [_fmt(m.get("sigma_nmad")), _fmt(m.get("bias_median"))]
        lines.append(f"| {shift:g} | " + " | ".join(cells) + " |")
    lines += ["", "### Training-set size", "", "| training sources | of which SNR_GI >= 1 | sigma_NMAD SNR>=1 | sigma_NMAD SNR>=3 | cov. 68% SNR>=1 | training time [min] |", "|---|---|---|---|---|---|"]
    for n in sizes:
        m = results[f"bayes_aug_{n}"]
        minutes = (times.get(f"train deterministic aug_{n}", 0) + times.get(f"train bayesian aug_{n}", 0)) / 60
        lines.append(f"| {n} | {cards[f'aug_{n}']['training']['n_train']} | {_fmt(m['SNR_GI>=1']['sigma_nmad'])} | {_fmt(m['SNR_GI>=3']['sigma_nmad'])} | {_fmt(m['SNR_GI>=1']['coverage_68'], 3)} | {minutes:.1f} |")
    shipped = load_model(None).card
    m = results["shipped"]
    lines.append(
        f"| shipped model: {shipped['training']['n_train']} (SNR_GI >= 1, several stages) | {shipped['training']['n_train']} | "
        f"{_fmt(m['SNR_GI>=1']['sigma_nmad'])} | {_fmt(m['SNR_GI>=3']['sigma_nmad'])} | {_fmt(m['SNR_GI>=1']['coverage_68'], 3)} | see models/{shipped['name']}/model.json |"
    )
    lines += ["", "Plots: `docs/results/bayes_z_pred_vs_true.png`, `docs/results/bayes_calibration.png`, `docs/results/template_z_pred_vs_true.png`, `docs/results/template_calibration.png`."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
