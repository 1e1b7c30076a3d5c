"""Units of work here and on Dask: shard seeds, task digests, the executor, failures and retries."""

from __future__ import annotations

import os

import numpy as np
import pytest

from slitcli.errors import ConfigError
from slitcli.parallel import Executor, Task, TaskFailed, shard_ranges, shard_seed, task_id


def test_shard_seed_is_the_spawned_child_and_independent_of_the_others():
    children = np.random.SeedSequence(7).spawn(3)
    for k, child in enumerate(children):
        hi, lo = (int(v) for v in child.generate_state(2, np.uint32))
        assert shard_seed(7, k) == ((hi << 32) | lo) >> 1
    seeds = {shard_seed(7, k) for k in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert shard_seed(7, 0) != shard_seed(8, 0)


def test_shard_ranges_cover_every_item_once():
    ranges = shard_ranges(10, 3)
    assert ranges == [(0, 3), (3, 6), (6, 10)]
    assert shard_ranges(5, 5) == [(k, k + 1) for k in range(5)]
    with pytest.raises(ConfigError, match="6 shards"):
        shard_ranges(5, 6)


def test_task_id_depends_on_every_value_and_not_on_key_order():
    a = task_id(seed=1, config={"x": 1, "y": [1, 2]})
    assert a == task_id(config={"y": [1, 2], "x": 1}, seed=1)
    assert len(a) == 16
    assert a != task_id(seed=2, config={"x": 1, "y": [1, 2]})
    assert a != task_id(seed=1, config={"x": 1, "y": [2, 1]})


def test_in_process_runs_in_order_and_lets_errors_through():
    with Executor() as ex:
        assert not ex.distributed
        assert list(ex.map([Task(str(k), pow, (k, 2)) for k in range(4)])) == [(0, 0), (1, 1), (2, 4), (3, 9)]
        with pytest.raises(ZeroDivisionError):
            list(ex.map([Task("x", divmod, (1, 0))]))


def test_workers_and_scheduler_are_exclusive():
    with pytest.raises(ConfigError, match="not both"):
        Executor(workers=2, scheduler="tcp://127.0.0.1:1")


def test_an_unreachable_scheduler_is_one_line():
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"), Executor(scheduler="tcp://127.0.0.1:9", connect_timeout=1) as ex:
        list(ex.map([]))


def _fail_first(marker, value):
    """Raise the first time it runs (made on any worker), return `value` afterwards."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return value
    os.close(fd)
    raise OSError("a transient failure")


def _always_fail(path):
    raise ValueError(f"cannot read {path}")


@pytest.mark.slow
def test_local_cluster_retries_a_failed_unit_and_names_the_file_of_one_that_keeps_failing(tmp_path):
    with Executor(workers=2) as ex:
        assert ex.distributed
        tasks = [Task(f"file{k}.fits", _fail_first, (str(tmp_path / "failed-once"), k)) for k in range(4)]
        assert sorted(ex.map(tasks)) == [(k, k) for k in range(4)]
        assert (tmp_path / "failed-once").exists()  # one attempt did fail, and was retried
        with pytest.raises(TaskFailed, match=r"^bad\.fits: ValueError: cannot read bad\.fits$"):
            list(ex.map([Task("bad.fits", _always_fail, ("bad.fits",))]))
