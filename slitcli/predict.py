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
SNR power p, and the quantiles are those of N(Z, ZERR), or, where calibration chose heavier tails,
of a Student t of `dof` degrees of freedom whose 68.27% interval is Z +- ZERR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from astropy.table import Table, vstack

from slitcli.calibration import snr_scale
from slitcli.errors import ConfigError
from slitcli.extract import extract_optimal, snr_mean
from slitcli.metrics import standard_quantile
from slitcli.modelfile import ModelBundle
from slitcli.nn.layers import set_mc_dropout
from slitcli.samplefile import SampleReader
from slitcli.train import normalise

__all__ = ["PredictConfig", "check_inputs", "mc_predict", "mc_predict_naive", "summarise", "predict_file", "ZWARN_BITS", "resolve_device", "data_snr", "data_zwarn", "source_identity", "band_columns", "catalog_meta"]

#: ZWARN bits: redrock's where the meaning is the same, slitcli's own in 16-23.
ZWARN_BITS = {"Z_FITLIMIT": 32, "NODATA": 512, "POORDATA": 2048, "LARGE_EPISTEMIC": 1 << 16}
_QUANTILES = {"Z025": 0.025, "Z160": 0.16, "Z500": 0.5, "Z840": 0.84, "Z975": 0.975}


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
    """

    n_mc: int = 100
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    max_epistemic: float = 0.05

    def __post_init__(self):
        if self.n_mc < 2:
            msg = f"--n-mc must be >= 2 for an epistemic uncertainty, got {self.n_mc}"
            raise ConfigError(msg)


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
    """Backbone once, head `n_mc` times: (mu_t, logvar_t), each [n_mc, n]."""
    model.eval()
    with torch.inference_mode():
        features = model.backbone(x)
        set_mc_dropout(model, True)
        try:
            per = max(1, chunk_elems // max(features.numel(), 1))
            mus, logvars = [], []
            for start in range(0, n_mc, per):
                k = min(per, n_mc - start)
                mu, logvar = model.head(features.repeat(k, 1))
                mus.append(mu.view(k, -1))
                logvars.append(logvar.view(k, -1))
        finally:
            set_mc_dropout(model, False)
    return torch.cat(mus), torch.cat(logvars)


def mc_predict_naive(model: torch.nn.Module, x: torch.Tensor, n_mc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n_mc` full passes with dropout on (the reference code's way, minus its batch-norm flaw)."""
    model.eval()
    with torch.inference_mode():
        set_mc_dropout(model, True)
        try:
            out = [model(x) for _ in range(n_mc)]
        finally:
            set_mc_dropout(model, False)
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def summarise(mu_t: np.ndarray, logvar_t: np.ndarray, temperature: float | np.ndarray = 1.0, dof: float = np.inf) -> dict:
    """Per-source Z, ZERR, ZERR_EPI, ZERR_ALE and quantiles from MC samples [T, n] of t = ln(1+z).

    `temperature` scales the uncertainties: one number, or one per source (the calibration's
    SNR-dependent scale).
    """
    t_mean = mu_t.mean(axis=0)
    z = np.expm1(t_mean)
    epi = (1 + z) * mu_t.std(axis=0, ddof=1) * temperature
    ale = (1 + z) * np.sqrt(np.exp(logvar_t).mean(axis=0)) * temperature
    zerr = np.hypot(epi, ale)
    out = {"Z": z, "ZERR": zerr, "ZERR_EPI": epi, "ZERR_ALE": ale}
    for name, q in _QUANTILES.items():
        out[name] = z + standard_quantile(q, dof) * zerr
    return out


def data_snr(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, band_index: int, columns: np.ndarray | None = None) -> np.ndarray:
    """SNR of each cutout's band from the data alone [n]: optimal extraction with the
    cutout's own cross-dispersion profile (SCI summed along x, clipped at zero), then the
    paper's mean of flux/err over `columns` (all columns if None)."""
    out = np.zeros(len(sci))
    for i in range(len(sci)):
        s, e, d = sci[i, band_index], err[i, band_index], dq[i, band_index]
        prof_y = np.clip(np.where(d == 0, s, 0).sum(axis=1), 0, None)
        if prof_y.sum() <= 0:
            continue
        flux, ferr = extract_optimal(s, e, d, np.repeat(prof_y[:, None], s.shape[1], axis=1))
        if columns is not None:
            flux, ferr = flux[columns], ferr[columns]
        out[i] = snr_mean(flux, ferr)
    return out


def data_zwarn(sci: np.ndarray, dq: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """ZWARN bits that depend on the data alone: NODATA (blank or fully flagged) and POORDATA (SNR_GI < 1)."""
    zwarn = np.zeros(len(sci), np.int64)
    nodata = ~(np.abs(sci).reshape(len(sci), -1).max(axis=1) > 0) | np.all(dq != 0, axis=(1, 2, 3))
    zwarn[nodata] |= ZWARN_BITS["NODATA"]
    zwarn[snr < 1.0] |= ZWARN_BITS["POORDATA"]
    return zwarn


def source_identity(sources, start: int, n: int) -> dict:
    """SOURCE_ID, RA, DEC of sources `start:start+n` from the SOURCES table (running index and NaN without one)."""
    if sources is not None:
        return {c: np.asarray(sources[c][start : start + n]) for c in ("SOURCE_ID", "RA", "DEC")}
    return {"SOURCE_ID": np.arange(start, start + n), "RA": np.full(n, np.nan), "DEC": np.full(n, np.nan)}


def band_columns(reader: SampleReader, band: str) -> np.ndarray | None:
    """Columns whose WCS wavelength lies inside `band` of the shipped instrument (None if unknown)."""
    from slitcli.instrument import load_instrument

    header = reader.fits[f"{band}_SCI"].read_header()
    try:
        limits = load_instrument().band(band)
    except ConfigError:
        return None
    if not all(k in header for k in ("CRVAL1", "CDELT1", "CRPIX1")):
        return None
    wave = header["CRVAL1"] + header["CDELT1"] * (np.arange(reader.shape[1]) + 1.0 - header["CRPIX1"])
    return np.nonzero((wave >= limits.wave_min_aa) & (wave <= limits.wave_max_aa))[0]


def predict_file(
    bundle: ModelBundle,
    path,
    config: PredictConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Table:
    """Predict every source of one sample file; returns the catalogue rows.

    Raises
    ------
    InputError
        If the file's bands or cutout size do not fit the model, or it holds NaN cutouts.
    """
    device = resolve_device(config.device)
    model = bundle.model.to(device)
    scales = bundle.scales
    gi = bundle.bands.index("GI") if "GI" in bundle.bands else len(bundle.bands) - 1
    train_z = bundle.card.get("training", {}).get("z_range", [0.0, 10.0])
    rows = []
    with SampleReader(path, bundle.bands, bundle.shape) as reader:
        sources = reader.sources()
        snr_columns = band_columns(reader, bundle.bands[gi])
        for start, sci, err, dq in reader.iter_chunks(config.batch_size):
            torch.manual_seed(int(np.random.SeedSequence([config.seed, start]).generate_state(1)[0]))
            x = torch.from_numpy(normalise(sci, scales)).to(device)
            mu, logvar = mc_predict(model, x, config.n_mc)
            snr = data_snr(sci, err, dq, gi, snr_columns)
            scale = bundle.temperature * snr_scale(snr, bundle.snr_power)
            stats = summarise(mu.double().cpu().numpy(), logvar.double().cpu().numpy(), scale, bundle.tail_dof)
            zwarn = data_zwarn(sci, dq, snr)
            zwarn[(stats["Z"] < train_z[0]) | (stats["Z"] > train_z[1])] |= ZWARN_BITS["Z_FITLIMIT"]
            zwarn[stats["ZERR_EPI"] / (1 + stats["Z"]) > config.max_epistemic] |= ZWARN_BITS["LARGE_EPISTEMIC"]
            rows.append(Table({**source_identity(sources, start, len(sci)), **stats, "SNR_GI": snr, "ZWARN": zwarn}))
            if progress:
                progress(start + len(sci), reader.n)
    return vstack(rows)  # SampleReader refuses a file without sources


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
