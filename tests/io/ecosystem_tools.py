"""Run the tools astronomers read our files with (fitsverify, STILTS) and parse what they say.

Missing tools skip the test, except in CI (CI=true), where .ci/run installs them.
"""

import os
import re
import shutil
import subprocess

import pytest


def require_tool(name: str, package: str) -> str:
    """Path of executable `name`; skip when it is missing, fail in CI."""
    exe = shutil.which(name)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI (.ci/run installs the Debian package {package})")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return exe


def fitsverify(path) -> tuple[int, int, str]:
    """(warnings, errors, full report) of fitsverify on `path`."""
    exe = require_tool("fitsverify", "fitsverify")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    m = re.search(r"Verification found (\d+) warning\(s\) and (\d+) error\(s\)", out.stdout)
    assert m, f"fitsverify gave no summary:\n{out.stdout}\n{out.stderr}"
    return int(m[1]), int(m[2]), out.stdout


_COLUMN = re.compile(r"^\s*(\d+): ([^\s(]+)\(([^)]*)\)(?:/(.*?))?(?: - (.*))?$")


def stilts_columns(path, fmt: str, hdu: str | None = None) -> dict[str, tuple[str, str]]:
    """Column name -> (unit, description) as ``stilts tpipe omode=meta`` lists them.

    The listing ends with a ``Columns`` section of lines ``  N: NAME(Class)/unit - description``
    (unit and description absent when empty); the number parsed must equal the
    ``Columns: N`` line of its head.
    """
    exe = require_tool("stilts", "stilts")
    location = f"{path}#{hdu}" if hdu else str(path)
    out = subprocess.run([exe, "tpipe", f"in={location}", f"ifmt={fmt}", "omode=meta"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n = int(re.search(r"^Columns:\s+(\d+)", out.stdout, re.MULTILINE)[1])
    head, sep, section = out.stdout.partition("\nColumns\n-------\n")
    assert sep, f"no Columns section in:\n{out.stdout}"
    columns = {}
    for line in section.splitlines():
        m = _COLUMN.match(line)
        if m:
            columns[m[2]] = ((m[4] or "").strip(), (m[5] or "").strip())
    assert len(columns) == n, f"parsed {len(columns)} of {n} columns from:\n{section}"
    return columns
