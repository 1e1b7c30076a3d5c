"""Temperature scaling of predicted redshift uncertainties (Miao et al. 2026).

One number T multiplies every predicted 1-sigma uncertainty, ``zerr -> T zerr``, chosen
on a validation set so that the coverage of the central Gaussian intervals matches their
confidence levels:

    T = argmin_T  mean over c of (coverage(c; T zerr) - c)^2,   c = 0.10, 0.11, ..., 0.99.

coverage(c; T zerr) is the fraction of sources with r = |dz| / zerr <= k_c T, where
k_c = Phi^-1(0.5 + c/2). It changes only where some k_c T crosses some r, so the
objective is piecewise constant in T: it is searched on a dense grid, not by gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slitcli.errors import InputError
from slitcli.metrics import DEFAULT_LEVELS, gaussian_half_width, normalised_residuals

__all__ = ["fit_temperature", "temperature_objective", "calibrate_model", "CalibrationResult", "MIN_SOURCES", "T_RANGE"]

#: Fewest sources `fit_temperature` accepts.
MIN_SOURCES = 10
#: Range of temperatures searched.
T_RANGE = (0.05, 20.0)
_N_COARSE = 4000
_N_FINE = 2001


def _objective(r_sorted: np.ndarray, k: np.ndarray, levels: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    thresholds = np.multiply.outer(temperatures, k)  # (n_T, n_levels)
    cov = np.searchsorted(r_sorted, thresholds, side="right") / r_sorted.size
    return np.mean((cov - levels) ** 2, axis=1)


def temperature_objective(z_pred, zerr, z_true, temperatures, levels=DEFAULT_LEVELS) -> np.ndarray:
    """Mean over `levels` of (coverage(c; T zerr) - c)^2 for each T in `temperatures`."""
    levels = np.asarray(levels, dtype=np.float64)
    r = np.sort(normalised_residuals(z_pred, zerr, z_true))
    return _objective(r, gaussian_half_width(levels), levels, np.atleast_1d(np.asarray(temperatures, dtype=np.float64)))


def fit_temperature(z_pred, zerr, z_true, levels=DEFAULT_LEVELS) -> float:
    """The temperature T that best calibrates ``T * zerr`` on this sample.

    A log-spaced grid of 4000 temperatures over [0.05, 20] finds the best flat run; a
    linear grid of 2001 points from the coarse point before that run to the one after
    refines it. The objective is flat between breakpoints, so the result is the midpoint
    of the run of fine-grid points at the minimum (the lowest-T run if several tie).

    Parameters
    ----------
    z_pred, zerr, z_true : array_like
        Predicted redshift, its 1-sigma uncertainty (> 0) and the true redshift.
    levels : array_like
        Confidence levels in (0, 1); default 0.10, 0.11, ..., 0.99.

    Returns
    -------
    float
        The temperature, dimensionless, in [0.05, 20].

    Raises
    ------
    InputError
        Fewer than 10 sources, or a zerr that is not finite and positive.
    """
    zerr = np.asarray(zerr, dtype=np.float64)
    if zerr.size < MIN_SOURCES:
        msg = f"temperature scaling needs at least {MIN_SOURCES} sources, got {zerr.size}"
        raise InputError(msg)
    if not np.all(np.isfinite(zerr) & (zerr > 0)):
        msg = "temperature scaling needs every ZERR finite and > 0"
        raise InputError(msg)
    levels = np.asarray(levels, dtype=np.float64)
    r = np.sort(normalised_residuals(z_pred, zerr, z_true))
    k = gaussian_half_width(levels)

    coarse = np.geomspace(*T_RANGE, _N_COARSE)
    first, last = _first_run_at_min(_objective(r, k, levels, coarse))
    fine = np.linspace(coarse[max(first - 1, 0)], coarse[min(last + 1, _N_COARSE - 1)], _N_FINE)
    first, last = _first_run_at_min(_objective(r, k, levels, fine))
    return float(0.5 * (fine[first] + fine[last]))


def _first_run_at_min(values: np.ndarray) -> tuple[int, int]:
    """First and last index of the first contiguous run of `values` equal to their minimum."""
    at_min = values == values.min()
    first = int(np.argmax(at_min))
    run = at_min[first:]
    return first, first + (run.size if run.all() else int(np.argmin(run))) - 1


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of `calibrate_model`: the temperature and the calibration error
    (RMS of coverage minus confidence) before and after, on `n` held-out sources."""

    temperature: float
    error_before: float
    error_after: float
    n: int
    sample: str


def calibrate_model(bundle, sample_path, predict_config, *, min_snr: float | None = None, progress=None) -> CalibrationResult:
    """Fit the temperature of `bundle` on a held-out sample file and store it in its card.

    Predicts every source with the raw uncertainties (temperature 1), keeps sources with
    SNR_GI >= `min_snr` of the truth (default: the model's training cut), and fits T
    against the sample's Z_TRUE. `bundle.card["calibration"]` is updated in place.
    """
    from pathlib import Path

    from slitcli.evaluate import join_truth, read_truth
    from slitcli.metrics import calibration_error
    from slitcli.predict import predict_file

    if min_snr is None:
        min_snr = float(bundle.card.get("training", {}).get("config", {}).get("min_snr", 1.0))
    bundle.card.setdefault("calibration", {})["temperature"] = 1.0
    pred = predict_file(bundle, sample_path, predict_config, progress=progress)
    truth = read_truth(sample_path)
    try:
        joined = join_truth(pred, truth)
    except ValueError as err:
        raise InputError(f"{sample_path}: {err}") from None
    if "SNR_GI" in joined.colnames:
        joined = joined[np.asarray(joined["SNR_GI"]) >= min_snr]
    z, zerr, z_true = (np.asarray(joined[c], float) for c in ("Z", "ZERR", "Z_TRUE"))
    t = fit_temperature(z, zerr, z_true)
    result = CalibrationResult(t, calibration_error(z, zerr, z_true), calibration_error(z, t * zerr, z_true), len(z), Path(sample_path).name)
    bundle.card["calibration"] = {
        "temperature": t,
        "fitted_on": result.sample,
        "n": result.n,
        "min_snr": min_snr,
        "calibration_error_before": result.error_before,
        "calibration_error_after": result.error_after,
        "n_mc": predict_config.n_mc,
        "seed": predict_config.seed,
    }
    return result
