"""Training: deterministic pre-training, then Bayesian fine-tuning, as the paper.

1. Pre-training: the network's mean output regresses t = ln(1 + z) with the mean
   squared error.
2. Fine-tuning: from the best pre-trained weights (backbone not frozen), the Gaussian
   negative log-likelihood 0.5 (logvar + exp(-logvar) (t - mu)^2) trains the mean and
   the log-variance together.

Both phases use AdamW and a cosine learning-rate schedule, pick their best epoch by the
validation sigma_NMAD and stop early after `patience` epochs without improvement:
the test sample is never seen. Augmentations are drawn afresh every epoch.

Every epoch seeds its own random numbers from (seed, phase, epoch), and a checkpoint
is written after each epoch (`torch.load(weights_only=True)` reads it back), so a run
resumed after an interruption gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slitcli import __version__
from slitcli.config import to_dict, with_changes
from slitcli.errors import InputError
from slitcli.evaluation.metrics import sigma_nmad
from slitcli.io.catalog import check_finite
from slitcli.io.truth import check_redshifts
from slitcli.io.files import atomic_output, output_directory
from slitcli.io.samplefile import SampleReader
from slitcli.nn import create_model
from slitcli.nn.augment import AugmentConfig, apply, random_params
from slitcli.nn.modelfile import ModelBundle
from slitcli.nn.registry import model_config

__all__ = ["TrainConfig", "TrainData", "load_train_data", "concat_train_data", "train", "normalise", "predict_mean"]

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
    min_snr : float
        Train and validate on sources with SNR_GI >= min_snr only (the paper: 1).
    augment : AugmentConfig
        On-the-fly augmentation (defaults: flips, +-3 pixel shifts along the dispersion,
        the range of CESS's calibration errors, +-4 across, sub-pixel shifts).
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
    min_snr: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0

    def __post_init__(self):
        if self.pretrain_epochs < 0 or self.finetune_epochs < 0 or self.pretrain_epochs + self.finetune_epochs < 1 or self.batch_size < 2 or self.patience < 1:
            msg = "need pretrain_epochs >= 0, finetune_epochs >= 0 (0: a deterministic model), at least one epoch, batch_size >= 2, patience >= 1"
            raise ValueError(msg)


@dataclass
class TrainData:
    """Cutouts in memory: SCI (and ERR when kept) float32 [n, bands, ny, nx] (e-/s), true
    redshifts, the median ERR of each band [e-/s] (the input normalisation scale) and the
    number of bad pixels flagged and neutralised on reading (`slitcli.io.samplefile.mask_bad_pixels`)."""

    sci: np.ndarray
    err: np.ndarray | None
    z: np.ndarray
    path: Path
    file_hash: str
    err_median: np.ndarray | None = None
    bad_pixels: int = 0

    def __post_init__(self):
        if self.err_median is None:
            self.err_median = np.array([np.median(self.err[:, b]) for b in range(self.err.shape[1])], np.float32)


def load_train_data(path: str | Path, bands: tuple[str, ...], min_snr: float, shape=None, progress=None, keep_err: bool = False) -> TrainData:
    """Read a sample file's cutouts of sources with SNR_GI >= `min_snr` (ERR only if `keep_err`).

    Raises
    ------
    InputError
        If the file has no SOURCES HDU with Z_TRUE (and SNR_GI when `min_snr` > 0), or
        if any Z_TRUE (or SNR_GI) is NaN or infinite, or the cut leaves fewer than 2 sources.
    """
    with SampleReader(path, bands, shape) as reader:
        sources = reader.sources()
        if sources is None or "Z_TRUE" not in sources.colnames:
            msg = f"{path}: training needs a SOURCES HDU with Z_TRUE"
            raise InputError(msg)
        check_finite(sources, f"{path}: HDU SOURCES", ("Z_TRUE", "SNR_GI") if min_snr > 0 else ("Z_TRUE",))
        check_redshifts(sources, f"{path}: HDU SOURCES")
        keep = np.ones(reader.n, bool)
        if min_snr > 0:
            if "SNR_GI" not in sources.colnames:
                msg = f"{path}: SOURCES lacks SNR_GI for the min_snr cut"
                raise InputError(msg)
            keep = np.asarray(sources["SNR_GI"]) >= min_snr
        idx = np.nonzero(keep)[0]
        if idx.size < 2:
            msg = f"{path}: fewer than 2 sources with SNR_GI >= {min_snr}"
            raise InputError(msg)
        sci = np.empty((idx.size, len(bands), *reader.shape), np.float32)
        err = np.empty_like(sci) if keep_err else None
        medians = []
        filled = 0
        for start, s, e, _ in reader.iter_chunks(512):
            sel = keep[start : start + len(s)]
            k = int(sel.sum())
            sci[filled : filled + k] = s[sel]
            if keep_err:
                err[filled : filled + k] = e[sel]
            medians.append(np.median(e[sel], axis=(0, 2, 3)) if k else np.full(len(bands), np.nan))
            filled += k
            if progress:
                progress(start + len(s), reader.n)
        header = reader.fits[0].read_header()
        bad_pixels = reader.bad_pixels
    file_hash = f"{header.get('CFGHASH', '')}:{header.get('INSTHASH', '')}:seed={header.get('SEED', '')}:n={len(keep)}"
    # The median of chunk medians: the ERR of a blank pixel is the same everywhere.
    err_median = np.nanmedian(np.array(medians), axis=0).astype(np.float32)
    return TrainData(sci, err, np.asarray(sources["Z_TRUE"], float)[idx], Path(path), file_hash, err_median, bad_pixels)


def concat_train_data(parts: list[TrainData]) -> TrainData:
    """One TrainData from several (e.g. one per sample file)."""
    if len(parts) == 1:
        return parts[0]
    keep_err = all(p.err is not None for p in parts)
    return TrainData(
        np.concatenate([p.sci for p in parts]),
        np.concatenate([p.err for p in parts]) if keep_err else None,
        np.concatenate([p.z for p in parts]),
        Path(",".join(p.path.name for p in parts)),
        ";".join(p.file_hash for p in parts),
        np.median([p.err_median for p in parts], axis=0).astype(np.float32),
        sum(p.bad_pixels for p in parts),
    )


def normalise(sci: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Network input: asinh(SCI / scale) per band, scale about the noise of a blank pixel [e-/s]."""
    return np.arcsinh(sci / scales[None, :, None, None]).astype(np.float32)


def predict_mean(model: torch.nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Deterministic predicted t = ln(1 + z) (dropout off, batch-norm in eval)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            mu, _ = model(torch.from_numpy(x[i : i + batch]).to(device))
            out.append(mu.cpu().numpy())
    return np.concatenate(out)


def _epoch_seed(seed: int, phase: str, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, PHASES.index(phase), epoch]).generate_state(1)[0])


def _loss(phase: str, mu, logvar, t, beta: float = 0.0):
    if phase == "pretrain":
        return torch.mean((mu - t) ** 2)
    nll = 0.5 * (logvar + torch.exp(-logvar) * (t - mu) ** 2)
    if beta:
        nll = nll * torch.exp(beta * logvar).detach()
    return torch.mean(nll)


def _start_logvar(model, x: np.ndarray, t: np.ndarray, batch: int = 512) -> None:
    """Start the log-variance output at the pre-trained model's mean squared error on
    training cutouts `x`, so that fine-tuning begins from a sensible variance instead
    of a random one."""
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
    torch.manual_seed(config.seed)
    shape = train_data.sci.shape[2:]
    overrides = dict(model_overrides or {})
    overrides.setdefault("in_channels", len(config.bands))
    if config.architecture == "slitnet":
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
        scales = np.asarray(train_data.err_median, np.float32)
    if config.augment.noise_scale > 0 and train_data.err is None:
        msg = "the noise augmentation needs ERR: load the training data with keep_err=True"
        raise ValueError(msg)
    x_val = normalise(val_data.sci, scales)
    t_train = np.log1p(train_data.z).astype(np.float32)

    steps_per_epoch = math.ceil(len(t_train) / config.batch_size)
    state = {"phase": PHASES[0] if config.pretrain_epochs > 0 else PHASES[1], "epoch": 0, "history": [], "best": None, "best_score": math.inf, "stale": 0}
    opt, sched = _phase_optimiser(model, state["phase"], config, steps_per_epoch)
    if resume and checkpoint and Path(checkpoint).exists():
        try:
            ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as err:  # an unpickling error means a file we did not write
            msg = f"{checkpoint}: not a slitcli checkpoint that loads without pickle ({str(err).splitlines()[0][:80]})"
            raise InputError(msg) from None
        state = json.loads(ck["state"])
        model.load_state_dict(ck["model"])
        model.to(device)
        opt, sched = _phase_optimiser(model, state["phase"], config, steps_per_epoch)
        opt.load_state_dict(ck["optimiser"])
        sched.load_state_dict(ck["scheduler"])
        state["best"] = ck["best"] if ck.get("has_best") else None
    epochs_this_call = 0
    while True:
        phase = state["phase"]
        max_epochs = config.pretrain_epochs if phase == "pretrain" else config.finetune_epochs
        if state["epoch"] >= max_epochs or state["stale"] >= config.patience:
            if phase == "pretrain":
                model.load_state_dict(_best_state(state))
                first = np.arange(min(len(t_train), 2048))
                _start_logvar(model, normalise(train_data.sci[first], scales), t_train[first])
                # The best state now carries that variance too: it is the result if there is no fine-tuning.
                state["best"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                # With no fine-tuning the model stays the pre-trained best, and so does its score.
                state.update(phase="finetune", epoch=0, best_score=state["best_score"] if config.finetune_epochs == 0 else math.inf, stale=0)
                opt, sched = _phase_optimiser(model, "finetune", config, steps_per_epoch)
                continue
            break
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            break
        seed = _epoch_seed(config.seed, phase, state["epoch"])
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(t_train))
        model.train()
        losses = []
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * config.batch_size : (b + 1) * config.batch_size])
            err = None if train_data.err is None else train_data.err[idx]
            sci, _ = apply(train_data.sci[idx], err, random_params(len(idx), config.augment, rng), rng, config.augment.wrap)
            x = torch.from_numpy(normalise(sci, scales)).to(device)
            mu, logvar = model(x)
            loss = _loss(phase, mu, logvar, torch.from_numpy(t_train[idx]).to(device), config.nll_beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if progress:
                progress({"phase": phase, "epoch": state["epoch"], "epochs": max_epochs, "batch": b + 1, "batches": steps_per_epoch, "loss": float(np.mean(losses[-20:]))})
        z_val = np.expm1(predict_mean(model, x_val))
        score = sigma_nmad(z_val, val_data.z)
        state["history"].append({"phase": phase, "epoch": state["epoch"], "loss": float(np.mean(losses)), "val_sigma_nmad": float(score)})
        if score < state["best_score"]:
            state.update(best_score=float(score), stale=0, best_epoch=state["epoch"])
            state["best"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["stale"] += 1
        state["epoch"] += 1
        epochs_this_call += 1
        if progress:
            progress({"phase": phase, "epoch": state["epoch"] - 1, "epochs": max_epochs, "loss": float(np.mean(losses)), "val_sigma_nmad": float(score), "best": state.get("best_epoch") == state["epoch"] - 1 and state["stale"] == 0, "done_epoch": True})
        if checkpoint:
            _save_checkpoint(checkpoint, model, opt, sched, state)
    finished = state["phase"] == "finetune" and (state["epoch"] >= config.finetune_epochs or state["stale"] >= config.patience)
    if finished:
        model.load_state_dict(_best_state(state))
    model.to("cpu").eval()
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
            "target": "t = ln(1 + z); mean and log-variance of t",
        },
        "calibration": {"temperature": 1.0, "fitted_on": None},
        "training": {
            "config": to_dict(config),
            "train_file": train_data.path.name,
            "train_file_id": train_data.file_hash,
            "val_file": val_data.path.name,
            "init_from": None if init is None else {"name": init.name, "weights_sha256": init.weights_sha256},
            "n_train": int(len(t_train)),
            "z_range": [float(train_data.z.min()), float(train_data.z.max())],
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


def _phase_optimiser(model, phase, config, steps_per_epoch):
    epochs = config.pretrain_epochs if phase == "pretrain" else config.finetune_epochs
    lr = config.lr if phase == "pretrain" else config.finetune_lr
    return _new_optimiser(model, lr, config.weight_decay, max(epochs * steps_per_epoch, 1))


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
