"""What the studies share (accuracy.py, routes.py): steps that resume, and their tables in the docs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


class Study:
    """Runs the steps, skipping any whose output exists (so an interrupted study resumes); their wall times go to ``out/timings.json``."""

    def __init__(self, out: Path, args=None):
        self.out = out
        self.args = args
        self.times_path = out / "timings.json"
        self.times = json.loads(self.times_path.read_text()) if self.times_path.exists() else {}

    def run(self, name: str, output: Path, *command):
        """Run `slitcli *command` unless `output` exists."""
        self.timed(name, output, lambda: subprocess.run(["slitcli", *[str(c) for c in command]], check=True))

    def timed(self, name: str, output: Path, fn):
        """Call `fn()` unless `output` exists, and record its wall time under `name`."""
        if output.exists():
            return
        print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        fn()
        self.times[name] = round(time.perf_counter() - start, 1)
        self.times_path.write_text(json.dumps(self.times, indent=1))


def write_block(path: Path, text: str, begin: str, end: str) -> None:
    """Put `text` between the markers `begin` and `end` of `path` (added at its end if absent), keeping what is outside them."""
    old = path.read_text() if path.exists() else f"# Results\n\n{begin}\n{end}\n"
    if begin not in old or end not in old:
        old = old.rstrip() + f"\n\n{begin}\n{end}\n"
    head, rest = old.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n{text.rstrip(chr(10))}\n{end}{tail}")
