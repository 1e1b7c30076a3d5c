"""Training from the stream (`slitcli train --stream`): resumes exactly, is reproducible,
masks by SNR, writes a model that `predict` loads, refuses mixed inputs."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import TINY_SIM_YAML, assert_one_line_error, assert_usage_error, invoke

from slitcli.nn.stream import StreamConfig, TrainingStream
from slitcli.nn.train import TrainConfig, load_train_data, train_stream

TINY = {"rows": 8, "channels": (8, 8), "kernels": (3, 3), "head_hidden": (16,)}
SMALL = {"cutout_height": 16, "cutout_width": 96, "stamp_size": 32}
STREAM_YAML = (
    "train:\n  pretrain_steps: 4\n  finetune_steps: 2\n  val_every: 2\n  batch_size: 8\n  min_snr: 0.0\n"
    "model:\n  rows: 8\n  channels: [8, 8]\n  kernels: [3, 3]\n  head_hidden: [16]\n"
    "stream:\n  cutout_height: 16\n  cutout_width: 96\n  stamp_size: 32\n  p_neighbour: 0.5\n"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    (d / "sim.yaml").write_text(TINY_SIM_YAML)
    (d / "train.yaml").write_text(STREAM_YAML)
    assert invoke("simulate", "-n", 24, "--seed", 2, "--config", d / "sim.yaml", "-q", "-o", d / "val.fits").exit_code == 0
    return d


def _weights(bundle):
    return bundle.model.state_dict()


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_resumed_run_gives_the_weights_of_an_uninterrupted_one(workdir, tmp_path):
    torch.set_num_threads(1)
    val = load_train_data(workdir / "val.fits", ("GV", "GI"), 0.0)
    cfg = TrainConfig(pretrain_steps=3, finetune_steps=2, val_every=2, batch_size=8, min_snr=0.0, seed=3)
    stream = StreamConfig(**SMALL)
    straight = train_stream(stream, val, cfg, TINY, checkpoint=tmp_path / "a.pt")
    card = straight.card["training"]
    # Validations at steps 2 and 3 (the phase's last, shorter round), then 5: one optimiser step per item.
    assert [h["step"] for h in card["history"]] == [2, 3, 5] and card["stream"]["steps"] == 5
    assert [h["phase"] for h in card["history"]] == ["pretrain", "pretrain", "finetune"]
    assert card["finished"] and card["n_train"] == 5 * 8 and card["train_file"] is None
    assert card["stream"]["config"]["cutout_width"] == 96 and card["config"]["pretrain_steps"] == 3
    # Interrupted after every validation, resumed from the checkpoint (the stream restarts at the steps done).
    ck = tmp_path / "b.pt"
    resumed = train_stream(stream, val, cfg, TINY, checkpoint=ck, stop_after_validations=1)
    assert not resumed.card["training"]["finished"] and resumed.card["training"]["stream"]["steps"] == 2
    for _ in range(4):
        resumed = train_stream(stream, val, cfg, TINY, checkpoint=ck, resume=True, stop_after_validations=1)
        if resumed.card["training"]["finished"]:
            break
    assert resumed.card["training"]["finished"] and resumed.card["training"]["history"] == card["history"]
    assert _same(_weights(straight), _weights(resumed))
    # Two DataLoader workers render the same stream, item for item.
    assert _same(_weights(straight), _weights(train_stream(stream, val, cfg, TINY, workers=2)))
    # Another stream seed draws other sources, hence other weights: the equality above is not vacuous.
    other = train_stream(StreamConfig(**SMALL, seed=1), val, cfg, TINY)
    assert not _same(_weights(straight), _weights(other))


def test_min_snr_masks_sources_within_each_batch(workdir):
    torch.set_num_threads(1)
    val = load_train_data(workdir / "val.fits", ("GV", "GI"), 0.0)
    cfg = TrainConfig(pretrain_steps=2, finetune_steps=0, val_every=2, batch_size=8, min_snr=2.0, seed=0)
    stream = StreamConfig(**SMALL)
    bundle = train_stream(stream, val, cfg, TINY)
    items = [TrainingStream(dataclasses.replace(stream, batch_size=8)).item(k) for k in range(2)]
    kept = [int((it["snr"] >= 2.0).sum()) for it in items]
    assert 0 < sum(kept) < 16  # the cut bites on the default population
    expected = sum(k for k in kept if k >= 2)  # a batch left with fewer than 2 is skipped
    assert bundle.card["training"]["n_train"] == expected
    z = np.concatenate([it["z"].numpy()[it["snr"].numpy() >= 2.0] for it, k in zip(items, kept) if k >= 2])
    assert bundle.card["training"]["z_range"] == [float(z.min()), float(z.max())]


def test_cli_trains_from_the_stream_and_predict_loads_the_model(workdir, tmp_path):
    d = workdir
    out = tmp_path / "m"
    result = invoke("train", "--stream", "--val", d / "val.fits", "--config", d / "train.yaml", "--seed", 5, "-o", out)
    assert result.exit_code == 0, result.output
    # One log line per validation: steps 2 and 4 of pre-training, 6 of fine-tuning.
    lines = [line for line in result.output.splitlines() if "validation sigma_NMAD" in line and "(validation" in line]
    assert [line.split()[2] for line in lines] == ["2", "4", "6"], result.output
    card = json.loads((out / "model.json").read_text())
    stream = card["training"]["stream"]
    assert stream["steps"] == 6 and stream["seed"] == 5 and stream["config"]["seed"] == 5 and card["training"]["config"]["seed"] == 5
    assert stream["config"]["p_neighbour"] == 0.5 and stream["config"]["batch_size"] == 8
    assert card["input"]["height"] == 16 and card["input"]["width"] == 96
    result = invoke("predict", d / "val.fits", "-m", out, "-o", tmp_path / "z.ecsv", "--n-mc", 4, "-q")
    assert result.exit_code == 0, result.output
    from astropy.table import Table

    z = Table.read(tmp_path / "z.ecsv")
    assert len(z) == 24 and np.all(np.isfinite(z["Z"])) and np.all(z["ZERR"] > 0)
    # --steps splits as pretrain_steps : finetune_steps (4 : 2 in the YAML).
    result = invoke("train", "--stream", "--steps", 3, "--val-every", 5, "--val", d / "val.fits", "--config", d / "train.yaml", "-o", tmp_path / "m3", "-q")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "m3" / "model.json").read_text())
    assert [(h["phase"], h["step"]) for h in card["training"]["history"]] == [("pretrain", 2), ("finetune", 3)]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["t.fits", "--stream"], "--stream"),
        (["--steps", "10"], "--steps"),
        (["--stream", "--pretrain-epochs", "3"], "--pretrain-epochs"),
    ],
)
def test_stream_usage_errors(args, needle, tmp_path):
    assert_usage_error(invoke("train", *args, "--val", tmp_path / "v.fits", "-o", tmp_path / "m"), needle)


def test_stream_batch_size_belongs_to_train(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(STREAM_YAML + "  batch_size: 16\n")
    result = invoke("train", "--stream", "--val", workdir / "val.fits", "--config", bad, "-o", tmp_path / "m")
    assert_one_line_error(result, "bad.yaml:stream: batch_size", "train:")


@pytest.mark.parametrize("section", ["model", "stream"])
def test_config_section_that_is_not_a_mapping_is_one_line(tmp_path, section):
    from conftest import assert_one_line_error, invoke

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"{section}: 5\n")
    result = invoke("train", "--stream", "--steps", 2, "--val", tmp_path / "v.fits", "--config", bad, "-o", tmp_path / "m")
    assert_one_line_error(result, f"bad.yaml:{section}: expected a mapping")
    assert not (tmp_path / "m").exists()


def test_resume_refuses_a_checkpoint_of_another_run(workdir, tmp_path):
    """A checkpoint resumes only the run that wrote it: another step count or stream seed is a one-line error naming what differs."""
    from slitcli.errors import InputError

    torch.set_num_threads(1)
    val = load_train_data(workdir / "val.fits", ("GV", "GI"), 0.0)
    cfg = TrainConfig(pretrain_steps=3, finetune_steps=2, val_every=2, batch_size=8, min_snr=0.0, seed=3)
    ck = tmp_path / "c.pt"
    train_stream(StreamConfig(**SMALL), val, cfg, TINY, checkpoint=ck, stop_after_validations=1)
    with pytest.raises(InputError, match=r"different run \(differs in train\.finetune_steps\)"):
        train_stream(StreamConfig(**SMALL), val, dataclasses.replace(cfg, finetune_steps=3), TINY, checkpoint=ck, resume=True)
    with pytest.raises(InputError, match=r"feed\.stream\.seed"):
        train_stream(StreamConfig(**SMALL, seed=9), val, cfg, TINY, checkpoint=ck, resume=True)
    # The same run resumes.
    assert train_stream(StreamConfig(**SMALL), val, cfg, TINY, checkpoint=ck, resume=True).card["training"]["finished"]
