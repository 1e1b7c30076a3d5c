"""The command line's help and version load none of the heavy libraries (what keeps them quick).

Timing itself lives in benchmarks/cli_startup.py; here only which modules get imported.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "astropy", "numba", "matplotlib", "scipy", "fitsio", "skimage", "kcorrect")

PROBE = """
import runpy, sys
sys.argv = ["slitcli", *sys.argv[1:]]
try:
    runpy.run_module("slitcli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], *[[c, "--help"] for c in ("simulate", "cutout", "augment", "train", "predict", "calibrate", "evaluate")]],
)
def test_help_imports_no_heavy_library(args):
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "help/version printed nothing"
    heavy = [x for x in out.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    assert heavy == "HEAVY=", f"slitcli {' '.join(args)} imported {heavy[6:]}"
