"""Units of work per file, run in this process or on a Dask cluster.

A survey run is many independent files: shards of a simulation, fields to cut,
sample files to predict. Each is a *unit of work*: a pure function of its arguments
(one input or one shard index, a resolved configuration, a seed) that writes or
returns one output. `Executor` runs a list of them

- in this process, one after another (no ``--workers``, no ``--scheduler``);
- on a `dask.distributed.LocalCluster` of ``workers`` processes (``--workers N``);
- on an existing Dask cluster (``--scheduler ADDRESS`` or ``DASK_SCHEDULER_ADDRESS``),
  for example one started by dask-jobqueue on SLURM (docs/scaling.md).

Results do not depend on where or in which order the units ran: their seeds come from
the run's seed and the shard index (`shard_seed`), never from a worker. A unit whose
output already exists and records the same task (`task_id`, the ``TASKID`` card) is
skipped, so a run restarted after a crash does only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slitcli.errors import ConfigError, OutputExistsError, SlitcliError

__all__ = ["Task", "TaskFailed", "Executor", "shard_seed", "shard_ranges", "task_id", "read_task_id", "require_task", "file_identity", "scheduler_address"]

#: Times Dask retries a unit that raised (a worker that died is rescheduled anyway).
RETRIES = 2


@dataclass(frozen=True)
class Task:
    """One unit of work: ``func(*args, **kwargs)``, about ``label`` (the file named in messages)."""

    label: str
    func: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class TaskFailed(SlitcliError):
    """A unit of work failed on a worker, after its retries; the message names its file."""


def shard_seed(seed: int, index: int) -> int:
    """Seed of shard `index` of a run seeded `seed` (a non-negative 63-bit integer).

    The `index`-th child of ``numpy.random.SeedSequence(seed).spawn(...)``: shards get
    independent streams, and shard `index` is the same whichever shards run with it.
    """
    child = np.random.SeedSequence(seed, spawn_key=(index,))
    hi, lo = (int(v) for v in child.generate_state(2, np.uint32))
    return ((hi << 32) | lo) >> 1


def shard_ranges(n: int, n_shards: int) -> list[tuple[int, int]]:
    """Split `n` items into `n_shards` contiguous ``(start, stop)`` ranges, sizes differing by at most 1."""
    if not 1 <= n_shards <= n:
        msg = f"cannot split {n} sources into {n_shards} shards: need 1 <= shards <= sources"
        raise ConfigError(msg)
    edges = [k * n // n_shards for k in range(n_shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


def file_identity(path: str | Path | None) -> list | None:
    """``[name, size in bytes]`` of an input file (cheap, and enough to tell a replaced file)."""
    if path is None:
        return None
    path = Path(path)
    return [path.name, path.stat().st_size]


def task_id(**resolved) -> str:
    """16-hex-digit digest of a unit's resolved inputs (JSON-serialisable values).

    Written as the ``TASKID`` card of the unit's output; an existing output with the same
    digest is the same task done before and is skipped.
    """
    text = json.dumps(resolved, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_task_id(path: str | Path) -> str | None:
    """The ``TASKID`` of output `path`, or None.

    From a sample file's primary header, a FITS catalogue's ``REDSHIFTS`` header, an ECSV
    catalogue's meta, or a field directory's catalog.fits.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "catalog.fits"
    try:
        if path.suffix.lower() == ".ecsv":
            from astropy.table import Table

            return Table.read(path, format="ascii.ecsv").meta.get("TASKID")
        from astropy.io import fits

        with fits.open(path) as hdus:
            for hdu in hdus[:2]:
                if "TASKID" in hdu.header:
                    return hdu.header["TASKID"]
    except (OSError, ValueError):
        return None
    return None


def require_task(path, found: str | None, digest: str, made_by: str, redo: str = "pass --overwrite") -> None:
    """Refuse output `path` whose TASKID `found` is not this run's `digest` (`OutputExistsError`, one line).

    `made_by` says what differs ("was made by another run"); `redo` how to replace it.
    """
    if found != digest:
        msg = f"{path} {made_by} (TASKID {found or 'missing'}, this run's {digest}); remove it, or {redo}"
        raise OutputExistsError(msg)


def scheduler_address(scheduler: str | None) -> str | None:
    """The Dask scheduler to use: `scheduler`, else ``DASK_SCHEDULER_ADDRESS``, else None."""
    return scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _run(task: Task):
    """Run `task` on a Dask worker; any failure becomes one picklable line naming its file."""
    try:
        return task.func(*task.args, **task.kwargs)
    except SlitcliError as err:
        raise TaskFailed(str(err)) from None
    except Exception as err:  # a bug or a system error: keep its type in the line
        raise TaskFailed(f"{task.label}: {type(err).__name__}: {err}") from None


class Executor:
    """Where units of work run: here, on a local Dask cluster, or on an existing one.

    Parameters
    ----------
    workers : int, optional
        Start a `dask.distributed.LocalCluster` of this many worker processes, each with
        one task at a time and its share of the cores as Torch/Numba/BLAS threads (so
        that workers do not oversubscribe the machine).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); its workers must have
        slitcli installed. Not with `workers`.
    connect_timeout : float
        Seconds to wait for `scheduler`.

    Use as a context manager; `map` yields ``(index, result)`` as units complete.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None, connect_timeout: float = 30.0):
        if workers is not None and scheduler is not None:
            msg = "give --workers (a local cluster) or --scheduler (an existing one), not both"
            raise ConfigError(msg)
        if workers is not None and workers < 1:
            msg = f"--workers must be >= 1, got {workers}"
            raise ConfigError(msg)
        self.workers, self.scheduler, self.connect_timeout = workers, scheduler, connect_timeout
        self.client = self.cluster = None

    @property
    def distributed(self) -> bool:
        return self.workers is not None or self.scheduler is not None

    def __enter__(self):
        if not self.distributed:
            return self
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - a dependency
            msg = "--workers and --scheduler need dask.distributed: pip install 'dask[distributed]'"
            raise ConfigError(msg) from None
        if self.scheduler is not None:
            try:
                self.client = Client(self.scheduler, timeout=f"{self.connect_timeout}s")
            except (OSError, TimeoutError) as err:
                msg = f"cannot reach the Dask scheduler at {self.scheduler}: {err}"
                raise ConfigError(msg) from None
            return self
        threads = str(max(1, _cores() // self.workers))
        env = {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
        import logging

        self.cluster = LocalCluster(
            n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=":0",  # a free port: never "8787 in use" beside another cluster
            silence_logs=logging.ERROR, env=env,
        )
        self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None
        return False

    def map(self, tasks: list[Task]) -> Iterator[tuple[int, object]]:
        """Run `tasks`; yield ``(index in tasks, result)`` as each completes.

        In this process they run in order and errors propagate as they are. On Dask, a
        unit that raises is retried `RETRIES` times, then `TaskFailed` names its file; the
        other units are cancelled.
        """
        if self.client is None:
            for k, task in enumerate(tasks):
                yield k, task.func(*task.args, **task.kwargs)
            return
        from dask.distributed import as_completed

        futures = self.client.map(_run, tasks, retries=RETRIES, pure=False)
        index = {f.key: k for k, f in enumerate(futures)}
        try:
            for future in as_completed(futures):
                yield index[future.key], future.result()
        finally:
            self.client.cancel(futures)
