"""Training: a tiny model learns a learnable mapping; an interrupted run resumes exactly."""

from pathlib import Path

import numpy as np
import pytest
import torch

from slitcli.errors import InputError
from slitcli.evaluation.metrics import sigma_nmad
from slitcli.nn.augment import AugmentConfig
from slitcli.nn.predict import mc_predict
from slitcli.nn.train import TrainConfig, TrainData, normalise, train

TINY = {"rows": 4, "channels": (8, 8), "kernels": (5, 3), "head_hidden": (32,)}
NO_AUGMENT = AugmentConfig(p_flip=0.0, max_shift_x=0, max_shift_y=0, subpixel_x=0.0)


def line_data(n, seed, noise=0.05):
    """A single emission line whose column encodes z: x = 8 + 48 (z - 0.1) / 0.9 on a 64-pixel cutout."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 1.0, n)
    cols = np.arange(64)
    x = 8 + 48 * (z - 0.1) / 0.9
    profile = np.exp(-0.5 * ((cols[None, :] - x[:, None]) / 1.2) ** 2)
    rows = np.exp(-0.5 * ((np.arange(8) - 3.5) / 1.0) ** 2)
    sci = (rows[None, None, :, None] * profile[:, None, None, :]).repeat(2, axis=1).astype(np.float32)
    sci += noise * rng.standard_normal(sci.shape).astype(np.float32)
    err = np.full_like(sci, noise)
    return TrainData(sci, err, z, Path("synthetic"), f"line-{seed}")


def test_tiny_model_learns_line_position():
    torch.set_num_threads(1)
    cfg = TrainConfig(pretrain_epochs=25, finetune_epochs=5, batch_size=32, lr=3e-3, finetune_lr=1e-3, patience=25, min_snr=0, augment=NO_AUGMENT, seed=1)
    bundle = train(line_data(1024, 0), line_data(256, 1), cfg, TINY)
    test = line_data(512, 2)
    mu, _ = mc_predict(bundle.model, torch.from_numpy(normalise(test.sci, bundle.scales)), n_mc=100)
    z_pred = np.expm1(mu.mean(0).numpy())
    # One pixel is 0.019 in z: the network must place the line to a fraction of a pixel.
    assert sigma_nmad(z_pred, test.z) < 0.01
    assert bundle.card["training"]["finished"]


def test_interrupted_and_resumed_training_gives_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(pretrain_epochs=2, finetune_epochs=2, batch_size=64, min_snr=0, seed=3, augment=AugmentConfig(max_shift_x=2, max_shift_y=1))
    data, val = line_data(192, 4), line_data(64, 5)
    straight = train(data, val, cfg, TINY, checkpoint=tmp_path / "a.pt")
    ck = tmp_path / "b.pt"
    first = train(data, val, cfg, TINY, checkpoint=ck, stop_after_epochs=1)
    assert not first.card["training"]["finished"]
    resumed = first
    for _ in range(5):
        resumed = train(data, val, cfg, TINY, checkpoint=ck, resume=True, stop_after_epochs=1)
        if resumed.card["training"]["finished"]:
            break
    assert resumed.card["training"]["finished"]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_checkpoint_is_refused_without_running_it(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(pickle.dumps({"model": _Payload(marker)}))
    cfg = TrainConfig(pretrain_epochs=1, finetune_epochs=1, batch_size=32, min_snr=0)
    with pytest.raises(InputError, match="not a slitcli checkpoint that loads without pickle"):
        train(line_data(64, 0), line_data(32, 1), cfg, TINY, checkpoint=ck, resume=True)
    assert not marker.exists()


def test_training_can_start_from_a_model():
    torch.set_num_threads(1)
    cfg = TrainConfig(pretrain_epochs=1, finetune_epochs=1, batch_size=64, min_snr=0, augment=NO_AUGMENT, seed=0)
    first = train(line_data(128, 0), line_data(64, 1), cfg, TINY)
    first.weights_sha256 = "abc"
    second = train(line_data(128, 2), line_data(64, 1), cfg, None, init=first)
    assert second.card["config"] == first.card["config"]
    assert second.card["input"]["scale_e_s"] == first.card["input"]["scale_e_s"]
    assert second.card["training"]["init_from"]["weights_sha256"] == "abc"


def test_zero_finetune_epochs_gives_the_deterministic_model():
    torch.set_num_threads(1)
    cfg = TrainConfig(pretrain_epochs=2, finetune_epochs=0, batch_size=64, min_snr=0, augment=NO_AUGMENT, seed=0)
    bundle = train(line_data(128, 0), line_data(64, 1), cfg, TINY)
    phases = {h["phase"] for h in bundle.card["training"]["history"]}
    assert phases == {"pretrain"} and bundle.card["training"]["finished"]
    best = min(h["val_sigma_nmad"] for h in bundle.card["training"]["history"])
    assert bundle.card["metrics"]["val_sigma_nmad"] == best
    # Its variance output is the training mean squared error, the same for every input.
    head = bundle.model.head.logvar
    assert float(head.weight.detach().abs().max()) == 0.0 and float(head.bias.detach()) < np.log(0.5)


def test_pdf_head_places_the_line_finer_than_the_gaussian_head():
    """The same network and budget as test_tiny_model_learns_line_position, ending in a p(z) head."""
    from slitcli.nn import pdf
    from slitcli.nn.predict import mc_pdf

    torch.set_num_threads(1)
    cfg = TrainConfig(pretrain_epochs=25, finetune_epochs=5, batch_size=32, lr=3e-3, finetune_lr=1e-3, patience=25, min_snr=0, augment=NO_AUGMENT, seed=1)
    bundle = train(line_data(1024, 0), line_data(256, 1), cfg, {**TINY, "head": "pdf", "pdf_bins": 200, "t_max": 0.742})
    test = line_data(512, 2)
    probs, mean_t, var_t = mc_pdf(bundle.model, torch.from_numpy(normalise(test.sci, bundle.scales)), n_mc=100)
    z_pred = pdf.summarise_pdf(probs.double().numpy(), 0.742, mean_t.double().numpy(), var_t.double().numpy())["Z"]
    # Its loss is the same in both phases: the model kept is the best validation round of either.
    history = bundle.card["training"]["history"]
    assert bundle.card["metrics"]["val_sigma_nmad"] == min(h["val_sigma_nmad"] for h in history)
    # Measured: 0.00087 with the default target (smoothed by 2 nodes), 0.0014 two-hot, against the Gaussian head's 0.0094 (one pixel is 0.019 in z).
    assert sigma_nmad(z_pred, test.z) < 0.004
