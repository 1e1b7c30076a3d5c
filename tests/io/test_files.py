"""slitcli.io.files: what is refused, atomic publishing, cleanup on every failure."""

import errno
import os
import threading

import pytest

from slitcli.errors import OutputError, OutputExistsError
from slitcli.io.files import (
    atomic_output,
    check_output_path,
    output_directory,
    output_error,
    publish,
    temporary_path,
)


def listing(d):
    """Every path under `d`, hidden ones included."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# ---------------------------------------------------------------- check_output_path


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "x.fits"
    out.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="x.fits: output exists; use --overwrite"):
        check_output_path(out, False)
    assert check_output_path(out, True) == out
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputExistsError):  # a dangling link is a name taken too
        check_output_path(tmp_path / "dangling", False)


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_input_is_never_an_output(tmp_path, monkeypatch, overwrite):
    src = tmp_path / "in.fits"
    src.write_bytes(b"data")
    (tmp_path / "link.fits").symlink_to(src)
    monkeypatch.chdir(tmp_path)
    for out in (src, "in.fits", tmp_path / "sub" / ".." / "in.fits", tmp_path / "link.fits"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputError, match="output is also an input"):
            check_output_path(out, overwrite, inputs=[None, tmp_path / "other.fits", "in.fits"])
    assert src.read_bytes() == b"data"


def test_file_and_directory_kinds(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="d: is a directory; expected a file name"):
            check_output_path(tmp_path / "d", overwrite)
        with pytest.raises(OutputError, match="f: exists and is not a directory"):
            check_output_path(tmp_path / "f", overwrite, directory=True, files=("a",))
    with pytest.raises(OutputError, match="output directory .*missing does not exist"):
        check_output_path(tmp_path / "missing" / "x.fits", False)
    with pytest.raises(OutputError, match="f is not a directory"):
        check_output_path(tmp_path / "f" / "x.fits", False)
    with pytest.raises(OutputError, match="f is not a directory"):
        check_output_path(tmp_path / "f" / "a" / "model", False, directory=True)
    # A directory output and its parents need not exist: they are made when written.
    assert check_output_path(tmp_path / "new" / "model", False, directory=True, files=("a",)) == tmp_path / "new" / "model"


def test_directory_files(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "a").write_text("x")
    with pytest.raises(OutputExistsError, match="model/a: output exists"):
        check_output_path(d, False, directory=True, files=("a", "b"))
    assert check_output_path(d, True, directory=True, files=("a", "b")) == d
    with pytest.raises(OutputError, match="model/a: output is also an input"):
        check_output_path(d, True, [tmp_path / "model" / "a"], directory=True, files=("a", "b"))
    with pytest.raises(OutputError, match="model: output is also an input"):
        check_output_path(d, True, [d], directory=True, files=("a", "b"))
    (d / "b").mkdir()
    with pytest.raises(OutputError, match="model/b: is a directory"):
        check_output_path(d, True, directory=True, files=("b",))


# ---------------------------------------------------------------- publish


def test_publish_without_overwrite_never_replaces(tmp_path):
    tmp, out = tmp_path / ".x.tmp", tmp_path / "x"
    tmp.write_bytes(b"new")
    assert publish(tmp, out) == out
    assert out.read_bytes() == b"new" and not tmp.exists()
    tmp.write_bytes(b"newer")
    with pytest.raises(OutputExistsError, match="x: output exists"):
        publish(tmp, out)
    assert out.read_bytes() == b"new" and tmp.read_bytes() == b"newer"  # the caller removes its tmp
    publish(tmp, out, overwrite=True)
    assert out.read_bytes() == b"newer" and not tmp.exists()
    assert out.stat().st_nlink == 1


def no_hard_links(monkeypatch):
    def link(src, dst, *a, **k):
        raise OSError(errno.EPERM, "Operation not permitted", str(src), None, str(dst))

    monkeypatch.setattr(os, "link", link)


def test_publish_without_hard_links_uses_exclusive_creation(tmp_path, monkeypatch):
    no_hard_links(monkeypatch)
    tmp, out = tmp_path / ".x.tmp", tmp_path / "x"
    tmp.write_bytes(b"new")
    publish(tmp, out)
    assert out.read_bytes() == b"new" and listing(tmp_path) == ["x"]
    tmp.write_bytes(b"newer")
    with pytest.raises(OutputExistsError):
        publish(tmp, out)
    assert out.read_bytes() == b"new"


@pytest.mark.parametrize("links", [True, False], ids=["hard link", "O_EXCL"])
def test_racing_writers_exactly_one_wins(tmp_path, monkeypatch, links):
    """Writers that all passed the existence check publish at the same instant: one wins, the rest are refused."""
    if not links:
        no_hard_links(monkeypatch)
    n_threads, rounds = 4, 100
    for r in range(rounds):
        out = tmp_path / f"out{r}"
        barrier = threading.Barrier(n_threads)
        results = [None] * n_threads

        def writer(k):
            tmp = tmp_path / f".out{r}.{k}.tmp"
            tmp.write_bytes(f"writer {k}".encode() * 1000)
            check_output_path(out, False)
            barrier.wait()
            try:
                publish(tmp, out)
                results[k] = "won"
            except OutputExistsError:
                results[k] = "exists"
                tmp.unlink()

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("won") == 1 and results.count("exists") == n_threads - 1, results
        assert out.read_bytes() == f"writer {results.index('won')}".encode() * 1000  # whole, not mixed
    assert len(listing(tmp_path)) == rounds  # no temporary file left


# ---------------------------------------------------------------- atomic_output, output_error


def test_atomic_output_publishes_only_on_success(tmp_path):
    out = tmp_path / "x.ecsv"
    with atomic_output(out) as tmp:
        assert tmp == temporary_path(out) and tmp.name == f".x.ecsv.{os.getpid()}.tmp"
        tmp.write_text("one")
    assert out.read_text() == "one" and listing(tmp_path) == ["x.ecsv"]
    with pytest.raises(OutputExistsError):
        with atomic_output(out) as tmp:
            tmp.write_text("two")
    assert out.read_text() == "one" and listing(tmp_path) == ["x.ecsv"]
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("three")
    assert out.read_text() == "three"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError, SystemExit])
def test_atomic_output_removes_its_temporary_file(tmp_path, exc):
    with pytest.raises(exc):
        with atomic_output(tmp_path / "x.fits") as tmp:
            tmp.write_bytes(b"partial")
            raise exc()
    assert listing(tmp_path) == []


def test_os_errors_become_one_line_naming_the_output(tmp_path):
    out = tmp_path / "x.fits"
    # A plain write's disk-full error carries no file name.
    with pytest.raises(OutputError) as info:
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(info.value) == f"{out}: No space left on device" and info.value.path == out
    # An error naming the temporary file names the output instead.
    with pytest.raises(OutputError, match=r"x.fits: Read-only file system$"):
        with atomic_output(out) as tmp:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp))
    # cfitsio's several lines without an errno: the first, without the status prefix.
    err = OSError("FITSIO status = 106: error writing to FITS file\nError writing data buffer to file:\n/x/.x.fits.1.tmp\n")
    assert str(output_error(out, err)) == f"{out}: error writing to FITS file"
    # ... and with its temporary file, the system's reason, found by writing to it again.
    assert str(output_error(out, err, tmp_path / "gone" / ".x.fits.1.tmp")) == f"{out}: No such file or directory"
    # An input's read error is not the output's: it goes through as it is.
    with pytest.raises(FileNotFoundError) as info:
        with atomic_output(out):
            open(tmp_path / "missing-input.fits", "rb")
    assert info.value.filename == str(tmp_path / "missing-input.fits")
    assert listing(tmp_path) == []


# ---------------------------------------------------------------- output_directory


def test_output_directory_removes_only_what_it_made(tmp_path):
    target = tmp_path / "a" / "b" / "model"
    with pytest.raises(KeyboardInterrupt):
        with output_directory(target) as d:
            (d / "checkpoint.pt").write_bytes(b"x")
            raise KeyboardInterrupt
    assert listing(tmp_path) == []
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep").write_text("x")
    with pytest.raises(OutputError):
        with output_directory(target) as d:
            raise OutputError(d / "model.json", "No space left on device")
    assert listing(tmp_path) == ["a", "a/keep"]
    with output_directory(target) as d:
        (d / "model.json").write_text("{}")
    assert (target / "model.json").exists()
    with pytest.raises(RuntimeError):
        with output_directory(target):
            raise RuntimeError
    assert (target / "model.json").exists()  # it was there before: kept


def test_output_directory_keeps_what_another_process_published_first(tmp_path):
    """Two runs race for one output directory: the one that made it loses the race to
    publish (OutputExistsError); the winner's files, written into that directory, stay."""
    target = tmp_path / "model"
    with pytest.raises(OutputExistsError):
        with output_directory(target) as d:
            (d / "model.json").write_text("{}")  # the other process publishes first
            with atomic_output(d / "model.json") as tmp:
                tmp.write_text("{}")
    assert listing(tmp_path) == ["model", "model/model.json"]


def test_output_directory_that_cannot_be_made(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"f/model: Not a directory"):
        with output_directory(tmp_path / "f" / "model"):
            pass
    with pytest.raises(OutputError, match=r"f: exists and is not a directory"):
        with output_directory(tmp_path / "f"):
            pass
    assert listing(tmp_path) == ["f"]
