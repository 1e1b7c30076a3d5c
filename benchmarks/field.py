"""Field cost: seconds and peak memory of simulating a field, and of cutting a simulated field.

Run: python benchmarks/field.py [--cases exposure2048,field2048,chip,cutout2048] [-j 2] [--keep DIR]

Each simulation case runs `slitcli.sim.field` in a fresh subprocess (default population
at the default density, seed 1) and reports the wall time of each phase and the
subprocess's peak resident memory (``ru_maxrss`` from ``os.wait4``):

- ``exposure2048``: a 2048 x 2048 detector, band GI, one 150 s exposure (plus the
  direct image and catalogue every field has);
- ``field2048``: the default field (2048 x 2048, GV and GI, 4 exposures each);
- ``chip``: a full 9216 x 9232 CSST chip in GV and GI, 4 exposures each (8 exposures,
  about 10 GB of files, written to a temporary directory and deleted afterwards).

Phases: drawing the sources (population and positions), preparing them (stamps and the
isolated-cutout SNR of the catalogue), the direct image with its segmentation, the
catalogue, rendering the exposures (dispersion into tiles added into the frame), and
their noise, cosmic rays and writing.

Each cutout case (`slitcli cutout`, i.e. `slitcli.fields.cutout_file.write_cutouts`)
first simulates its field in one subprocess (timed, but not part of the rate), then cuts
every source of the field's catalogue from all its exposures in two more, fresh
subprocesses, so that each peak memory is that step's alone: with the direct image
(cutouts, DIRECT stamps and the CONTAM model) and without it (cutouts only). Reported:
sources cut, seconds of the `write_cutouts` call (imports and the simulation excluded),
sources per second, the subprocess's peak resident memory (imports included, as for
``/usr/bin/time`` on the command) and the sample file's size. Cutting is single-threaded;
``-j`` applies to the simulation only.

- ``cutout2048``: the default field of ``field2048`` (default case list);
- ``cutoutchip``: the full chip of ``chip`` (not in the default list: the simulation
  takes minutes and about 10 GB of disk; ask for it with ``--cases cutoutchip``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "exposure2048": {"nx": 2048, "ny": 2048, "bands": ["GI"], "n_exposures": 1, "label": "one 2048 x 2048 exposure (GI)"},
    "field2048": {"nx": 2048, "ny": 2048, "bands": ["GV", "GI"], "n_exposures": 0, "label": "default field: 2048 x 2048, GV + GI, 4 exposures each"},
    "chip": {"nx": 9216, "ny": 9232, "bands": ["GV", "GI"], "n_exposures": 0, "label": "full 9216 x 9232 chip, GV + GI, 4 exposures each"},
}
# Cutout cases: the simulation case whose field they cut.
CUTOUT_CASES = {
    "cutout2048": {"field": "field2048", "label": "cutout of the default field (2048 x 2048, GV + GI, 4 exposures each)"},
    "cutoutchip": {"field": "chip", "label": "cutout of a full 9216 x 9232 chip (GV + GI, 4 exposures each)"},
}
DEFAULT_CASES = "exposure2048,field2048,chip,cutout2048"


def child(case: str, workers: int, dest: str) -> None:
    """Simulate one case into directory `dest` and print its phase timings as JSON."""
    from slitcli.instrument import load_instrument
    from slitcli.sim import field as F

    spec = CASES[case]
    inst = load_instrument()
    config = F.FieldConfig(nx=spec["nx"], ny=spec["ny"], bands=tuple(spec["bands"]), n_exposures=spec["n_exposures"])
    times = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    F.prepare_source = timed("prepare sources", F.prepare_source)
    F.write_direct_file = timed("direct image + segmentation", F.write_direct_file)
    F.write_catalog_file = timed("catalogue", F.write_catalog_file)
    F.render_exposure = timed("render exposures", F.render_exposure)
    F.write_exposure_file = timed("noise, cosmic rays, write exposures", F.write_exposure_file)
    t0 = time.perf_counter()
    sources = F.default_field_sources(inst, config, 1)
    times["draw sources"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    summary = F.write_field(Path(dest), sources, inst, config, 1, workers=workers)
    times["write_field total"] = time.perf_counter() - t1
    size = sum(f.stat().st_size for f in Path(dest).iterdir())
    if workers > 1:  # prepare_source runs in threads: its summed time is not wall time
        times["prepare sources"] /= workers
    print(json.dumps({"times": times, "n_sources": summary.n_sources, "n_exposures": len(summary.files) - 2, "bytes": size, "total": time.perf_counter() - t0}))


def cutout_child(field_dir: str, output: str, with_direct: bool) -> None:
    """Cut the field in `field_dir` into sample file `output` and print the cost as JSON."""
    from slitcli.fields.cutout_file import write_cutouts

    field = Path(field_dir)
    exposures = sorted(field.glob("exposure_*.fits"))
    direct = field / "direct.fits" if with_direct else None
    t0 = time.perf_counter()
    summary = write_cutouts(exposures, field / "catalog.fits", output, direct_path=direct, overwrite=True)
    seconds = time.perf_counter() - t0
    print(json.dumps({"n": summary.n, "n_skipped": summary.n_skipped, "n_exposures": len(exposures), "seconds": seconds, "bytes": Path(output).stat().st_size}))


def run_child(args: list[str], timeout: float) -> dict:
    """Run this script with `args` in a subprocess; its last JSON line plus ``peak_gb``, or ``error``."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    start = time.perf_counter()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            return {"error": f"timed out after {timeout:.0f} s", "peak_gb": usage.ru_maxrss / 2**20}
        time.sleep(0.5)
    text = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}", "peak_gb": usage.ru_maxrss / 2**20}
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_gb"] = usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    return result


def run_case(case: str, workers: int, dest: Path, timeout: float) -> dict:
    """Simulate simulation case `case` into directory `dest` in a subprocess."""
    return run_child(["--child", case, "-j", str(workers), "--out", str(dest)], timeout)


def field_rows(case: str, r: dict) -> list[tuple]:
    """Table rows of a simulation case."""
    label = CASES[case]["label"]
    if "error" in r:
        return [(label, r["error"], f"peak {r['peak_gb']:.2f} GB")]
    rows = [(label, f"{r['total']:.1f} s", f"peak {r['peak_gb']:.2f} GB; {r['n_sources']} sources, {r['n_exposures']} exposure(s), {r['bytes'] / 1e9:.2f} GB of files")]
    rows += [(f"  {name}", f"{seconds:.1f} s", "") for name, seconds in r["times"].items()]
    return rows


def cutout_rows(case: str, workers: int, dest: Path, timeout: float) -> list[tuple]:
    """Simulate the field of cutout case `case` into `dest`, cut it with and without the direct image; table rows."""
    spec = CUTOUT_CASES[case]
    field = dest / "field"
    sim = run_case(spec["field"], workers, field, timeout)
    rows = [(spec["label"], "", "")]
    if "error" in sim:
        return [*rows, ("  simulate field (not in the rate)", sim["error"], f"peak {sim['peak_gb']:.2f} GB")]
    rows.append(("  simulate field (not in the rate)", f"{sim['total']:.1f} s", f"peak {sim['peak_gb']:.2f} GB; {sim['n_sources']} sources, {sim['n_exposures']} exposure(s), {sim['bytes'] / 1e9:.2f} GB of files"))
    for name, with_direct, output in (("cutout + DIRECT + CONTAM (--direct)", True, "sample_direct.fits"), ("cutout only (no --direct)", False, "sample.fits")):
        args = ["--cutout-child", str(field), "--out", str(dest / output)] + (["--with-direct"] if with_direct else [])
        r = run_child(args, timeout)
        if "error" in r:
            rows.append((f"  {name}", r["error"], f"peak {r['peak_gb']:.2f} GB"))
            continue
        rate = r["n"] / r["seconds"] if r["seconds"] > 0 else float("nan")
        rows.append((f"  {name}", f"{r['seconds']:.1f} s", f"peak {r['peak_gb']:.2f} GB; {r['n']} sources cut ({r['n_skipped']} skipped) from {r['n_exposures']} exposures, {rate:.1f} sources/s, {r['bytes'] / 1e6:.0f} MB file"))
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="cutoutchip (a full chip simulated, then cut) takes minutes and about 10 GB of disk; it is not in the default list.",
    )
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated: " + ", ".join([*CASES, *CUTOUT_CASES]) + f" (default: {DEFAULT_CASES})")
    parser.add_argument("-j", "--workers", type=int, default=2, help="worker threads of the simulation (cutting is single-threaded)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per subprocess")
    parser.add_argument("--keep", default=None, help="write the fields (and cutout samples) here and keep them (default: a deleted temporary directory)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cutout-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--with-direct", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workers, args.out)
        return
    if args.cutout_child:
        cutout_child(args.cutout_child, args.out, args.with_direct)
        return
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES and c not in CUTOUT_CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join([*CASES, *CUTOUT_CASES])}")
    out = Path(args.keep or tempfile.mkdtemp(prefix="slitcli-field-bench-"))
    rows = []
    try:
        for case in cases:
            if case in CUTOUT_CASES:
                rows += cutout_rows(case, args.workers, out / case, args.timeout)
            else:
                rows += field_rows(case, run_case(case, args.workers, out / case, args.timeout))
            if args.keep is None:
                shutil.rmtree(out / case, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"workers: {args.workers} thread(s) (simulation only); CPU cores: {os.cpu_count()}")
    print(f"{'case':<{width}}  {'seconds':>10}  memory and size")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
