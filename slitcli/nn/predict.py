"""Redshifts with uncertainties from sample files: Monte Carlo dropout done right.

The backbone runs once per source in eval mode (batch-norm frozen); only the head's
dropout is sampled, T times, on the same features. This is exact, since dropout sits
only in the head, and about T times cheaper than T full passes. The network works in
t = ln(1 + z); per source, over the T passes:

    Z        = exp(mean_t mu_t) - 1
    ZERR_EPI = (1 + Z) std_t(mu_t)                      x temperature
    ZERR_ALE = (1 + Z) sqrt(mean_t exp(logvar_t))       x temperature
    ZERR     = sqrt(ZERR_EPI^2 + ZERR_ALE^2)

where the temperature is that of the calibration, times (SNR_GI / 3)^p if it chose an
SNR power p. ZERR / (1 + Z) is the 68.27% half-width in t of a Gaussian or, where
calibration chose heavier tails, a Student t of `dof` (ZDOF) degrees of freedom; the
quantiles are that distribution's, computed in t and censored at z = 0
(`slitcli.io.redshift.quantiles`; the definitions are in `slitcli.io.redshift`).

A model with a p(z) head (`slitcli.nn.pdf`) predicts a distribution on a grid instead:
the T passes' softmaxes, of the logits divided by that temperature, are averaged into
the predictive p(z), remapped by the card's PIT map if calibration fitted one
(`slitcli.nn.pit_map`; ZERR_EPI and ZERR_ALE stay those of the passes before it), and
every column is read from it (`slitcli.nn.pdf.summarise_pdf`):
Z its median (or mode, as the card's ``calibration.pdf_point`` says), ZERR half the
width of its central 68.27% interval, the quantiles and ODDS its own. ZDOF is then
meaningless and written as 0; ``--pdf`` writes the mixture itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from astropy.table import Table, vstack

from slitcli.errors import ConfigError
from slitcli.extract import data_snr, sample_band_columns
from slitcli.io.redshift import (
    ZWARN_BITS,
    data_zwarn,
    odds,
    quantiles,
    source_identity,
)
from slitcli.io.samplefile import SampleReader
from slitcli.io.zpdf import normalise as normalise_pdf
from slitcli.io.zpdf import predictive_pdf, z_grid
from slitcli.nn import pdf
from slitcli.nn.ensemble import Ensemble
from slitcli.nn.layers import PDFHead, mc_sampling
from slitcli.nn.modelfile import ModelBundle
from slitcli.nn.train import normalise

__all__ = ["PredictConfig", "check_inputs", "mc_predict", "mc_pdf", "pdf_grid_of", "chunk_seed", "mc_predict_naive", "summarise", "predict_file", "predict_sample", "resolve_device", "catalog_meta", "snr_scale", "SNR_PIVOT", "SNR_CLIP"]

@dataclass(frozen=True)
class PredictConfig:
    """Prediction settings.

    Attributes
    ----------
    n_mc : int
        Monte Carlo dropout passes T (>= 2 for an epistemic estimate).
    batch_size : int
        Sources per backbone batch.
    seed : int
        Seed of the dropout masks.
    device : str
        "auto" (GPU if available), "cpu" or "cuda".
    max_epistemic : float
        ZERR_EPI/(1+Z) above this sets the LARGE_EPISTEMIC bit.
    pdf : bool
        Add a 2D column ``ZPDF``: the predictive distribution on `slitcli.io.zpdf.z_grid`.
    """

    n_mc: int = 100
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    max_epistemic: float = 0.05
    pdf: bool = False

    def __post_init__(self):
        if self.n_mc < 2:
            msg = f"--n-mc must be >= 2 for an epistemic uncertainty, got {self.n_mc}"
            raise ConfigError(msg)


def chunk_seed(seed: int, start: int) -> int:
    """Torch seed of the dropout masks of the chunk starting at source `start`."""
    return int(np.random.SeedSequence([seed, start]).generate_state(1)[0])


def resolve_device(name: str) -> torch.device:
    """The torch device for "auto", "cpu" or "cuda"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        msg = "--device cuda asked for, but torch sees no CUDA GPU"
        raise ConfigError(msg)
    if name not in ("cpu", "cuda"):
        msg = f"--device must be auto, cpu or cuda, got {name!r}"
        raise ConfigError(msg)
    return torch.device(name)


def mc_predict(model: torch.nn.Module, x: torch.Tensor, n_mc: int, chunk_elems: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone and the head's deterministic first layer once, the rest of the head `n_mc` times: (mu_t, logvar_t), each [n_mc, n].

    Everything before the head's first dropout is the same in every pass; the head's first
    Linear (3,840 x 256 in slitnet) is most of its cost, so only what follows is sampled.
    An `slitcli.nn.ensemble.Ensemble` gives each member's `n_mc` passes, pooled [M n_mc, n].
    """
    if isinstance(model, Ensemble):
        mus, logvars = zip(*(mc_predict(m, x, n_mc, chunk_elems) for m in model.members), strict=True)
        return torch.cat(mus), torch.cat(logvars)
    with mc_sampling(model):
        h = model.head.deterministic(model.backbone(x))
        per = max(1, chunk_elems // max(h.numel(), 1))
        mus, logvars = [], []
        for start in range(0, n_mc, per):
            k = min(per, n_mc - start)
            mu, logvar = model.head.sampled(h.repeat(k, 1))
            mus.append(mu.view(k, -1))
            logvars.append(logvar.view(k, -1))
    return torch.cat(mus), torch.cat(logvars)


def mc_pdf(model: torch.nn.Module, x: torch.Tensor, n_mc: int, temperature=1.0, chunk_elems: int = 1 << 21) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A p(z) head's Monte Carlo mixture: node probabilities [n, n_bins] and each pass's mean and variance of t [n_mc, n].

    As `mc_predict`, the backbone and the head's first layer run once; `temperature`
    (one number or one per source) divides the logits (`slitcli.nn.pdf.mixture`). The
    passes run a few at a time, `chunk_elems` logits per chunk (8 MB): small enough for the
    softmax and the sums to find them in the cache (on 2 CPU cores 24% faster at T = 100
    than 64 MB chunks). An
    `slitcli.nn.ensemble.Ensemble` gives the mean of its members' mixtures and their passes' moments pooled [M n_mc, n].
    """
    if isinstance(model, Ensemble):
        parts = [mc_pdf(m, x, n_mc, temperature, chunk_elems) for m in model.members]
        return torch.stack([p[0] for p in parts]).mean(0), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])
    head = model.head
    with mc_sampling(model):
        h = head.deterministic(model.backbone(x))
        temperature = torch.broadcast_to(torch.as_tensor(temperature, dtype=h.dtype, device=h.device), (len(h),))
        per = max(1, chunk_elems // max(len(h) * head.n_bins, 1))
        total, means, variances = 0.0, [], []
        for start in range(0, n_mc, per):
            k = min(per, n_mc - start)
            probs = torch.softmax(head.sampled(h.repeat(k, 1), temperature.repeat(k)).view(k, len(h), -1), dim=-1)
            total = total + probs.sum(0)
            mean, var = pdf.moments(probs, head.t_max)
            means.append(mean)
            variances.append(var)
    return total / n_mc, torch.cat(means), torch.cat(variances)


def mc_predict_naive(model: torch.nn.Module, x: torch.Tensor, n_mc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n_mc` full passes with dropout on (the reference code's way, minus its batch-norm flaw)."""
    with mc_sampling(model):
        out = [model(x) for _ in range(n_mc)]
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def summarise(mu_t: np.ndarray, logvar_t: np.ndarray, temperature: float | np.ndarray = 1.0, dof: float = np.inf) -> dict:
    """Per-source Z, ZERR, ZERR_EPI, ZERR_ALE and quantiles from MC samples [T, n] of t = ln(1+z).

    `temperature` scales the uncertainties: one number, or one per source (the calibration's
    SNR-dependent scale). ZERR / (1 + Z) is the 68.27% half-width in t of the predictive
    distribution, Gaussian or Student t of `dof` (inf: Gaussian); see `slitcli.io.redshift`.
    """
    t_mean = mu_t.mean(axis=0)
    z = np.expm1(t_mean)
    epi = (1 + z) * mu_t.std(axis=0, ddof=1) * temperature
    ale = (1 + z) * np.sqrt(np.exp(logvar_t).mean(axis=0)) * temperature
    zerr = np.hypot(epi, ale)
    return {"Z": z, "ZERR": zerr, "ZERR_EPI": epi, "ZERR_ALE": ale, **quantiles(z, zerr, dof), "ODDS": odds(z, zerr, dof)}


#: The calibration's SNR scale: (clip(SNR_GI, *SNR_CLIP) / SNR_PIVOT)^power.
SNR_PIVOT = 3.0
SNR_CLIP = (1.0, 30.0)


def snr_scale(snr, power: float) -> np.ndarray:
    """The SNR-dependent factor (clip(snr, 1, 30) / 3)^power of the uncertainties."""
    return (np.clip(np.asarray(snr, dtype=np.float64), *SNR_CLIP) / SNR_PIVOT) ** power


def predict_file(
    bundle: ModelBundle,
    path,
    config: PredictConfig,
    *,
    contamination: str = "ignore",
    progress: Callable[[int, int], None] | None = None,
) -> Table:
    """Predict every source of one sample file; returns the catalogue rows (`predict_sample`).

    `contamination` ("ignore" or "subtract") is what the reader does with the file's
    ``<BAND>_CONTAM`` cubes (`slitcli.io.samplefile.SampleReader`).

    Raises
    ------
    InputError
        If the file's bands or cutout size do not fit the model.
    """
    with SampleReader(path, bundle.bands, bundle.shape, contamination=contamination) as reader:
        return predict_sample(bundle, reader, config, progress=progress)


def predict_sample(
    bundle: ModelBundle,
    reader,
    config: PredictConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    pdf_grid: np.ndarray | None = None,
) -> Table:
    """Predict every source of an open sample: a `SampleReader`, or a `slitcli.fields.field_sample.FieldSample`.

    With `config.pdf`, the column ``ZPDF`` holds each PDF on `pdf_grid` (redshifts; default
    `pdf_grid_of`).

    Bad pixels (non-finite SCI, ERR <= 0 or non-finite) are flagged and neutralised on
    reading (`slitcli.io.samplefile.mask_bad_pixels`); ``meta["NBADPIX"]`` counts them.
    """
    device = resolve_device(config.device)
    model = bundle.model.to(device)
    scales = bundle.scales
    gi = bundle.bands.index("GI") if "GI" in bundle.bands else len(bundle.bands) - 1
    train_z = bundle.card.get("training", {}).get("z_range", [0.0, 10.0])
    rows = []
    sources = reader.sources()
    snr_columns = sample_band_columns(reader, bundle.bands[gi])
    grid = (pdf_grid_of(bundle) if pdf_grid is None else np.asarray(pdf_grid, np.float64)) if config.pdf else None
    is_pdf = isinstance(model.head, PDFHead)
    pit_map = bundle.pit_map if is_pdf else None
    for start, sci, err, dq in reader.iter_chunks(config.batch_size):
        torch.manual_seed(chunk_seed(config.seed, start))
        x = torch.from_numpy(normalise(sci, scales)).to(device)
        snr = data_snr(sci, err, dq, gi, snr_columns)
        scale = bundle.temperature * snr_scale(snr, bundle.snr_power)
        if is_pdf:
            probs, mean_t, var_t = mc_pdf(model, x, config.n_mc, torch.from_numpy(np.broadcast_to(scale, len(sci)).astype(np.float32)).to(device))
            probs = probs.double().cpu().numpy()
            if pit_map is not None:
                probs = pit_map.apply(probs, snr)
            stats = pdf.summarise_pdf(probs, model.head.t_max, mean_t.double().cpu().numpy(), var_t.double().cpu().numpy(), bundle.pdf_point)
        else:
            mu, logvar = mc_predict(model, x, config.n_mc)
            stats = summarise(mu.double().cpu().numpy(), logvar.double().cpu().numpy(), scale, bundle.tail_dof)
        zwarn = data_zwarn(sci, dq, snr)
        zwarn[(stats["Z"] < train_z[0]) | (stats["Z"] > train_z[1])] |= ZWARN_BITS["Z_FITLIMIT"]
        zwarn[stats["ZERR_EPI"] / (1 + stats["Z"]) > config.max_epistemic] |= ZWARN_BITS["LARGE_EPISTEMIC"]
        columns = {**source_identity(sources, start, len(sci)), **stats, "SNR_GI": snr, "ZWARN": zwarn}
        if config.pdf and is_pdf:
            columns["ZPDF"] = normalise_pdf(grid, pdf.density_on(probs, model.head.t_max, grid)).astype(np.float32)
        elif config.pdf:
            columns["ZPDF"] = predictive_pdf(stats["Z"], stats["ZERR"], grid, bundle.tail_dof).astype(np.float32)
        rows.append(Table(columns))
        if progress:
            progress(start + len(sci), reader.n)
    table = vstack(rows)  # readers refuse a sample without sources
    # Pixels with non-finite SCI or ERR <= 0 / non-finite, flagged DO_NOT_USE and neutralised on reading.
    table.meta["NBADPIX"] = reader.bad_pixels
    return table


def pdf_grid_of(bundle: ModelBundle) -> np.ndarray:
    """The redshifts at which ``predict --pdf`` writes a model's PDFs.

    A p(z) head's own nodes (uniform in t = ln(1 + z), `slitcli.nn.pdf.nodes`): its density
    is piecewise linear in t between them, so the written PDF is the head's, and quantiles
    read from it are the catalogue's columns (sampled on a finer grid that does not hold the
    nodes, the sharpest PDFs lose up to 0.02 of CDF). Otherwise `slitcli.io.zpdf.z_grid`.
    """
    head = bundle.model.head
    if isinstance(head, PDFHead):
        return np.expm1(pdf.nodes(head.n_bins, head.t_max))
    return z_grid()


def catalog_meta(bundle: ModelBundle, config: PredictConfig) -> dict:
    """Provenance of a CNN catalogue; keys of at most 8 characters, so FITS keeps them as plain cards."""
    return {
        "METHOD": "cnn",
        "MODEL": bundle.name,
        "MODELSHA": bundle.weights_sha256,
        "N_MC": config.n_mc,
        "SEED": config.seed,
        "TEMPERAT": bundle.temperature,
        "SNRPOWER": bundle.snr_power,
        # The network's output: "gaussian" (mean and variance of t) or "pdf" (p(t) on a grid, slitcli.nn.pdf).
        "NETHEAD": "pdf" if isinstance(bundle.model.head, PDFHead) else "gaussian",
        # Networks pooled (an ensemble, slitcli.nn.ensemble); 1 for a single model.
        "NMEMBERS": len(bundle.model.members) if isinstance(bundle.model, Ensemble) else 1,
        "DEVICE": str(resolve_device(config.device)),
        # Student t degrees of freedom of the predictive distribution; 0 means Gaussian.
        "ZDOF": bundle.tail_dof if np.isfinite(bundle.tail_dof) else 0.0,
    }


def check_inputs(bundle: ModelBundle, paths) -> int:
    """Check that every sample file fits the model (bands, cutout size); return the total number of sources."""
    total = 0
    for path in paths:
        with SampleReader(path, bundle.bands, bundle.shape) as reader:
            total += reader.n
    return total
