"""Start-up time of the command line: how long `--help` and `--version` take.

Run: python benchmarks/cli_startup.py [--repeat 7]

Each command runs as a new process, as a shell script would run it (the `slitcli`
entry point on PATH, else `python -m slitcli`). Prints the median and the slowest wall
time over the repeats, and which heavy modules (torch, astropy, numba, matplotlib,
scipy) the command imported: a help screen should import none of them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ("--help",),
    ("--version",),
    ("simulate", "--help"),
    ("cutout", "--help"),
    ("augment", "--help"),
    ("train", "--help"),
    ("predict", "--help"),
    ("calibrate", "--help"),
    ("evaluate", "--help"),
)

HEAVY = ("torch", "astropy", "numba", "matplotlib", "scipy", "fitsio", "skimage")

_PROBE = """
import sys, runpy
sys.argv = ["slitcli", *{args!r}]
try:
    runpy.run_module("slitcli", run_name="__main__")
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def entry_point() -> list[str]:
    exe = shutil.which("slitcli")
    return [exe] if exe else [sys.executable, "-m", "slitcli"]


def wall_times(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return times


def heavy_imports(args: tuple[str, ...]) -> str:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(args=list(args), heavy=HEAVY)], capture_output=True, text=True, check=True)
    line = [x for x in out.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return line[len("HEAVY="):] or "none"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args()
    base = entry_point()
    wall_times(base + ["--version"], 1)  # warm the file cache
    print(f"entry point: {' '.join(base)}")
    print(f"{'command':<28} {'median [s]':>10} {'max [s]':>8}  heavy modules imported")
    for cmd in COMMANDS:
        t = wall_times(base + list(cmd), args.repeat)
        print(f"{'slitcli ' + ' '.join(cmd):<28} {statistics.median(t):>10.3f} {max(t):>8.3f}  {heavy_imports(cmd)}")


if __name__ == "__main__":
    main()
