"""A simulation split into shards: one sample file or one field directory each.

A survey-sized mock is many files, simulated on many machines. Shard ``k`` of a run
with seed ``S`` is a pure unit of work:

- its seed is `slitcli.parallel.shard_seed` (S, k), written as ``SEED`` with the run's
  ``RUNSEED``, ``SHARD`` and ``NSHARDS``: a shard can be remade alone;
- its SOURCE_IDs are its own: sample shards number the run's sources consecutively
  (shard ``k`` starts where shard ``k - 1`` stopped), field shards start at
  ``first_id + k * FIELD_ID_STRIDE``;
- field shards are adjacent pointings along RA, so their catalogues can be merged;
- its output records ``TASKID`` (`slitcli.parallel.task_id` of everything it depends on):
  an existing output with the same TASKID is skipped, one with another is refused.

So the files do not depend on how many workers made them, or in which order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slitcli.config import config_hash, to_dict
from slitcli.errors import ConfigError
from slitcli.io.files import make_directory
from slitcli.parallel import Task, read_task_id, require_task, shard_ranges, shard_seed, task_id

__all__ = ["FIELD_ID_STRIDE", "Shard", "ShardRun", "sample_shards", "field_shards", "pending_shards", "shard_name", "run_sample_shards", "run_field_shards"]

#: SOURCE_IDs reserved per field shard (a full CSST chip to i = 23.5 holds about 2,300 sources).
FIELD_ID_STRIDE = 10_000_000


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `n_shards`: its output `path`, seed, sources and task digest."""

    index: int
    n_shards: int
    path: Path
    seed: int
    run_seed: int
    start: int
    stop: int
    first_id: int | None
    task: str

    def cards(self) -> dict:
        """Header cards recording where this shard comes from."""
        return {
            "RUNSEED": (self.run_seed, "Seed of the whole run (SEED: this shard's)"),
            "SHARD": (self.index, "Shard number (0-based)"),
            "NSHARDS": (self.n_shards, "Shards in the run"),
            "TASKID": (self.task, "Digest of the shard's inputs (skip if equal)"),
        }


def shard_name(prefix: str, index: int, n_shards: int) -> str:
    """``prefix_0007``: at least 4 digits, more if the run has more shards."""
    width = max(4, len(str(n_shards - 1)))
    return f"{prefix}_{index:0{width}d}"


def _identity(instrument, config, engine, provider_id) -> dict:
    return {"instrument": config_hash(instrument), "config": to_dict(config), "engine": engine, "input": provider_id}


class _Offset:
    """Sources `start` .. of `provider`, counted from `offset` (shard `k`'s part of the run)."""

    def __init__(self, provider, offset: int):
        self.provider, self.offset = provider, offset

    def __call__(self, start, count, rng):
        return self.provider(self.offset + start, count, rng)


def sample_shards(directory, n: int, n_shards: int, seed: int, *, first_id: int | None, instrument, config, engine: str, provider_id) -> list[Shard]:
    """The shards of `n` sources into `directory`/sample_NNNN.fits.

    `first_id` is the embedded population's first SOURCE_ID (None for input files, whose
    sources keep their IDs); `provider_id` names the inputs (e.g. ``embedded`` or the input
    files' names and sizes) for the task digest.
    """
    directory = Path(directory)
    common = _identity(instrument, config, engine, provider_id)
    shards = []
    for k, (start, stop) in enumerate(shard_ranges(n, n_shards)):
        s = shard_seed(seed, k)
        fid = None if first_id is None else first_id + start
        digest = task_id(**common, seed=s, start=start, stop=stop, first_id=fid)
        shards.append(Shard(k, n_shards, directory / f"{shard_name('sample', k, n_shards)}.fits", s, seed, start, stop, fid, digest))
    return shards


def write_sample_shard(shard: Shard, provider, instrument, config, engine: str, provenance: dict, replace: bool = False) -> int:
    """Simulate shard `shard` of a sample run (`slitcli.sim.simulate.write_sample`); a unit of work.

    `replace`: overwrite the shard's existing file (`pending_shards` says when). Returns the
    number of sources written.
    """
    from slitcli.sim.simulate import write_sample

    cards = {**provenance, **shard.cards()}
    if shard.first_id is not None:
        cards["FIRSTID"] = (shard.first_id, "SOURCE_ID of the first source")
    write_sample(shard.path, _Offset(provider, shard.start), shard.stop - shard.start, instrument, config, shard.seed, provenance=cards, engine=engine, overwrite=replace)
    return shard.stop - shard.start


def field_shards(directory, n_shards: int, seed: int, *, first_id: int, instrument, config) -> tuple[list[Shard], list]:
    """The shards of a field run into `directory`/field_NNNN/, and each shard's `FieldConfig`.

    Shard ``k`` points ``k`` direct-image widths east of the configured centre (RA + k x
    width / cos Dec): the direct image, which holds every source whose light reaches the
    exposures, is wider than the detector, so the catalogues tile a strip of sky without
    overlap (at a position angle other than 0 the step is the image's diagonal).
    """
    from slitcli.sim.field_layout import field_geometry

    if n_shards < 1:
        msg = f"--shards must be >= 1, got {n_shards}"
        raise ConfigError(msg)
    ny, nx = field_geometry(instrument, config, 0).direct_shape
    width_pix = nx if config.position_angle_deg % 360.0 == 0 else float(np.hypot(nx, ny))
    step_deg = width_pix * instrument.pixel_scale_arcsec / 3600.0 / np.cos(np.radians(config.dec_deg))
    directory = Path(directory)
    shards, configs = [], []
    for k in range(n_shards):
        cfg = dataclasses.replace(config, ra_deg=float((config.ra_deg + k * step_deg) % 360.0))
        field_geometry(instrument, cfg, 0)  # a bad pointing fails here, before any work
        s = shard_seed(seed, k)
        fid = first_id + k * FIELD_ID_STRIDE
        digest = task_id(instrument=config_hash(instrument), config=to_dict(cfg), seed=s, first_id=fid)
        shards.append(Shard(k, n_shards, directory / shard_name("field", k, n_shards), s, seed, 0, 0, fid, digest))
        configs.append(cfg)
    return shards, configs


def write_field_shard(shard: Shard, instrument, config, instrument_file: str, replace: bool = False) -> int:
    """Draw and simulate field shard `shard` (embedded population) into its directory; a unit of work.

    `replace`: overwrite the shard's existing files. Returns the number of sources written.
    """
    from slitcli.sim.field import default_field_sources, write_field

    sources = default_field_sources(instrument, config, shard.seed, first_id=shard.first_id)
    if len(sources) >= FIELD_ID_STRIDE:
        msg = f"{shard.path}: {len(sources)} sources overflow a shard's {FIELD_ID_STRIDE} SOURCE_IDs"
        raise ConfigError(msg)
    summary = write_field(shard.path, sources, instrument, config, shard.seed, instrument_file=instrument_file, cards=shard.cards(), overwrite=replace)
    return summary.n_sources


def pending_shards(shards: list[Shard], overwrite: bool, complete=None) -> tuple[list[tuple[Shard, bool]], list[Shard]]:
    """Split `shards` into (to do, done before); each to-do shard comes with whether to replace its output.

    A shard is done when its output exists, is `complete` (a callable of the shard; default:
    it exists) and records the same TASKID; an incomplete one of the same task (a field
    whose files were not all published) is redone. An existing output of another task is
    refused, unless `overwrite` (then every shard is redone).
    """
    todo, done = [], []
    for shard in shards:
        exists = shard.path.exists() or shard.path.is_symlink()
        if overwrite or not exists:
            todo.append((shard, exists))
            continue
        require_task(shard.path, read_task_id(shard.path), shard.task, "was made by another run", "pass --overwrite to redo every shard")
        if complete is None or complete(shard):
            done.append(shard)
        else:
            todo.append((shard, True))
    return todo, done


def shard_tasks(todo: list[tuple[Shard, bool]], func, *args) -> list[Task]:
    """One `Task` per shard to do: ``func(shard, *args, replace=...)``."""
    return [Task(str(s.path), func, (s, *args), {"replace": replace}) for s, replace in todo]


@dataclass(frozen=True)
class ShardRun:
    """What a sharded run did: the shards' paths, those written now and those done before."""

    paths: tuple[Path, ...]
    written: int
    skipped: int
    n_sources: int


def _run(executor, n_shards: int, units: list[Task], progress) -> int:
    """Run the to-do `units` of a run of `n_shards` on `executor`; returns the sum of their results."""
    done = n_shards - len(units)
    if progress is not None:
        progress(done, n_shards)
    total = 0
    for _, result in executor.map(units):
        done += 1
        total += int(result)
        if progress is not None:
            progress(done, n_shards)
    return total


def run_sample_shards(directory, provider, n: int, n_shards: int, instrument, config, seed: int, *, first_id, engine: str, provenance: dict, provider_id, executor, overwrite: bool = False, inputs=(), progress=None) -> ShardRun:
    """Simulate `n` sources as `n_shards` sample files in `directory` on `executor` (`slitcli.parallel.Executor`).

    Shards already written by the same task are skipped (`pending_shards`).
    `progress(done, total)` counts shards.
    """
    from slitcli.io.files import check_output_path

    directory = check_output_path(directory, True, inputs, directory=True)
    shards = sample_shards(directory, n, n_shards, seed, first_id=first_id, instrument=instrument, config=config, engine=engine, provider_id=provider_id)
    make_directory(directory)
    todo, _ = pending_shards(shards, overwrite)
    _run(executor, len(shards), shard_tasks(todo, write_sample_shard, provider, instrument, config, engine, provenance), progress)
    return ShardRun(tuple(s.path for s in shards), len(todo), len(shards) - len(todo), n)



def run_field_shards(directory, n_shards: int, instrument, config, seed: int, *, first_id: int, instrument_file: str, executor, overwrite: bool = False, inputs=(), progress=None) -> ShardRun:
    """Simulate `n_shards` adjacent fields of the embedded population into `directory`/field_NNNN/.

    A field is done when all its files exist and its catalog.fits records the same TASKID.
    """
    from slitcli.io.files import check_output_path
    from slitcli.sim.field_layout import field_file_names

    directory = check_output_path(directory, True, inputs, directory=True)
    shards, configs = field_shards(directory, n_shards, seed, first_id=first_id, instrument=instrument, config=config)
    names = field_file_names(instrument, config)
    make_directory(directory)
    todo, _ = pending_shards(shards, overwrite, complete=lambda s: all((s.path / name).is_file() for name in names))
    units = [Task(str(s.path), write_field_shard, (s, instrument, configs[s.index], instrument_file), {"replace": replace}) for s, replace in todo]
    n_sources = _run(executor, len(shards), units, progress)
    return ShardRun(tuple(s.path for s in shards), len(todo), len(shards) - len(todo), n_sources)
