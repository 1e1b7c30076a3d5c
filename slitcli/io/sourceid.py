"""SOURCE_ID across files: refuse inputs whose IDs collide, and record which input each row came from.

``SOURCE_ID`` is the join key of every slitcli file. A catalogue built from several
sample files is only joinable if no ID occurs in two of them (`slitcli simulate
--first-id` gives each run its own range). `check_unique_source_ids` refuses a
collision in one line; `stack_inputs` stacks the per-file catalogues and adds an
``INPUT_FILE`` column, so that (``INPUT_FILE``, ``SOURCE_ID``) identifies a row even
when collisions were accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from slitcli.errors import InputError
from slitcli.io.samplefile import SampleReader

__all__ = ["read_source_ids", "check_unique_source_ids", "input_names", "stack_inputs"]


def read_source_ids(path: str | Path) -> np.ndarray:
    """SOURCE_IDs of sample file `path` in cube order (int64).

    From its ``SOURCES`` table; a file without one gets the running index 0, 1, ...
    that `slitcli.io.redshift.source_identity` gives its rows.
    """
    with SampleReader(path) as reader:
        sources = reader.sources()
        if sources is None:
            return np.arange(reader.n, dtype=np.int64)
        if "SOURCE_ID" not in sources.colnames:
            msg = f"{path}: HDU SOURCES has no SOURCE_ID column"
            raise InputError(msg)
        return np.asarray(sources["SOURCE_ID"], dtype=np.int64)


def check_unique_source_ids(paths) -> None:
    """Raise `InputError` if a SOURCE_ID occurs in two of the sample files `paths`.

    The one-line message names both files, one shared ID and how many IDs are shared.
    IDs repeated within one file are that file's own affair and are not checked here.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        return
    ids = [np.unique(read_source_ids(p)) for p in paths]
    all_ids = np.concatenate(ids)
    owner = np.repeat(np.arange(len(paths)), [a.size for a in ids])
    order = np.argsort(all_ids, kind="stable")
    all_ids, owner = all_ids[order], owner[order]
    same = np.flatnonzero(all_ids[1:] == all_ids[:-1])
    if same.size == 0:
        return
    k = same[0]
    first, second = paths[owner[k]], paths[owner[k + 1]]
    n_shared = np.unique(all_ids[same]).size
    if first.resolve() == second.resolve():
        msg = f"{first} is given twice (SOURCE_ID {all_ids[k]} and {n_shared - 1} more would repeat); pass --allow-duplicate-ids to keep both"
        raise InputError(msg)
    msg = (
        f"{first} and {second} both hold SOURCE_ID {all_ids[k]} ({n_shared} ID(s) occur in more than one input); "
        "simulate each file with its own --first-id, or pass --allow-duplicate-ids to tell rows apart by INPUT_FILE"
    )
    raise InputError(msg)


def input_names(paths) -> list[str]:
    """The ``INPUT_FILE`` value of each of `paths`: its file name, or the path as given if two names coincide."""
    paths = [Path(p) for p in paths]
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def stack_inputs(tables: list[Table], paths) -> Table:
    """Stack the catalogues of `paths` (one table each, same order), with ``INPUT_FILE`` after ``SOURCE_ID``."""
    names = input_names(paths)
    if len(tables) != len(names):
        msg = f"{len(tables)} tables for {len(names)} input files"
        raise ValueError(msg)
    stacked = vstack(tables, metadata_conflicts="silent")
    column = np.repeat(np.array(names, dtype=str), [len(t) for t in tables])
    index = stacked.colnames.index("SOURCE_ID") + 1 if "SOURCE_ID" in stacked.colnames else 0
    stacked.add_column(column, name="INPUT_FILE", index=index)
    return stacked
