"""simulate, cutout and predict on a 2-process Dask LocalCluster give the in-process run's bytes.

The cluster is local (no network beyond 127.0.0.1); its workers inherit SOURCE_DATE_EPOCH, so
DATE cards agree and whole files can be compared byte for byte.
"""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from slitcli.parallel import shard_seed
from slitcli.sim.shards import FIELD_ID_STRIDE
from conftest import assert_one_line_error, assert_usage_error, invoke

pytestmark = pytest.mark.slow


def _same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths of the files under `a`, after checking `b` holds the same names with the same bytes."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    for name in names:
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    return names


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes (1 thread each), started with SOURCE_DATE_EPOCH set."""
    from dask.distributed import LocalCluster

    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c.scheduler_address
    mp.undo()


@pytest.fixture(autouse=True)
def _epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def _here_and_there(root: Path, cluster: str, *args) -> Path:
    """Run `slitcli ARGS -o root/here` in this process and `... -o root/there` on `cluster`."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
    try:
        for where, extra in (("here", ()), ("there", ("--scheduler", cluster))):
            result = invoke(*args, "-q", "-o", root / where, *extra)
            assert result.exit_code == 0, result.output
    finally:
        mp.undo()
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory, cluster):
    """9 sources in 3 shards, in this process and on the cluster."""
    return _here_and_there(tmp_path_factory.mktemp("shards"), cluster, "simulate", "-n", 9, "--shards", 3, "--seed", 4)


def test_simulate_shards_on_the_cluster_are_the_in_process_bytes(shards):
    names = _same_tree(shards / "here", shards / "there")
    assert names == ["sample_0000.fits", "sample_0001.fits", "sample_0002.fits"]
    ids = []
    for k, name in enumerate(names):
        header = fits.getheader(shards / "here" / name)
        assert (header["SEED"], header["RUNSEED"], header["SHARD"], header["NSHARDS"]) == (shard_seed(4, k), 4, k, 3)
        ids.append(np.asarray(fits.getdata(shards / "here" / name, "SOURCES")["SOURCE_ID"]))
        assert header["FIRSTID"] == ids[-1][0]
    assert np.array_equal(np.concatenate(ids), np.arange(1, 10))


def test_a_rerun_skips_the_shards_done_and_refuses_those_of_another_run(shards):
    path = shards / "here" / "sample_0001.fits"
    before = path.stat().st_mtime_ns
    path_0 = shards / "here" / "sample_0000.fits"
    moved = path_0.rename(shards / "sample_0000.fits.away")  # as if the run had stopped before shard 0
    again = invoke("simulate", "-n", 9, "--shards", 3, "--seed", 4, "-o", shards / "here")
    assert again.exit_code == 0, again.output
    assert "wrote 1 shards" in again.output and "2 done before, skipped" in again.output
    assert path.stat().st_mtime_ns == before
    assert filecmp.cmp(path_0, moved, shallow=False)
    other = invoke("simulate", "-n", 9, "--shards", 3, "--seed", 5, "-o", shards / "here")
    assert_one_line_error(other, "sample_0000.fits was made by another run", "--overwrite")


@pytest.fixture(scope="module")
def fields(tmp_path_factory, cluster):
    """Two adjacent 384 x 384 fields, in this process and on the cluster."""
    return _here_and_there(tmp_path_factory.mktemp("fields"), cluster, "simulate", "--field", "--size", 384, "--shards", 2, "--seed", 3)


def test_field_shards_on_the_cluster_are_the_in_process_bytes(fields):
    names = _same_tree(fields / "here", fields / "there")
    assert len(names) == 2 * 10 and names[0].startswith("field_0000/")
    cats = [Table.read(fields / "here" / f"field_000{k}" / "catalog.fits", hdu="SOURCES") for k in range(2)]
    for k, cat in enumerate(cats):
        assert len(cat) > 0
        assert np.all((cat["SOURCE_ID"] >= 1 + k * FIELD_ID_STRIDE) & (cat["SOURCE_ID"] < 1 + (k + 1) * FIELD_ID_STRIDE))
    # Adjacent pointings: the second field lies east of the first, without overlap.
    assert cats[1]["RA"].min() > cats[0]["RA"].max()


def test_cutout_of_field_directories_on_the_cluster_is_the_in_process_bytes(fields, cluster, tmp_path):
    dirs = sorted((fields / "here").iterdir())
    here = invoke("cutout", *dirs, "-o", tmp_path / "here", "-q")
    there = invoke("cutout", *dirs, "-o", tmp_path / "there", "-q", "--scheduler", cluster)
    assert here.exit_code == 0, here.output
    assert there.exit_code == 0, there.output
    assert _same_tree(tmp_path / "here", tmp_path / "there") == ["field_0000.fits", "field_0001.fits"]
    before = (tmp_path / "here" / "field_0000.fits").stat().st_mtime_ns
    again = invoke("cutout", *dirs, "-o", tmp_path / "here", "-q")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "here" / "field_0000.fits").stat().st_mtime_ns == before
    refined = invoke("cutout", *dirs, "--refine", "-o", tmp_path / "here")
    assert_one_line_error(refined, "field_0000.fits was made from other inputs or options", "--overwrite")


def test_predict_on_the_cluster_with_per_file_catalogues_is_the_in_process_bytes(shards, cluster, tmp_path):
    inputs = sorted((shards / "there").glob("sample_*.fits"))
    common = ("--n-mc", 5, "-q")
    here = invoke("predict", *inputs, *common, "-o", tmp_path / "here.ecsv")
    assert here.exit_code == 0, here.output
    there = invoke("predict", *inputs, *common, "-o", tmp_path / "there.ecsv", "--scheduler", cluster, "--per-file", tmp_path / "per")
    assert there.exit_code == 0, there.output
    assert filecmp.cmp(tmp_path / "here.ecsv", tmp_path / "there.ecsv", shallow=False)
    per = sorted(p.name for p in (tmp_path / "per").iterdir())
    assert per == ["sample_0000.ecsv", "sample_0001.ecsv", "sample_0002.ecsv"]
    one = Table.read(tmp_path / "per" / "sample_0001.ecsv")
    assert set(one["INPUT_FILE"]) == {"sample_0001.fits"} and one.meta["TASKID"]
    # A restarted run reads the per-file catalogues instead of predicting again: same bytes.
    stamp = (tmp_path / "per" / "sample_0001.ecsv").stat().st_mtime_ns
    again = invoke("predict", *inputs, *common, "-o", tmp_path / "again.ecsv", "--per-file", tmp_path / "per")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "per" / "sample_0001.ecsv").stat().st_mtime_ns == stamp
    assert filecmp.cmp(tmp_path / "here.ecsv", tmp_path / "again.ecsv", shallow=False)
    other = invoke("predict", *inputs, "--n-mc", 6, "-o", tmp_path / "other.ecsv", "--per-file", tmp_path / "per")
    assert_one_line_error(other, "sample_0000.ecsv was made from another input or with other settings", "--overwrite")


def test_pdfs_through_per_file_fits_catalogues_are_the_in_process_bytes(shards, tmp_path):
    inputs = sorted((shards / "here").glob("sample_*.fits"))[:2]
    common = ("--n-mc", 5, "--pdf", "-q")
    here = invoke("predict", *inputs, *common, "-o", tmp_path / "here.fits")
    there = invoke("predict", *inputs, *common, "-o", tmp_path / "there.fits", "--per-file", tmp_path / "per")
    again = invoke("predict", *inputs, *common, "-o", tmp_path / "again.fits", "--per-file", tmp_path / "per")
    for result in (here, there, again):
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "per").iterdir()) == ["sample_0000.fits", "sample_0001.fits"]
    assert filecmp.cmp(tmp_path / "here.fits", tmp_path / "there.fits", shallow=False)
    assert filecmp.cmp(tmp_path / "here.fits", tmp_path / "again.fits", shallow=False)


def test_a_worker_killed_mid_run_is_replaced_and_the_catalogue_is_the_same(shards, tmp_path):
    """The first unit to start kills its worker process; Dask reschedules it elsewhere."""
    from dask.distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import WorkerPlugin

    marker = str(tmp_path / "killed")

    class KillOnce(WorkerPlugin):
        def transition(self, key, start, finish, **kwargs):
            if finish == "executing":
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.close(fd)
                os._exit(1)

    inputs = sorted((shards / "here").glob("sample_*.fits"))
    here = invoke("predict", *inputs, "--n-mc", 5, "-q", "-o", tmp_path / "here.ecsv")
    assert here.exit_code == 0, here.output
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, Client(c) as client:
        client.register_plugin(KillOnce())
        pids = set(client.run(os.getpid).values())
        there = invoke("predict", *inputs, "--n-mc", 5, "-q", "-o", tmp_path / "there.ecsv", "--scheduler", c.scheduler_address)
        assert there.exit_code == 0, there.output
        assert os.path.exists(marker)  # a worker did die
        assert set(client.run(os.getpid).values()) != pids  # and was replaced
    assert filecmp.cmp(tmp_path / "here.ecsv", tmp_path / "there.ecsv", shallow=False)


def test_usage_errors_of_the_scale_out_options(tmp_path):
    assert_usage_error(invoke("simulate", "-n", 4, "--scheduler", "tcp://127.0.0.1:1", "-o", tmp_path / "s.fits"), "--scheduler", "--shards")
    assert_usage_error(invoke("simulate", "--field", "--shards", 2, "--hsc", tmp_path / "a.fits", "--desi", tmp_path / "b.fits", "-o", tmp_path / "f"), "--shards", "embedded")
    (tmp_path / "dir").mkdir()
    (tmp_path / "e.fits").write_bytes(b"")
    assert_usage_error(invoke("cutout", tmp_path / "dir", tmp_path / "e.fits", "-o", tmp_path / "c"), "not both")
    assert_usage_error(invoke("cutout", tmp_path / "e.fits", "--catalog", tmp_path / "e.fits", "--workers", 2, "-o", tmp_path / "c.fits"), "field directories")
    assert_usage_error(invoke("predict", tmp_path / "e.fits", "--catalog", tmp_path / "e.fits", "--workers", 2, "-o", tmp_path / "z.ecsv"), "--catalog", "sample files")
    for command in ("predict", "cutout"):
        both = invoke(command, tmp_path / "dir", "--workers", 2, "--scheduler", "tcp://127.0.0.1:1", "-o", tmp_path / "z.ecsv")
        assert_usage_error(both, "--workers", "--scheduler", "not both")
