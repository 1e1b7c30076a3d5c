"""Training: deterministic pre-training, then Bayesian fine-tuning, as the paper.

1. Pre-training: the network's mean output regresses t = ln(1 + z) with the mean
   squared error.
2. Fine-tuning: from the best pre-trained weights (backbone not frozen), the Gaussian
   negative log-likelihood 0.5 (logvar + exp(-logvar) (t - mu)^2) trains the mean and
   the log-variance together.

A p(z) head (``head: pdf`` in the architecture's options, `slitcli.nn.pdf`) is trained
by its own loss (`TrainConfig.pdf_loss`) in both phases, which then differ only in
their learning rates; its validation score is that of its median.

Both phases use AdamW and a cosine learning-rate schedule, pick their best epoch by the
validation sigma_NMAD and stop early after `patience` epochs without improvement:
the test sample is never seen. Augmentations are drawn afresh every epoch.

Every epoch seeds its own random numbers from (seed, phase, epoch), and a checkpoint
is written after each epoch (`torch.load(weights_only=True)` reads it back), so a run
resumed after an interruption gives the same weights as an uninterrupted one.

`train_stream` trains the same way from the endless training stream
(`slitcli.nn.stream`): steps instead of epochs, a validation every `val_every` steps.
Both run one loop (`_fit`) over a feed of batches (`_FileFeed`, `_StreamFeed`).

Several processes (``torchrun --nproc-per-node K``, `slitcli.nn.distributed`): inside
`slitcli.nn.distributed.process_group` the model trains in `DistributedDataParallel`.
`batch_size` stays the global batch: each of the K ranks takes a disjoint 1/K of it
(`batch_size` must be a multiple of K, at least 2 per rank), so an epoch (or a stream run)
has as many optimiser steps and the same learning-rate schedule whatever K. From files,
every rank draws the same shuffled order and augmentation parameters and takes its slice
of each batch (the last, shorter batch of an epoch is split as evenly as it goes, or
skipped by all ranks if under 2 sources each); from the stream, rank r renders items
r, r + K, r + 2K, ... of batch_size / K sources each. Noise augmentation and dropout
draw from per-rank generators. Batch-norm is plain batch-norm over each rank's part
(`slitcli.nn.distributed.wrap`), rank 0's running statistics copied to every rank before
each validation. Every rank validates on the whole validation sample and rank 0's score
decides (best weights, early stopping), so the ranks take the same number of steps; only
rank 0 writes the checkpoint (every rank returns once it is written) and every rank reads
it on resume. One process under torchrun gives the weights of a plain run. The same seed
with 1 and K processes does not give the same bits (batch-norm statistics over smaller
batches, other dropout and noise draws, another order of the sums); measured with 1 and 2
processes on the CPU, the best validation sigma_NMAD differs by up to 10 %, less than
between two seeds: 0.1226 and 0.1316 on the tiny command-line run of
tests/nn/test_distributed.py (48 training sources, 1 + 1 epochs), 0.00829 and 0.00863
(seed 1), 0.0142 and 0.0152 (seed 2) for the line model of tests/nn/test_train.py (1024
sources, 25 + 5 epochs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slitcli import __version__
from slitcli.config import to_dict, with_changes
from slitcli.errors import ConfigError, InputError
from slitcli.evaluation.metrics import sigma_nmad
from slitcli.io.files import atomic_output, output_directory
from slitcli.nn import create_model, distributed, pdf
from slitcli.nn.augment import AugmentConfig, apply, random_params
from slitcli.nn.layers import PDFHead
from slitcli.nn.modelfile import ModelBundle
from slitcli.nn.registry import model_config
from slitcli.nn.train_data import TrainData, concat_train_data, load_train_data

__all__ = ["TrainConfig", "TrainData", "load_train_data", "concat_train_data", "train", "train_stream", "normalise", "predict_mean"]

PHASES = ("pretrain", "finetune")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes
    ----------
    architecture : str
        Registered architecture name (`slitcli.nn.list_models`).
    bands : tuple of str
        Bands, in input-channel order.
    pretrain_epochs, finetune_epochs : int
        Maximum epochs of each phase.
    batch_size : int
    lr, finetune_lr, weight_decay : float
        AdamW settings of each phase.
    patience : int
        Stop a phase after this many epochs without a better validation sigma_NMAD.
    nll_beta : float
        beta of the beta-NLL fine-tuning loss (Seitzer et al. 2022): each source's NLL is
        weighted by stop-gradient(sigma^(2 beta)), so sources with a large predicted
        variance keep pulling the mean. 0 is the paper's plain Gaussian NLL, which on our
        data undoes much of the pre-trained accuracy.
    pdf_loss : str
        Loss of a p(z) head (`slitcli.nn.pdf.LOSSES`): "ce" (cross-entropy) or "crps";
        the same in both phases. The Gaussian head ignores it.
    label_sigma : float
        Width in grid nodes of a Gaussian that smooths a p(z) head's two-hot target (0: none).
        Default 2: with the same stream and budget on two CPU cores, sigma_NMAD at SNR_GI >= 3
        was 0.0059 with it and 0.0337 with the two-hot target (docs/bayes.md).
    min_snr : float
        Train and validate on sources with SNR_GI >= min_snr only (the paper: 1).
    augment : AugmentConfig
        On-the-fly augmentation (defaults: flips, +-3 pixel shifts along the dispersion,
        the range of CESS's calibration errors, +-4 across, sub-pixel shifts).
    pretrain_steps, finetune_steps : int
        Optimiser steps (stream items) of each phase when training from the stream
        (`train_stream`; file training ignores them).
    val_every : int
        Stream training validates (and checkpoints) every this many steps.
    seed : int
    """

    architecture: str = "slitnet"
    bands: tuple[str, ...] = ("GV", "GI")
    pretrain_epochs: int = 20
    finetune_epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    finetune_lr: float = 3e-4
    weight_decay: float = 1e-4
    patience: int = 5
    nll_beta: float = 0.5
    pdf_loss: str = "ce"
    label_sigma: float = 2.0
    min_snr: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pretrain_steps: int = 20000
    finetune_steps: int = 10000
    val_every: int = 500
    seed: int = 0

    def __post_init__(self):
        if self.pdf_loss not in pdf.LOSSES or self.label_sigma < 0:
            msg = f"need pdf_loss in {', '.join(pdf.LOSSES)} and label_sigma >= 0, got {self.pdf_loss!r} and {self.label_sigma}"
            raise ValueError(msg)
        if self.pretrain_steps < 0 or self.finetune_steps < 0 or self.val_every < 1:
            msg = "need pretrain_steps >= 0, finetune_steps >= 0, val_every >= 1"
            raise ValueError(msg)
        if self.pretrain_epochs < 0 or self.finetune_epochs < 0 or self.pretrain_epochs + self.finetune_epochs < 1 or self.batch_size < 2 or self.patience < 1:
            msg = "need pretrain_epochs >= 0, finetune_epochs >= 0 (0: a deterministic model), at least one epoch, batch_size >= 2, patience >= 1"
            raise ValueError(msg)


def normalise(sci: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Network input: asinh(SCI / scale) per band, scale about the noise of a blank pixel [e-/s]."""
    return np.arcsinh(sci / scales[None, :, None, None]).astype(np.float32)


def predict_mean(model: torch.nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Deterministic predicted t = ln(1 + z) (dropout off, batch-norm in eval): the mean, or a p(z) head's median."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            y = model(torch.from_numpy(x[i : i + batch]).to(device))
            t = pdf.median_t(torch.softmax(y, dim=-1), model.head.t_max) if isinstance(model.head, PDFHead) else y[0]
            out.append(t.cpu().numpy())
    return np.concatenate(out)


def _epoch_seed(seed: int, phase: str, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, PHASES.index(phase), epoch]).generate_state(1)[0])


def _loss(head, phase: str, out, t, config: TrainConfig):
    """The loss of a batch's network output `out` against true t: by phase for the Gaussian head, `pdf.pdf_loss` for a p(z) head."""
    if isinstance(head, PDFHead):
        return pdf.pdf_loss(out, t, head.t_max, config.pdf_loss, config.label_sigma)
    mu, logvar = out
    if phase == "pretrain":
        return torch.mean((mu - t) ** 2)
    nll = 0.5 * (logvar + torch.exp(-logvar) * (t - mu) ** 2)
    if config.nll_beta:
        nll = nll * torch.exp(config.nll_beta * logvar).detach()
    return torch.mean(nll)


def _start_logvar(model, x: np.ndarray, t: np.ndarray, batch: int = 512) -> None:
    """Start the log-variance output at the pre-trained model's mean squared error on
    training cutouts `x`, so that fine-tuning begins from a sensible variance instead
    of a random one. A p(z) head has no variance output: nothing to do."""
    if isinstance(model.head, PDFHead):
        return
    mse = float(np.mean((predict_mean(model, x, batch) - t) ** 2))
    with torch.no_grad():
        model.head.logvar.weight.zero_()
        model.head.logvar.bias.fill_(float(np.log(max(mse, 1e-8))))


def _new_optimiser(model, lr, weight_decay, total_steps):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    return opt, sched


def train(
    train_data: TrainData,
    val_data: TrainData,
    config: TrainConfig,
    model_overrides: dict | None = None,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: Callable[[dict], None] | None = None,
    device: str | torch.device = "cpu",
    init: ModelBundle | None = None,
) -> ModelBundle:
    """Train a model; returns it with its card (not yet saved).

    Inside `slitcli.nn.distributed.process_group` (torchrun), every rank calls this with
    the same arguments and trains its share of each batch (module docstring); every rank
    returns the model, only rank 0 writes `checkpoint`.

    Parameters
    ----------
    checkpoint : path, optional
        File written after every epoch (weights, optimiser, scheduler, history).
    resume : bool
        Continue from `checkpoint` if it exists.
    stop_after_epochs : int, optional
        Stop after this many epochs in this call (to test interruption and resume).
    progress : callable(dict), optional
        Called after every batch and epoch with phase, epoch, batch, loss, val_sigma_nmad.
    device : str or torch.device
        Where to train; the returned model is on the CPU.
    init : ModelBundle, optional
        Start from this model's weights, architecture and input normalisation
        (`config.architecture` and `model_overrides` are then ignored).
    """
    t_start = time.perf_counter()
    shape = train_data.sci.shape[2:]
    rank, world = _split_batch(config)
    model, config, overrides, scales = _new_model(config, model_overrides, shape, device, init, train_data.err_median)
    if config.augment.noise_scale > 0 and train_data.err is None:
        msg = "the noise augmentation needs ERR: load the training data with keep_err=True"
        raise ValueError(msg)
    feed = _FileFeed(train_data, config, scales, torch.device(device), rank, world)
    state, finished = _fit(model, feed, config, normalise(val_data.sci, scales), val_data.z, checkpoint, resume, stop_after_epochs, progress, torch.device(device))
    source = {"train_file": train_data.path.name, "train_file_id": train_data.file_hash}
    if distributed.active():
        source["world_size"] = world
    counts = {"n_train": int(len(feed.t)), "z_range": [float(train_data.z.min()), float(train_data.z.max())]}
    return _bundle(model, config, overrides, shape, scales, val_data, init, state, finished, t_start, source, counts)


def train_stream(
    stream_config,
    val_data: TrainData,
    config: TrainConfig,
    model_overrides: dict | None = None,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    stop_after_validations: int | None = None,
    progress: Callable[[dict], None] | None = None,
    device: str | torch.device = "cpu",
    init: ModelBundle | None = None,
    workers: int = 0,
    instrument=None,
) -> ModelBundle:
    """Train a model from the training stream (`slitcli.nn.stream.TrainingStream`), no files.

    One optimiser step per stream item: `config.pretrain_steps` steps of pre-training, then
    `config.finetune_steps` of fine-tuning, validating every `config.val_every` steps
    (the last validation of a phase may come sooner) exactly as `train` validates after
    every epoch: the best validation sigma_NMAD picks the weights and `config.patience`
    validations without improvement stop a phase. The stream's `batch_size` and `bands`
    are `config`'s; sources with `snr` < `config.min_snr` are masked out of each batch
    (a batch left with fewer than 2 sources is skipped, the step still counted), and
    `config.augment` applies as in `train`. The input scales are the validation file's
    median ERR per band (or `init`'s); the fine-tuning log-variance starts at the
    pre-trained mean squared error on the validation cutouts.

    The checkpoint, written after every validation, records the steps done; a resumed run
    restarts the stream at ``start = steps done`` and gives the same weights as an
    uninterrupted one, whatever the number of `workers` (DataLoader processes rendering
    the stream; with workers, the training process uses the remaining cores' Torch
    threads, at least 1). Under torchrun (`train`), rank r of K renders stream items
    r, r + K, ... of ``batch_size / K`` sources (the card's ``stream.config`` keeps the
    global batch size), and a run resumes with the same K only. Other parameters as `train`.
    """
    from slitcli.nn.stream import StreamConfig

    if config.pretrain_steps + config.finetune_steps < 1:
        msg = "stream training needs pretrain_steps + finetune_steps >= 1"
        raise ValueError(msg)
    stream_config = dataclasses.replace(stream_config or StreamConfig(), batch_size=config.batch_size, bands=tuple(config.bands))
    rank, world = _split_batch(config)
    t_start = time.perf_counter()
    shape = (stream_config.cutout_height, stream_config.cutout_width)
    if tuple(val_data.sci.shape[2:]) != shape:
        msg = f"{val_data.path}: cutouts are {val_data.sci.shape[2]} x {val_data.sci.shape[3]} pixels; the stream renders {shape[0]} x {shape[1]}"
        raise InputError(msg)
    model, config, overrides, scales = _new_model(config, model_overrides, shape, device, init, val_data.err_median)
    x_val = normalise(val_data.sci, scales)
    # Each rank renders items of its share of the batch (module docstring).
    rank_stream = dataclasses.replace(stream_config, batch_size=config.batch_size // world)
    feed = _StreamFeed(rank_stream, instrument, workers, config, scales, torch.device(device), x_val, np.log1p(val_data.z).astype(np.float32), rank, world)
    threads = torch.get_num_threads()
    if workers > 0:
        # The workers render on their own cores: the training process takes the rest, for
        # oversubscribed cores slow a CPU training step several times. K ranks share the cores.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // world - workers))
    try:
        state, finished = _fit(model, feed, config, x_val, val_data.z, checkpoint, resume, stop_after_validations, progress, torch.device(device))
    finally:
        feed.close()
        torch.set_num_threads(threads)
    source = {
        "train_file": None,
        "train_file_id": None,
        "stream": {"config": to_dict(stream_config), "seed": stream_config.seed, "steps": int(state["steps"]), "workers": int(workers)},
    }
    if distributed.active():
        source["world_size"] = world
    zr = state.get("z_range")
    counts = {"n_train": int(state.get("n_seen", 0)), "z_range": [float(zr[0]), float(zr[1])] if zr else None}
    return _bundle(model, config, overrides, shape, scales, val_data, init, state, finished, t_start, source, counts)


def _new_model(config, model_overrides, shape, device, init, default_scales):
    """The model to train (seeded from `config.seed`), the config with `init`'s architecture,
    the architecture options and the input scales."""
    torch.manual_seed(config.seed)
    overrides = dict(model_overrides or {})
    overrides.setdefault("in_channels", len(config.bands))
    if {"height", "width"} <= {f.name for f in dataclasses.fields(model_config(config.architecture))}:
        overrides.setdefault("height", shape[0])
        overrides.setdefault("width", shape[1])
    device = torch.device(device)
    if init is not None:
        if tuple(init.bands) != tuple(config.bands) or init.shape != tuple(shape):
            msg = f"the initial model takes bands {','.join(init.bands)} of {init.shape[0]} x {init.shape[1]}; the data are {','.join(config.bands)} of {shape[0]} x {shape[1]}"
            raise InputError(msg)
        config = dataclasses.replace(config, architecture=init.card["architecture"])
        overrides = dict(init.card["config"])
        model = create_model(config.architecture, **overrides)
        model.load_state_dict(init.model.state_dict())
        model.to(device)
        scales = init.scales
    else:
        model = create_model(config.architecture, **overrides).to(device)
        scales = np.asarray(default_scales, np.float32)
    return model, config, overrides, scales


def _split_batch(config: TrainConfig) -> tuple[int, int]:
    """(rank, world size) of the process group; `ConfigError` if `config.batch_size` does not split over it."""
    rank, world = distributed.group()
    if world > 1 and (config.batch_size % world or config.batch_size // world < 2):
        msg = f"batch_size {config.batch_size} does not split over {world} processes: use a multiple of {world} of at least {2 * world} (2 sources per process, for batch-norm)"
        raise ConfigError(msg)
    return rank, world


def _rank_rng(rng: np.random.Generator, rank: int, world: int) -> np.random.Generator:
    """`rng` itself in one process; else a generator of this rank's own, drawn from `rng`
    (the same draw on every rank, so that `rng` stays in step across the ranks)."""
    if world == 1:
        return rng
    return np.random.default_rng(np.random.SeedSequence(int(rng.integers(2**63))).spawn(world)[rank])


def _rank_seed(seed: int, rank: int, world: int) -> int:
    """The Torch seed (dropout) of an epoch on this rank: `seed` itself in one process."""
    return seed if world == 1 else int(np.random.SeedSequence(seed, spawn_key=(rank,)).generate_state(1)[0])


class _FileFeed:
    """Batches of in-memory training data: one round (between validations) is one epoch.

    With several ranks each batch of the epoch's shuffled order is cut into `world` parts
    and rank `rank` takes its part (module docstring).
    """

    #: Whether a rank may lack a batch that another has (then the ranks agree at each step):
    #: here every rank skips the same batches.
    uneven_skips = False

    def __init__(self, data: TrainData, config: TrainConfig, scales, device, rank: int = 0, world: int = 1):
        self.data, self.config, self.scales, self.device = data, config, scales, device
        self.rank, self.world = rank, world
        self.t = np.log1p(data.z).astype(np.float32)
        self.steps_per_epoch = math.ceil(len(self.t) / config.batch_size)

    def max_rounds(self, phase):
        return self.config.pretrain_epochs if phase == "pretrain" else self.config.finetune_epochs

    def phase_steps(self, phase):
        return self.max_rounds(phase) * self.steps_per_epoch

    def round_steps(self, phase, rnd):
        return self.steps_per_epoch

    def identity(self) -> dict:
        """What a checkpoint of this feed must match to be resumed: the training redshifts' digest."""
        return {"mode": "files", "n_train": len(self.t), "train_z_sha256": hashlib.sha256(self.t.tobytes()).hexdigest()[:16]}

    def close(self):
        pass

    def gather(self, state, n_seen_before):
        """Nothing to sum over the ranks: every rank holds all the training data."""

    def logvar_sample(self):
        first = np.arange(min(len(self.t), 2048))
        return normalise(self.data.sci[first], self.scales), self.t[first]

    def batches(self, phase, state, rng):
        order = rng.permutation(len(self.t))
        size = self.config.batch_size
        noise_rng = _rank_rng(rng, self.rank, self.world)
        for b in range(self.steps_per_epoch):
            idx = np.sort(order[b * size : (b + 1) * size])
            params = random_params(len(idx), self.config.augment, rng)
            if self.world > 1:
                if len(idx) < 2 * self.world:  # every rank sees the same length: all skip
                    yield None
                    continue
                part = np.array_split(np.arange(len(idx)), self.world)[self.rank]
                idx, params = idx[part], params[part]
            err = None if self.data.err is None else self.data.err[idx]
            sci, _ = apply(self.data.sci[idx], err, params, noise_rng, self.config.augment.wrap)
            yield torch.from_numpy(normalise(sci, self.scales)).to(self.device), torch.from_numpy(self.t[idx]).to(self.device)


class _StreamFeed:
    """Batches of the training stream: one item per step, one round every `val_every` steps.

    With several ranks, rank `rank` reads items ``step * world + rank`` (`stream_config`
    is then this rank's, its batch size the rank's share).
    """

    #: A rank's item may have too few sources above min_snr while another's has enough.
    uneven_skips = True

    def __init__(self, stream_config, instrument, workers, config: TrainConfig, scales, device, x_val, t_val, rank: int = 0, world: int = 1):
        self.stream_config, self.instrument, self.workers = stream_config, instrument, int(workers)
        self.rank, self.world = rank, world
        self.config, self.scales, self.device = config, scales, device
        self.x_val, self.t_val = x_val, t_val
        self._items, self._next = None, None

    def max_rounds(self, phase):
        return math.ceil(self.phase_steps(phase) / self.config.val_every)

    def identity(self) -> dict:
        """What a checkpoint of this feed must match to be resumed: the stream's config (its seed
        included) and, with several ranks, their number (each rank's items depend on it)."""
        out = {"mode": "stream", "stream": to_dict(self.stream_config)}
        if self.world > 1:
            out["world_size"] = self.world
        return out

    def phase_steps(self, phase):
        return self.config.pretrain_steps if phase == "pretrain" else self.config.finetune_steps

    def round_steps(self, phase, rnd):
        return min(self.config.val_every, self.phase_steps(phase) - rnd * self.config.val_every)

    def logvar_sample(self):
        return self.x_val[:2048], self.t_val[:2048]

    def gather(self, state, n_seen_before):
        """Sources seen and redshift range over all the ranks in the round just done (collective)."""
        n = distributed.all_reduce([state.get("n_seen", 0) - n_seen_before])[0]
        zr = state.get("z_range") or [math.inf, -math.inf]
        lo, hi = distributed.all_reduce([zr[0]], "min")[0], distributed.all_reduce([zr[1]], "max")[0]
        state["n_seen"] = int(n_seen_before + n)
        state["z_range"] = [float(lo), float(hi)] if lo <= hi else None

    def batches(self, phase, state, rng):
        from slitcli.nn.stream import TrainingStream

        start = state["steps"] * self.world + self.rank
        if self._items is None or self._next != start:
            stream = TrainingStream(self.stream_config, self.instrument, start=start, stride=self.world)
            # A private generator: the DataLoader's base seed must not consume the global
            # RNG (the dropout masks), or a resumed run would differ from an uninterrupted one.
            loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=self.workers, generator=torch.Generator())
            self._items, self._next = iter(loader), start
        aug = self.config.augment
        rng = _rank_rng(rng, self.rank, self.world)
        for _ in range(self.round_steps(phase, state["epoch"])):
            item = next(self._items)
            if int(item["index"]) != self._next:
                msg = f"the training stream gave item {int(item['index'])}, expected {self._next}"
                raise RuntimeError(msg)
            self._next += self.world
            keep = (item["snr"] >= self.config.min_snr).numpy()
            if keep.sum() < 2:
                yield None
                continue
            sci = item["sci"].numpy()[keep]
            err = item["err"].numpy()[keep] if aug.noise_scale > 0 else None
            sci, _ = apply(sci, err, random_params(len(sci), aug, rng), rng, aug.wrap)
            z = item["z"].numpy()[keep]
            zr = state.get("z_range") or [math.inf, -math.inf]
            state.update(n_seen=state.get("n_seen", 0) + int(keep.sum()), z_range=[min(zr[0], float(z.min())), max(zr[1], float(z.max()))])
            yield torch.from_numpy(normalise(sci, self.scales)).to(self.device), item["t"][keep].to(self.device)

    def close(self):
        self._items = None


def _fit(model, feed, config, x_val, z_val, checkpoint, resume, stop_after, progress, device):
    """The training loop shared by files and the stream: rounds of optimiser steps from
    `feed`, each followed by a validation, a checkpoint and the early-stopping check.
    Returns the state (history, best score, steps done) and whether training finished.

    Under torchrun the optimiser steps go through the `DistributedDataParallel` wrapper;
    validation, the log-variance start and the checkpoint use the plain module, and the
    ranks agree (collectives) on each skipped step, score and early stop."""
    rank, world = distributed.group()
    state = {"phase": PHASES[0] if feed.max_rounds("pretrain") > 0 else PHASES[1], "epoch": 0, "history": [], "best": None, "best_score": math.inf, "stale": 0, "steps": 0}
    # What the run is: a checkpoint of another run (config, training data or stream,
    # validation sample) would resume into a model that neither run describes.
    run = {"train": to_dict(config), "feed": feed.identity(), "val_z_sha256": hashlib.sha256(np.ascontiguousarray(z_val, np.float64).tobytes()).hexdigest()[:16]}
    state["run"] = run
    opt, sched = _phase_optimiser(model, state["phase"], config, feed)
    if resume and checkpoint and Path(checkpoint).exists():
        try:
            ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as err:  # an unpickling error means a file we did not write
            msg = f"{checkpoint}: not a slitcli checkpoint that loads without pickle ({str(err).splitlines()[0][:80]})"
            raise InputError(msg) from None
        saved = json.loads(ck["state"]).get("run")
        if saved is not None and saved != json.loads(json.dumps(run)):
            differ = sorted(k for k in _flatten(run).keys() | _flatten(saved).keys() if _flatten(run).get(k) != _flatten(saved).get(k))
            msg = f"{checkpoint}: written by a different run (differs in {', '.join(differ[:4])}{', ...' if len(differ) > 4 else ''}); resume with the same config, training data and validation sample, or start afresh with --overwrite"
            raise InputError(msg)
        state = json.loads(ck["state"])
        state.setdefault("steps", 0)
        model.load_state_dict(ck["model"])
        model.to(device)
        opt, sched = _phase_optimiser(model, state["phase"], config, feed)
        opt.load_state_dict(ck["optimiser"])
        sched.load_state_dict(ck["scheduler"])
        state["best"] = ck["best"] if ck.get("has_best") else None
    net = distributed.wrap(model, device)  # the optimiser steps' model; `model` for everything else
    rounds_this_call = 0
    while True:
        phase = state["phase"]
        max_rounds = feed.max_rounds(phase)
        if state["epoch"] >= max_rounds or state["stale"] >= config.patience:
            if phase == "pretrain":
                model.load_state_dict(_best_state(state))
                _start_logvar(model, *feed.logvar_sample())
                distributed.broadcast_module(model)  # every rank starts fine-tuning from rank 0's weights
                # The best state now carries that variance too: it is the result if there is no fine-tuning.
                state["best"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                # With no fine-tuning the model stays the pre-trained best, and so does its score. A
                # p(z) head keeps its loss in fine-tuning, so the pre-trained best is a result to beat:
                # a fine-tuned round replaces it only with a better validation score.
                keep = feed.max_rounds("finetune") == 0 or isinstance(model.head, PDFHead)
                state.update(phase="finetune", epoch=0, best_score=state["best_score"] if keep else math.inf, stale=0)
                opt, sched = _phase_optimiser(model, "finetune", config, feed)
                continue
            break
        if stop_after is not None and rounds_this_call >= stop_after:
            break
        seed = _epoch_seed(config.seed, phase, state["epoch"])
        torch.manual_seed(_rank_seed(seed, rank, world))
        rng = np.random.default_rng(seed)
        model.train()
        losses = []
        n_steps = feed.round_steps(phase, state["epoch"])
        n_seen = state.get("n_seen", 0)
        for b, batch in enumerate(feed.batches(phase, state, rng)):
            state["steps"] += 1
            if world > 1 and feed.uneven_skips and not distributed.all_agree(batch is not None):
                batch = None  # one rank has no batch: all skip the step, or DDP waits for that rank forever
            if batch is None:
                continue
            x, t = batch
            loss = _loss(model.head, phase, net(x), t, config)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if progress:
                progress({"phase": phase, "epoch": state["epoch"], "epochs": max_rounds, "batch": b + 1, "batches": n_steps, "loss": float(np.mean(losses[-20:])), "step": state["steps"]})
        if world > 1:
            # DDP gives rank 0's batch-norm statistics to every rank at each forward pass,
            # then each rank updates them with its own part: copy rank 0's before validating.
            distributed.broadcast_buffers(model)
            feed.gather(state, n_seen)
        score = sigma_nmad(np.expm1(predict_mean(model, x_val)), z_val)
        loss = float(np.mean(losses)) if losses else math.nan
        if world > 1:
            score = float(distributed.broadcast([score])[0])  # rank 0 decides: the ranks must agree on best and early stop
            total, count = distributed.all_reduce([sum(losses), len(losses)])
            loss = float(total / count) if count else math.nan
        entry = {"phase": phase, "epoch": state["epoch"], "loss": loss, "val_sigma_nmad": float(score)}
        if isinstance(feed, _StreamFeed):
            entry["step"] = int(state["steps"])
        state["history"].append(entry)
        if score < state["best_score"]:
            state.update(best_score=float(score), stale=0, best_epoch=state["epoch"])
            state["best"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["stale"] += 1
        state["epoch"] += 1
        rounds_this_call += 1
        if progress:
            progress({"phase": phase, "epoch": state["epoch"] - 1, "epochs": max_rounds, "loss": loss, "val_sigma_nmad": float(score), "best": state.get("best_epoch") == state["epoch"] - 1 and state["stale"] == 0, "done_epoch": True, "step": state["steps"], "phase_steps": feed.phase_steps(phase)})
        if checkpoint and rank == 0:
            _save_checkpoint(checkpoint, model, opt, sched, state)
    finished = state["phase"] == "finetune" and (state["epoch"] >= feed.max_rounds("finetune") or state["stale"] >= config.patience)
    if finished:
        model.load_state_dict(_best_state(state))
    del net
    # Every rank returns once rank 0's checkpoint is written: a next call that resumes
    # from it (on any rank) must not read the one before.
    distributed.barrier()
    model.to("cpu").eval()
    return state, finished


def _bundle(model, config, overrides, shape, scales, val_data, init, state, finished, t_start, source, counts) -> ModelBundle:
    card = {
        "name": "",
        "architecture": config.architecture,
        "config": to_dict(model_config(config.architecture, **overrides)),
        "input": {
            "instrument": "CSST",
            "bands": list(config.bands),
            "height": int(shape[0]),
            "width": int(shape[1]),
            "normalisation": "asinh(SCI / scale_e_s[band])",
            "scale_e_s": {b: float(s) for b, s in zip(config.bands, scales)},
            "target": "t = ln(1 + z); " + ("p(t) at pdf_bins nodes from 0 to t_max (softmax of the logits)" if isinstance(model.head, PDFHead) else "mean and log-variance of t"),
        },
        "calibration": {"temperature": 1.0, "fitted_on": None},
        "training": {
            "config": to_dict(config),
            **source,
            "val_file": val_data.path.name,
            "init_from": None if init is None else {"name": init.name, "weights_sha256": init.weights_sha256},
            **counts,
            "n_val": int(len(val_data.z)),
            "finished": bool(finished),
            "history": state["history"],
            "wall_s": round(time.perf_counter() - t_start, 3),
            "versions": {"slitcli": __version__, "torch": torch.__version__, "numpy": np.__version__},
        },
        "metrics": {"val_sigma_nmad": state["best_score"] if finished else None},
    }
    return ModelBundle(model, card)


def _best_state(state: dict) -> dict:
    """The weights of the best epoch so far; `InputError` if no epoch had a finite validation score."""
    if state["best"] is None:
        msg = "the validation sigma_NMAD was never finite (NaN or infinite predictions): check the training data, its Z_TRUE and the learning rate"
        raise InputError(msg)
    return state["best"]


def _phase_optimiser(model, phase, config, feed):
    lr = config.lr if phase == "pretrain" else config.finetune_lr
    return _new_optimiser(model, lr, config.weight_decay, max(feed.phase_steps(phase), 1))


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> {"a.b": value} (for naming what differs between two runs)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _save_checkpoint(path, model, opt, sched, state):
    """Write the checkpoint atomically; its directory is made at the first one (and removed if that fails)."""
    path = Path(path)
    best = state.get("best")
    payload = {
        "model": model.state_dict(),
        "optimiser": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "best": best if best is not None else {},
        "has_best": best is not None,
        "state": json.dumps({k: v for k, v in state.items() if k != "best"}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # in memory: a full disk is then an OSError of the write, not torch's RuntimeError
    with output_directory(path.parent), atomic_output(path, overwrite=True) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def with_overrides(config: TrainConfig, **changes) -> TrainConfig:
    """A copy of `config` with the non-None `changes` applied; `ConfigError` if they break its checks."""
    return with_changes(config, "command-line options", **changes)
