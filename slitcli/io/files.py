"""Output files a pipeline can trust: refuse what would clobber, write under a temporary name, publish atomically.

Every writer of slitcli takes the same steps:

1. `check_output_path` refuses, before any work: an existing output without
   ``overwrite``; an output that is one of the inputs (even with ``overwrite``); a
   directory where a file is expected and a regular file where a directory is
   expected; a file whose directory does not exist.
2. `atomic_output` hands out a temporary name beside the output (``.NAME.PID.tmp``,
   same file system) and removes it on any exception, Ctrl-C included. An
   operating-system error (disk full, read-only file system, ...) becomes one
   `~slitcli.errors.OutputError` that names the output, never the temporary file.
3. `publish` gives the complete file its name in one step. Without ``overwrite`` it
   makes a hard link (or, where the file system has none, creates the name with
   ``O_EXCL`` and renames over it), so of two processes writing the same new output
   exactly one wins and the other gets `~slitcli.errors.OutputExistsError`; with
   ``overwrite`` it renames over the old file (`os.replace`).

Model and report directories: `output_directory` creates the directory (and missing
parents) only when a writer needs it, and removes what it created if the writer fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path

from slitcli.errors import OutputError, OutputExistsError, SlitcliError

__all__ = ["atomic_output", "check_output_path", "make_directory", "output_directory", "output_error", "publish", "temporary_path"]

# link() errors of file systems without hard links (FAT, some network and FUSE mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


def _exists(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path}: output exists; use --overwrite to replace it")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare the names
        try:
            return a.resolve() == b.resolve()
        except (OSError, RuntimeError):
            return os.path.abspath(a) == os.path.abspath(b)


def check_output_path(path: str | Path, overwrite: bool, inputs=(), *, directory: bool = False, files=()) -> Path:
    """Refuse an output that cannot or must not be written; return it as a Path.

    Parameters
    ----------
    path : path
        The output file, or with `directory` the output directory.
    overwrite : bool
        Allow replacing an existing output file (or, with `directory`, existing `files`).
    inputs : iterable of path
        The command's input files and directories (None entries are skipped): an output
        that is one of them is refused even with `overwrite`.
    directory : bool
        `path` is a directory that receives `files`; it and its parents are created when
        written (`output_directory`), so they need not exist yet.
    files : iterable of str
        With `directory`: the names the directory receives.

    Raises
    ------
    OutputExistsError
        The output (or one of `files`) exists and `overwrite` is False.
    OutputError
        The output is an input, a directory where a file is expected or the reverse, or
        its directory is missing or not a directory.
    """
    path = Path(path)
    inputs = [Path(p) for p in inputs if p is not None]
    targets = [path, *(path / f for f in files)] if directory else [path]
    for target in targets:
        for source in inputs:
            if _same_file(target, source):
                raise OutputError(target, "output is also an input; write it under another name")
    if directory:
        if path.exists() and not path.is_dir():
            raise OutputError(path, "exists and is not a directory; expected a directory")
        for target in targets[1:]:
            if target.is_dir():
                raise OutputError(target, "is a directory; expected a file name")
            if not overwrite and (target.exists() or target.is_symlink()):
                raise _exists(target)
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OutputError(path, f"{ancestor} is not a directory")
        return path
    if path.is_dir():
        raise OutputError(path, "is a directory; expected a file name")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise _exists(path)
    if not path.parent.is_dir():
        reason = f"{path.parent} is not a directory" if path.parent.exists() else f"output directory {path.parent} does not exist"
        raise OutputError(path, reason)
    return path


def temporary_path(path: Path) -> Path:
    """A temporary name beside `path` (``.NAME.PID.tmp``), published as `path` when the file is complete."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def publish(tmp: str | Path, path: str | Path, overwrite: bool = False) -> Path:
    """Give the complete file `tmp` the name `path` in one step; `tmp` is gone afterwards.

    Without `overwrite` the name is created atomically: a hard link, or where the file
    system has none, an ``O_EXCL`` creation renamed over. If `path` exists (another
    process was first), `OutputExistsError` and `tmp` stays for the caller to remove.
    With `overwrite`, `os.replace`.
    """
    tmp, path = Path(tmp), Path(path)
    if overwrite:
        os.replace(tmp, path)
        return path
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise _exists(path) from None
        os.close(fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            _remove(path)
            raise
        return path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    return path


def _probe(tmp: Path) -> str | None:
    """The system's reason writing `tmp` fails, found by appending to it (64 KiB), or None if that works.

    cfitsio reports a failed write without an errno; this asks the file system again.
    The caller removes `tmp` afterwards.
    """
    try:
        with open(tmp, "ab") as f:
            f.write(bytes(1 << 16))
            f.flush()
    except OSError as err:
        return err.strerror or None
    return None


def output_error(path: str | Path, err: OSError, tmp: str | Path | None = None) -> OutputError:
    """The one-line `OutputError` naming `path` for `err`, raised while writing it (or its temporary file `tmp`).

    The reason is the system's (``No space left on device``). An error without an errno
    (cfitsio's) gets the system's reason by writing to `tmp` once more (`_probe`), else
    the first line of its message. Call it before the temporary file is removed.
    """
    path = Path(path)
    if err.errno is not None and err.strerror:
        return OutputError(path, err.strerror)
    text = str(err).strip()
    first = re.sub(r"^FITSIO status = \d+: ", "", text.splitlines()[0]).strip() if text else err.__class__.__name__
    return OutputError(path, (_probe(Path(tmp)) if tmp is not None else None) or first)


def _not_about(err: OSError, *paths: Path) -> bool:
    """True if `err` names a file other than `paths` (an input's read error: let it through as it is)."""
    return err.filename is not None and all(os.path.abspath(err.filename) != os.path.abspath(p) for p in paths)


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False):
    """Yield the temporary path to write `path` under; publish it when the block ends without error.

    On any exception (Ctrl-C included) the temporary file is removed and nothing is
    published; an `OSError` about the output becomes `OutputError` naming `path`.
    `publish` decides `overwrite`: without it, a `path` that appeared meanwhile (another
    process) gives `OutputExistsError`.

    Examples
    --------
    >>> with atomic_output("z.ecsv") as tmp:  # doctest: +SKIP
    ...     table.write(tmp, format="ascii.ecsv")
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path, overwrite)
    except SlitcliError:
        raise
    except OSError as err:
        if _not_about(err, tmp, path):
            raise
        raise output_error(path, err, tmp) from None
    finally:
        _remove(tmp)


@contextlib.contextmanager
def output_directory(path: str | Path):
    """Make directory `path` (and missing parents) for the block; remove what this call made if the block fails.

    A directory that existed before is never removed, nor one made here when the block
    fails because another process published its output there first (`OutputExistsError`). Failing to create it raises
    `OutputError` naming `path`.
    """
    path = Path(path)
    missing = []
    p = path
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        missing.append(p)
        p = p.parent
    created = None
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # made meanwhile by another process: not ours
                if not d.is_dir():
                    raise
                continue
            created = created or d
        if not path.is_dir():
            raise OutputError(path, "exists and is not a directory; expected a directory")
    except BaseException as err:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(err, OSError) and not isinstance(err, SlitcliError):
            raise output_error(path, err) from None
        raise
    try:
        yield path
    except BaseException as err:
        # Not when another process published the output first: the directory this call
        # made now holds that process's files (two runs racing for one output).
        if created is not None and not isinstance(err, OutputExistsError):
            shutil.rmtree(created, ignore_errors=True)
        raise


def make_directory(path: str | Path) -> Path:
    """Make directory `path` and its parents if missing (kept afterwards: it receives a run's shards).

    `OutputError` if it exists as something else or cannot be made.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "exists and is not a directory; expected a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(path, err) from None
    return path
