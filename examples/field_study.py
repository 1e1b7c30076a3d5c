"""What contamination costs, and what the CONTAM model wins back: the table and pictures of docs/fields.md.

Run (about 30 minutes and 2 GB of memory on 2 CPU cores for the default full chip)::

    python examples/field_study.py -o field-study

One simulated field (``slitcli simulate --field``, the embedded default population at
the default density; ``--size 9216x9232`` is a full CSST chip), then the same sources
three ways, each predicted by the shipped CNN and by the template route:

(a) **isolated**: every source simulated alone (``slitcli.sim.simulate.write_sample``
    on the field's own `Source` objects: same galaxy, SED, redshift, magnitude and
    exposure time, no neighbours, its own noise);
(b) **field, contamination ignored**: ``slitcli cutout`` of the field's exposures,
    predicted with ``--contam ignore``;
(c) **field, CONTAM subtracted**: the same cutouts, ``--contam subtract`` (the default:
    SCI - CONTAM, ERR^2 + (0.2 CONTAM)^2), CONTAM from the flat-f_lambda first pass;
(d) **field, refined CONTAM subtracted**: as (c), from ``slitcli cutout --refine`` (the
    second pass: bright neighbours' spectra fitted).

Only catalogue sources with SNR_GI >= ``--min-snr`` (1: the table's lowest cut; the
catalogue's SNR_GI is the source's isolated-cutout SNR) are cut and predicted; every
source of the field, faint or not, is in the exposures and in the contamination model.
All three are evaluated against the field catalogue (Z_TRUE, and its SNR_GI for the
cuts) over the sources on some exposure (those ``cutout`` keeps), so the rows compare
the same sources. Writes into the output directory:

- ``field/``: the field; ``isolated.fits``, ``field_cutouts.fits``,
  ``field_cutouts_refined.fits``: the samples;
- ``z_<route>_<case>.ecsv``: the eight catalogues;
- ``table.md``: the table (also printed), ``metrics.ecsv``: every metric of every row;
- ``exposure.png``: one exposure, zoomed, with the sources' cutout boxes and IDs;
- ``cutout_contam.png``, ``cutout_contam_refined.png``: the most contaminated bright source
  (SNR_GI >= 5, fully covered): SCI, CONTAM, SCI - CONTAM, first and second pass.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

CASES = {"a": "isolated", "b": "field, contamination ignored", "c": "field, CONTAM subtracted", "d": "field, refined CONTAM subtracted"}
ROUTES = ("cnn", "template")
SNR_CUTS = (1, 3, 5, 10)


def run(*args: str) -> None:
    """Run one slitcli command, echoed to stderr; stop on failure."""
    cmd = ["slitcli", *map(str, args)]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


class SourceList:
    """A source provider (``provider(start, count, rng)``) over a list of sources, picklable for worker processes."""

    def __init__(self, sources):
        self.sources = sources

    def __call__(self, start, count, rng):
        return self.sources[start : start + count]


def simulate(out: Path, nx: int, ny: int, seed: int, workers: int, min_snr: float):
    """The field (as ``slitcli simulate --field``), the selected catalogue and the isolated sample of the same sources."""
    from slitcli.instrument import load_instrument
    from slitcli.sim.field import FieldConfig, default_field_sources, write_field
    from slitcli.sim.simulate import SimulateConfig, write_sample

    inst = load_instrument()
    cfg = FieldConfig(nx=nx, ny=ny)
    sources = default_field_sources(inst, cfg, seed)
    t0 = time.perf_counter()
    write_field(out / "field", sources, inst, cfg, seed, workers=workers)
    print(f"field: {len(sources)} sources on {nx} x {ny} pixels ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    catalog = Table.read(out / "field" / "catalog.fits", hdu="SOURCES")
    selected = catalog[np.asarray(catalog["SNR_GI"]) >= min_snr]
    selected.write(out / "catalog_selected.fits", overwrite=True)
    keep = set(np.asarray(selected["SOURCE_ID"]).tolist())
    chosen = [s for s in sources if s.source_id in keep]
    t0 = time.perf_counter()
    write_sample(out / "isolated.fits", SourceList(chosen), len(chosen), inst, SimulateConfig(), seed, workers=workers)
    print(f"isolated: {len(chosen)} sources with SNR_GI >= {min_snr:g} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


def metrics(out: Path) -> Table:
    """Every catalogue evaluated against the field catalogue, per SNR cut."""
    from astropy.io import fits

    from slitcli.evaluation.evaluate import evaluate
    from slitcli.io.truth import read_truth

    truth = read_truth(out / "catalog_selected.fits")
    # The same sources in every row: those the field cutouts hold (on some exposure).
    with fits.open(out / "field_cutouts.fits") as h:
        truth = truth[np.isin(truth["SOURCE_ID"], h["SOURCES"].data["SOURCE_ID"])]
    rows = []
    for route in ROUTES:
        for key, case in CASES.items():
            pred = Table.read(out / f"z_{route}_{key}.ecsv")
            m = evaluate(pred, truth, SNR_CUTS)
            m = m[[s.startswith("SNR_GI>=") for s in m["sample"]]]
            m.add_column([route] * len(m), name="route", index=0)
            m.add_column([case] * len(m), name="case", index=1)
            rows.append(m)
    return vstack(rows, metadata_conflicts="silent")


def markdown(table: Table) -> str:
    """The docs table: one row per route and case, sigma_NMAD / outliers / 68% coverage per SNR cut."""
    head = "| route | cutouts | " + " | ".join(f"SNR_GI >= {c}" for c in SNR_CUTS) + " |"
    lines = [head, "|" + "---|" * (2 + len(SNR_CUTS))]
    for route in ROUTES:
        for case in CASES.values():
            cells = []
            for cut in SNR_CUTS:
                r = table[(table["route"] == route) & (table["case"] == case) & (table["sample"] == f"SNR_GI>={cut}")][0]
                cells.append(f"{r['sigma_nmad']:.4f} / {100 * r['outlier_frac_015']:.1f}% / {r['coverage_68']:.2f} ({int(r['n'])})")
            lines.append(f"| {route} | {case} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Each cell: sigma_NMAD / outlier fraction (|dz|/(1+z) > 0.15) / 68% coverage (number of sources).")
    return "\n".join(lines)


def figures(out: Path) -> None:
    """The exposure around the most contaminated bright source, with every source's cutout box; that source's cutouts."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from slitcli.fields.figures import plot_cutout_contam, plot_exposure

    exposure = sorted((out / "field").glob("exposure_GI_*.fits"))[0]
    with fits.open(out / "field_cutouts.fits") as h:
        src = Table(h["SOURCES"].data)
        sci, contam = h["GI_SCI"].data, h["GI_CONTAM"].data
        ratio = contam.sum(axis=(1, 2)) / np.maximum(np.abs(sci).sum(axis=(1, 2)), 1e-30)
    bright = (np.asarray(src["SNR_GI"]) >= 5) & (np.asarray(src["COVER_GI"]) >= 1)
    pick = int(np.argmax(np.where(bright, ratio, -np.inf)))
    with fits.open(exposure) as h:
        x, y = WCS(h["SCI"].header).celestial.world_to_pixel_values(float(src["RA"][pick]), float(src["DEC"][pick]))
    # Dispersion runs towards +x: show more of the detector right of the source.
    plot_exposure(out / "exposure.png", exposure, out / "field" / "catalog.fits", region=(x - 300, y - 200, x + 600, y + 200))
    plot_cutout_contam(out / "cutout_contam.png", out / "field_cutouts.fits", int(src["SOURCE_ID"][pick]))
    plot_cutout_contam(out / "cutout_contam_refined.png", out / "field_cutouts_refined.fits", int(src["SOURCE_ID"][pick]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="output directory (must not exist)")
    parser.add_argument("--size", default="9216x9232", help="detector NXxNY [pixels] (default: a full CSST chip)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-snr", type=float, default=1.0, help="catalogue SNR_GI below which sources are not predicted")
    parser.add_argument("-j", "--workers", type=int, default=2)
    args = parser.parse_args()
    out = args.output
    if out.exists():
        parser.error(f"{out} exists; give a new directory")
    out.mkdir(parents=True)
    nx, ny = (int(v) for v in args.size.lower().split("x"))
    simulate(out, nx, ny, args.seed, args.workers, args.min_snr)
    f = out / "field"
    exposures = sorted(f.glob("exposure_*.fits"))
    run("cutout", *exposures, "--catalog", out / "catalog_selected.fits", "--direct", f / "direct.fits", "-q", "-o", out / "field_cutouts.fits")
    run("cutout", *exposures, "--catalog", out / "catalog_selected.fits", "--direct", f / "direct.fits", "--refine", "-q", "-o", out / "field_cutouts_refined.fits")
    for route in ROUTES:
        run("predict", out / "isolated.fits", "--method", route, "-q", "-o", out / f"z_{route}_a.ecsv")
        run("predict", out / "field_cutouts.fits", "--method", route, "--contam", "ignore", "-q", "-o", out / f"z_{route}_b.ecsv")
        run("predict", out / "field_cutouts.fits", "--method", route, "--contam", "subtract", "-q", "-o", out / f"z_{route}_c.ecsv")
        run("predict", out / "field_cutouts_refined.fits", "--method", route, "--contam", "subtract", "-q", "-o", out / f"z_{route}_d.ecsv")
    table = metrics(out)
    table.write(out / "metrics.ecsv")
    text = markdown(table)
    (out / "table.md").write_text(text + "\n")
    print(text)
    figures(out)


if __name__ == "__main__":
    main()
