"""Every subcommand's file-system failures: one line naming the output, exit 1, nothing left behind, inputs untouched.

Disk full is tested with real operating-system errors, two ways: a tmpfs filled to the
last byte (ENOSPC; needs the privilege to mount, skipped without it) and a file size
limit (RLIMIT_FSIZE, EFBIG; works for any user), set in this process around the
command. A read-only location is a read-only tmpfs of our own, else a read-only file
system the machine already has (/sys in most containers), else an immutable directory
(chattr +i, for root), else, for a user other than root, a directory without write
permission; skipped if none exists. Interrupts
are real SIGINTs: to `python -m slitcli` subprocesses, and to this process while
`train` runs under typer's test runner.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY_SIM_YAML, assert_one_line_error, invoke, tiny_train_yaml
from typer.testing import CliRunner

runner = CliRunner()
SIM = TINY_SIM_YAML
TRAIN = tiny_train_yaml()
INTERRUPTED = "slitcli: interrupted; no partial output left"


def listing(d):
    """Every path under `d`, hidden ones included."""
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*"))


def digests(d):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Small inputs for every command: three samples, a tiny model, a catalogue; their hashes."""
    d = tmp_path_factory.mktemp("files")
    (d / "sim.yaml").write_text(SIM)
    (d / "train.yaml").write_text(TRAIN)
    for name, n, seed in (("train", 24, 1), ("val", 16, 2), ("test", 8, 3)):
        assert invoke("simulate", "-n", n, "--seed", seed, "--config", d / "sim.yaml", "-q", "-o", d / f"{name}.fits").exit_code == 0
    result = invoke("train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "-q", "-o", d / "model")
    assert result.exit_code == 0, result.output
    result = invoke("predict", d / "test.fits", "-m", d / "model", "--n-mc", 2, "-q", "-o", d / "z.ecsv")
    assert result.exit_code == 0, result.output
    return d, digests(d)


def assert_untouched(work):
    d, before = work
    assert digests(d) == before


# What each command writes ("file" or "dir") and its arguments with output `o`.
COMMANDS = {
    "simulate": ("file", ".fits", lambda d, o: ["simulate", "-n", 4, "--seed", 5, "--config", d / "sim.yaml", "-q", "-o", o]),
    "augment": ("file", ".fits", lambda d, o: ["augment", d / "test.fits", "--copies", 2, "-q", "-o", o]),
    "train": ("dir", "", lambda d, o: ["train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "-q", "-o", o]),
    "predict": ("file", ".ecsv", lambda d, o: ["predict", d / "test.fits", "-m", d / "model", "--n-mc", 2, "-q", "-o", o]),
    "predict-fits": ("file", ".fits", lambda d, o: ["predict", d / "test.fits", "-m", d / "model", "--n-mc", 2, "-q", "-o", o]),
    "calibrate": ("dir", "", lambda d, o: ["calibrate", d / "val.fits", "-m", d / "model", "--n-mc", 2, "--gaussian", "-q", "-o", o]),
    "evaluate": ("dir", "", lambda d, o: ["evaluate", d / "z.ecsv", "--truth", d / "test.fits", "-q", "-o", o]),
}
FILE_COMMANDS = [c for c, (kind, _, _) in COMMANDS.items() if kind == "file"]
DIR_COMMANDS = [c for c, (kind, _, _) in COMMANDS.items() if kind == "dir"]


def run_command(work, name, out, *extra):
    return invoke(*COMMANDS[name][2](work[0], out), *extra)


def output_name(name):
    return "out" + COMMANDS[name][1]


# ---------------------------------------------------------------- disk full


def _mount(*args) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def full_tmpfs(tmp_path_factory):
    """A tmpfs with no byte left (a filler file took them all)."""
    d = tmp_path_factory.mktemp("full")
    if not _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); the file size limit case covers the same code")
    try:
        fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


@contextlib.contextmanager
def file_size_limit(nbytes):
    """RLIMIT_FSIZE for this process: a write past `nbytes` fails with EFBIG (SIGXFSZ ignored)."""
    resource = pytest.importorskip("resource")
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    if old[1] != resource.RLIM_INFINITY and old[1] < nbytes:
        pytest.skip("hard file size limit too low")
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("how", ["no space (tmpfs)", "file size limit"])
@pytest.mark.parametrize("name", COMMANDS)
def test_disk_full(work, tmp_path, request, name, how):
    if how == "no space (tmpfs)":
        where, reason, limit = request.getfixturevalue("full_tmpfs"), "No space left on device", contextlib.nullcontext()
    else:
        where, reason, limit = tmp_path, "File too large", file_size_limit(1024)
    before = listing(where)
    out = where / "new" / output_name(name) if COMMANDS[name][0] == "dir" else where / output_name(name)
    with limit:
        result = run_command(work, name, out)
    assert_one_line_error(result, str(out), reason)
    assert listing(where) == before  # no partial or temporary file, no directory
    assert_untouched(work)


# ---------------------------------------------------------------- read-only location


def _read_only_mounts():
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            _, point, fstype, options = line.split()[:4]
            if "ro" in options.split(",") and point in ("/sys", "/proc/sys", "/sys/fs/cgroup"):
                yield Path(point)


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A directory where nothing can be created: (path, the system's reason, whether it is ours to list)."""
    d = tmp_path_factory.mktemp("readonly")
    if _mount("-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)):
        try:
            yield d, "Read-only file system", True
        finally:
            subprocess.run(["umount", str(d)], check=False)
        return
    for point in _read_only_mounts():
        if point.is_dir() and not os.access(point, os.W_OK):
            yield point, "Read-only file system", False
            return
    if os.geteuid() == 0 and shutil.which("chattr") and subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0:
        try:  # an immutable directory: not even root may create in it
            yield d, "Operation not permitted", True
        finally:
            subprocess.run(["chattr", "-i", str(d)], check=False)
        return
    if os.geteuid() != 0:
        d.chmod(0o555)
        try:
            yield d, "Permission denied", True
        finally:
            d.chmod(0o755)
        return
    pytest.skip("no read-only location: cannot mount, no read-only file system mounted, no immutable attribute, and root ignores permissions")


@pytest.mark.parametrize("name", COMMANDS)
def test_read_only_directory(work, read_only, name):
    where, reason, ours = read_only
    out = where / f"slitcli-test-{output_name(name)}"
    before = listing(where) if ours else None
    result = run_command(work, name, out)
    assert_one_line_error(result, str(out), reason)
    assert not out.exists()
    if ours:
        assert listing(where) == before
    assert_untouched(work)


# ---------------------------------------------------------------- the wrong kind of path


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)], ids=["", "overwrite"])
@pytest.mark.parametrize("name", FILE_COMMANDS)
def test_output_is_a_directory(work, tmp_path, name, overwrite):
    out = tmp_path / output_name(name)
    out.mkdir()
    (out / "keep").write_text("x")
    assert_one_line_error(run_command(work, name, out, *overwrite), str(out), "is a directory")
    assert listing(tmp_path) == [out.name, f"{out.name}/keep"] and (out / "keep").read_text() == "x"
    assert_untouched(work)


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)], ids=["", "overwrite"])
@pytest.mark.parametrize("name", DIR_COMMANDS)
def test_output_is_a_regular_file(work, tmp_path, name, overwrite):
    out = tmp_path / "out"
    out.write_text("not a directory")
    assert_one_line_error(run_command(work, name, out, *overwrite), str(out), "not a directory")
    assert listing(tmp_path) == ["out"] and out.read_text() == "not a directory"
    assert_untouched(work)


@pytest.mark.parametrize("name", COMMANDS)
def test_missing_or_bad_parent(work, tmp_path, name):
    if COMMANDS[name][0] == "file":
        out, reason = tmp_path / "no" / output_name(name), "does not exist"
    else:  # a directory output's missing parents are made; one that is a file is refused
        (tmp_path / "no").write_text("x")
        out, reason = tmp_path / "no" / "out", "is not a directory"
    assert_one_line_error(run_command(work, name, out), str(out), reason)
    assert listing(tmp_path) == ([] if COMMANDS[name][0] == "file" else ["no"])
    assert_untouched(work)


def test_a_directory_output_and_its_parents_are_made(work, tmp_path):
    out = tmp_path / "a" / "b" / "report"
    result = run_command(work, "evaluate", out)
    assert result.exit_code == 0, result.output
    assert "metrics.ecsv" in listing(out)


# ---------------------------------------------------------------- -o naming an input


def _input_case(name, d, tmp_path):
    """(arguments whose -o names one of the inputs, the path the error names)."""
    if name == "simulate":
        return COMMANDS[name][2](d, d / "sim.yaml"), d / "sim.yaml"
    if name in ("augment", "predict-fits"):
        return COMMANDS[name][2](d, d / "test.fits"), d / "test.fits"
    if name == "predict":
        return ["predict", d / "test.fits", d / "z.ecsv", "-m", d / "model", "--n-mc", 2, "-q", "-o", d / "z.ecsv"], d / "z.ecsv"
    if name == "train":
        return [*COMMANDS[name][2](d, d / "model"), "--init-from", d / "model"], d / "model"
    if name == "calibrate":
        return COMMANDS[name][2](d, d / "model"), d / "model"
    # evaluate: the report directory already holds the prediction catalogue as metrics.ecsv
    (tmp_path / "rep").mkdir()
    shutil.copy(d / "z.ecsv", tmp_path / "rep" / "metrics.ecsv")
    return ["evaluate", tmp_path / "rep" / "metrics.ecsv", "--truth", d / "test.fits", "-q", "-o", tmp_path / "rep"], tmp_path / "rep" / "metrics.ecsv"


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)], ids=["", "overwrite"])
@pytest.mark.parametrize("name", COMMANDS)
def test_output_is_an_input(work, tmp_path, name, overwrite):
    args, named = _input_case(name, work[0], tmp_path)
    before, names = digests(tmp_path), listing(tmp_path)
    assert_one_line_error(invoke(*args, *overwrite), f"{named}: output is also an input")
    assert digests(tmp_path) == before and listing(tmp_path) == names
    assert_untouched(work)


# ---------------------------------------------------------------- two writers, one output


RACERS = {
    "augment": ("aug.fits", lambda d, o: ["augment", d / "test.fits", "--copies", "2", "-o", o]),
    "train": ("model", lambda d, o: ["train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "-o", o]),
    "calibrate": ("model", lambda d, o: ["calibrate", d / "val.fits", "-m", d / "model", "--gaussian", "--n-mc", "2", "-o", o]),
}


@pytest.mark.parametrize("name", sorted(RACERS))
def test_two_processes_writing_one_output(work, tmp_path, name):
    d = work[0]
    target, args = RACERS[name]
    out = tmp_path / target
    command = [sys.executable, "-m", "slitcli", *map(str, args(d, out)), "-q"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert len(loser.splitlines()) == 1 and loser.startswith(f"slitcli: error: {out}") and "output exists; use --overwrite to replace it" in loser, loser
    assert sorted(p.name for p in tmp_path.iterdir()) == [target]
    assert not [p for p in listing(tmp_path) if p.endswith(".tmp")]
    if name == "augment":
        import fitsio

        with fitsio.FITS(str(out)) as f:
            assert f[0].read_header()["NSOURCE"] == 16 and f["AUGMENT"].get_nrows() == 16
    else:  # the winner's model is whole: weights and card from one run
        from slitcli.nn.modelfile import load_model

        assert load_model(out).card["name"] == "model"
    assert_untouched(work)


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_while_simulate_writes(tmp_path):
    out = tmp_path / "x.fits"
    proc = subprocess.Popen([sys.executable, "-m", "slitcli", "simulate", "-n", "3000", "-q", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".x.fits.*.tmp")):  # writing has begun
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "simulate did not start writing"
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.splitlines() == [INTERRUPTED]
    assert listing(tmp_path) == []


def test_ctrl_c_while_modules_import(tmp_path):
    """SIGINT as soon as `slitcli.cli.main` has imported typer: the commands, astropy and numba are still loading."""
    out = tmp_path / "x.fits"
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "slitcli", "simulate", "-n", "5", "-q", "-o", str(out)], stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.split("|")[-1].strip() == "typer":
                t0 = time.monotonic()
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [x for x in rest.splitlines() if not x.startswith("import time:")]
    assert proc.returncode == 130, "".join(seen[-5:]) + rest
    assert lines == [INTERRUPTED]
    assert time.monotonic() - t0 < 30
    assert listing(tmp_path) == []


def test_ctrl_c_while_train_runs(work, tmp_path):
    """A real SIGINT to this process during epoch 2: exit 130, one line, no temporary file; the epoch-1 checkpoint stays for --resume."""
    d = work[0]
    # Long enough that the interrupt lands mid-run however loaded the machine: no early stop.
    long_run = TRAIN.replace("pretrain_epochs: 1", "pretrain_epochs: 500").replace("min_snr: 0.0", "min_snr: 0.0\n  patience: 1000")
    assert "patience: 1000" in long_run and "pretrain_epochs: 500" in long_run
    (tmp_path / "long.yaml").write_text(long_run)
    out = tmp_path / "model"
    running = threading.Event()
    done = threading.Event()

    def interrupt():
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.01)
        if running.is_set() and not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt)
    running.set()
    watcher.start()
    try:
        result = invoke("train", d / "train.fits", "--val", d / "val.fits", "--config", tmp_path / "long.yaml", "-q", "-o", out)
    finally:
        done.set()
        watcher.join()
    assert result.exit_code == 130, result.output
    assert result.output.splitlines() == [INTERRUPTED]
    assert listing(tmp_path) == ["long.yaml", "model", "model/checkpoint.pt"]
    assert_untouched(work)


def test_interrupt_before_any_checkpoint_leaves_no_directory(work, tmp_path, monkeypatch):
    """Ctrl-C while the first checkpoint is being written: its temporary file and the new directories go."""
    write_bytes = Path.write_bytes

    def interrupted(self, data):
        if self.name.startswith(".checkpoint.pt."):
            write_bytes(self, bytes(data)[:100])
            raise KeyboardInterrupt
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    d = work[0]
    out = tmp_path / "new" / "model"
    result = invoke(*COMMANDS["train"][2](d, out))
    assert result.exit_code == 130 and result.output.splitlines() == [INTERRUPTED]
    assert listing(tmp_path) == []
