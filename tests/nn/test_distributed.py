"""`slitcli train` under torchrun (2 processes, gloo on the CPU): one model written, by rank 0, that loads and predicts."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import TINY_SIM_YAML, invoke, tiny_train_yaml

from slitcli.nn import distributed
from slitcli.nn.modelfile import load_model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    (d / "sim.yaml").write_text(TINY_SIM_YAML)
    (d / "train.yaml").write_text(tiny_train_yaml(batch_size=8))
    for name, n, seed in (("train", 48, 1), ("val", 24, 2)):
        assert invoke("simulate", "-n", n, "--seed", seed, "--config", d / "sim.yaml", "-q", "-o", d / f"{name}.fits").exit_code == 0
    return d


def torchrun(nproc, *args, cwd, timeout=120):
    """Run ``torchrun --standalone --nproc-per-node NPROC ARGS`` (one thread per process).

    A hang (ranks waiting for each other) fails the test after `timeout` seconds, and
    torchrun and its workers are killed together (their own session).
    """
    env = {k: v for k, v in os.environ.items() if k not in (*distributed.ENV, "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *map(str, args)]
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"torchrun hung for {timeout} s: {stderr[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_two_processes_write_one_model_that_predicts(workdir, tmp_path):
    d, out = workdir, tmp_path / "model"
    before = set(d.iterdir())
    result = torchrun(2, "-m", "slitcli", "train", d / "train.fits", "--val", d / "val.fits", "--config", d / "train.yaml", "--seed", 3, "-o", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Rank 0 alone reports: one summary line, not one per rank.
    assert result.stderr.count("wrote ") == 1, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "model.json", "model.safetensors"]
    assert set(d.iterdir()) == before
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["world_size"] == 2
    assert card["training"]["config"]["batch_size"] == 8  # the global batch: 4 sources per rank
    assert card["training"]["finished"] and card["training"]["n_train"] == 48
    assert [h["phase"] for h in card["training"]["history"]] == ["pretrain", "finetune"]
    bundle = load_model(out)
    assert bundle.card["training"]["world_size"] == 2
    result = invoke("predict", d / "val.fits", "-m", out, "-o", tmp_path / "z.ecsv", "--n-mc", 4, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "z.ecsv").exists()


RESUME_SCRIPT = """
import dataclasses, json, sys
from pathlib import Path

import numpy as np
import torch

from slitcli.errors import ConfigError
from slitcli.nn import distributed
from slitcli.nn.augment import AugmentConfig
from slitcli.nn.train import TrainConfig, TrainData, train

TINY = {"rows": 4, "channels": (8, 8), "kernels": (5, 3), "head_hidden": (32,)}


def line_data(n, seed):  # tests/nn/test_train.py's: one emission line whose column encodes z
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 1.0, n)
    profile = np.exp(-0.5 * ((np.arange(64)[None, :] - (8 + 48 * (z - 0.1) / 0.9)[:, None]) / 1.2) ** 2)
    rows = np.exp(-0.5 * ((np.arange(8) - 3.5) / 1.0) ** 2)
    sci = (rows[None, None, :, None] * profile[:, None, None, :]).repeat(2, axis=1).astype(np.float32)
    sci += 0.05 * rng.standard_normal(sci.shape).astype(np.float32)
    return TrainData(sci, np.full_like(sci, 0.05), z, Path("synthetic"), f"line-{seed}")


out = Path(sys.argv[1])
# 66 sources in batches of 16: the last batch (2 sources) is too small to split and every rank skips it.
cfg = TrainConfig(pretrain_epochs=2, finetune_epochs=1, batch_size=16, min_snr=0, seed=3, augment=AugmentConfig(max_shift_x=2, max_shift_y=1, noise_scale=0.5))
data, val = line_data(66, 4), line_data(48, 5)
with distributed.process_group("cpu"):
    straight = train(data, val, cfg, TINY, checkpoint=out / "a.pt")
    resumed = train(data, val, cfg, TINY, checkpoint=out / "b.pt", stop_after_epochs=1)
    calls = 1
    while not resumed.card["training"]["finished"]:
        resumed = train(data, val, cfg, TINY, checkpoint=out / "b.pt", resume=True, stop_after_epochs=1)
        calls += 1
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    digest = float(sum(float(v.double().sum()) for v in a.values()))
    try:
        train(data, val, dataclasses.replace(cfg, batch_size=5), TINY)
        refused = ""
    except ConfigError as err:
        refused = str(err)
    report = {
        "resumed_equal": all(torch.equal(a[k], b[k]) for k in a),
        "calls": calls,
        "ranks_agree": bool(distributed.all_reduce([digest], "min")[0] == distributed.all_reduce([digest], "max")[0]),
        "world_size": straight.card["training"]["world_size"],
        "refused": refused,
    }
    if distributed.is_main():
        print("REPORT " + json.dumps(report))
"""


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights_on_two_processes(tmp_path):
    script = tmp_path / "ddp_resume.py"
    script.write_text(RESUME_SCRIPT)
    result = torchrun(2, script, tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [x for x in result.stdout.splitlines() if x.startswith("REPORT ")]
    assert len(lines) == 1, result.stdout  # rank 0 alone
    report = json.loads(lines[0][7:])
    assert report["resumed_equal"] and report["calls"] == 3 and report["ranks_agree"]
    assert report["world_size"] == 2
    assert report["refused"].startswith("batch_size 5 does not split over 2 processes")
    # Only rank 0 wrote the checkpoints: no per-rank files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt", "ddp_resume.py"]


def test_without_torchrun_nothing_is_distributed():
    assert not distributed.active()
    assert distributed.group() == (0, 1)
    assert distributed.all_agree(False) is False
    assert distributed.broadcast([1.5, float("nan")])[0] == 1.5
