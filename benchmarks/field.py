"""Field simulation cost: seconds and peak memory of one 2048 x 2048 exposure and of a full chip.

Run: python benchmarks/field.py [--cases exposure2048,field2048,chip] [-j 2] [--keep DIR]

Each case runs `slitcli.sim.field` in a fresh subprocess (default population at the
default density, seed 1) and reports the wall time of each phase and the subprocess's
peak resident memory (``ru_maxrss`` from ``os.wait4``):

- ``exposure2048``: a 2048 x 2048 detector, band GI, one 150 s exposure (plus the
  direct image and catalogue every field has);
- ``field2048``: the default field (2048 x 2048, GV and GI, 4 exposures each);
- ``chip``: a full 9216 x 9232 CSST chip in GV and GI, 4 exposures each (8 exposures,
  about 10 GB of files, written to a temporary directory and deleted afterwards).

Phases: drawing the sources (population and positions), preparing them (stamps and the
isolated-cutout SNR of the catalogue), the direct image with its segmentation, the
catalogue, rendering the exposures (dispersion into tiles added into the frame), and
their noise, cosmic rays and writing.
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


def child(case: str, workers: int, out: str) -> None:
    """Simulate one case here and print its phase timings as JSON."""
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
    summary = F.write_field(Path(out) / case, sources, inst, config, 1, workers=workers)
    times["write_field total"] = time.perf_counter() - t1
    size = sum(f.stat().st_size for f in (Path(out) / case).iterdir())
    if workers > 1:  # prepare_source runs in threads: its summed time is not wall time
        times["prepare sources"] /= workers
    print(json.dumps({"times": times, "n_sources": summary.n_sources, "n_exposures": len(summary.files) - 2, "bytes": size, "total": time.perf_counter() - t0}))


def run_case(case: str, workers: int, out: str, timeout: float) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--child", case, "-j", str(workers), "--out", out], stdout=subprocess.PIPE, text=True)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="exposure2048,field2048,chip", help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("-j", "--workers", type=int, default=2, help="worker threads")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per case")
    parser.add_argument("--keep", default=None, help="write the fields here and keep them (default: a deleted temporary directory)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workers, args.out)
        return
    out = args.keep or tempfile.mkdtemp(prefix="slitcli-field-bench-")
    rows = []
    try:
        for case in args.cases.split(","):
            r = run_case(case, args.workers, out, args.timeout)
            if args.keep is None:
                shutil.rmtree(Path(out) / case, ignore_errors=True)
            label = CASES[case]["label"]
            if "error" in r:
                rows.append((label, r["error"], f"peak {r['peak_gb']:.2f} GB"))
                continue
            rows.append((label, f"{r['total']:.1f} s", f"peak {r['peak_gb']:.2f} GB; {r['n_sources']} sources, {r['n_exposures']} exposure(s), {r['bytes'] / 1e9:.2f} GB of files"))
            for name, seconds in r["times"].items():
                rows.append((f"  {name}", f"{seconds:.1f} s", ""))
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"workers: {args.workers} thread(s); CPU cores: {os.cpu_count()}")
    print(f"{'case':<{width}}  {'seconds':>10}  memory and size")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
