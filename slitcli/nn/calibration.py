"""Temperature scaling of predicted redshift uncertainties (Miao et al. 2026).

One number T multiplies every predicted uncertainty, ``zerr -> T zerr``, chosen
on a validation set so that the coverage of the central Gaussian intervals matches their
confidence levels:

    T = argmin_T  mean over c of (coverage(c; T zerr) - c)^2,   c = 0.10, 0.11, ..., 0.99.

coverage(c; T zerr) is the fraction of sources with r <= k_c T, where r is the normalised
residual in ln(1 + z), |ln(1 + z_true) - ln(1 + Z)| / (zerr / (1 + Z))
(`slitcli.evaluation.metrics.normalised_residuals`; the definitions are in
`slitcli.io.redshift`), and k_c = Phi^-1(0.5 + c/2). So what is fitted here is what
predict publishes (ZERR, the quantiles) and what evaluate measures. The objective changes
only where some k_c T crosses some r, so it is piecewise constant in T: it is searched on
a dense grid, not by gradients.

The network's residuals have heavier tails than a Gaussian (on the default mock the
95% interval needs 2.4-3.4 times the 68% one, not 1.96), so that no single T gets both
right. `fit_calibration` therefore also chooses the shape: a Student t of `dof` degrees
of freedom (`slitcli.io.redshift.half_width`), `dof` from `DOF_GRID` (infinity: Gaussian),
each with its best T; the pair with the lowest objective wins. ZERR stays the 68.27%
half-width whatever the shape (it is not a standard deviation: a t of dof <= 2 has none).
Choosing the tails needs enough sources: on fewer than `MIN_TAIL_SOURCES` (measured in
docs/bayes.md: Gaussian residuals would too often be given heavy tails) the fit is refused;
a Gaussian fit (`fit_temperature`, ``calibrate --gaussian``) needs only `MIN_SOURCES`.

The raw uncertainties are also mis-scaled differently at different signal-to-noise
(too small for the faintest sources, too large for the brightest), which a pooled
objective hides: the pooled coverage can be right while no SNR bin is. So the scale may
depend on the measured SNR_GI as a power law, ``T (snr / 3)^p`` with snr clipped to
[1, 30]. For each shape (p, dof), T is fitted on the pooled sample by the objective above
(every level); the shape is the one whose published intervals, the 68.27% (Z160-Z840, ZERR)
and 95.45% (Z025-Z975) ones, hold best on average over the SNR bins (`SNR_BINS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slitcli.errors import InputError
from slitcli.evaluation.metrics import (
    DEFAULT_LEVELS,
    calibration_error,
    normalised_residuals,
)
from slitcli.io.redshift import half_width
from slitcli.io.truth import join_truth, read_truth
from slitcli.nn.layers import PDFHead
from slitcli.nn.predict import SNR_CLIP, SNR_PIVOT, predict_file, snr_scale

__all__ = ["fit_temperature", "fit_calibration", "Calibration", "snr_scale", "binned_objective", "SNR_POWERS", "PUBLISHED_LEVELS", "temperature_objective", "DOF_GRID", "calibrate_model", "predict_held_out", "card_calibration", "CalibrationResult", "MIN_SOURCES", "MIN_TAIL_SOURCES", "T_RANGE"]

#: Fewest sources `fit_temperature` accepts.
MIN_SOURCES = 10
#: Fewest sources `fit_calibration` accepts to choose the tails and SNR power (docs/bayes.md,
#: "How many sources the tails need": below this, Gaussian residuals are too often given heavy tails).
MIN_TAIL_SOURCES = 400
#: Range of temperatures searched.
T_RANGE = (0.05, 20.0)
#: Degrees of freedom of the Student t tried by `fit_calibration` (inf: Gaussian). None is <= 2:
#: such a t has infinite variance, and on samples of a few hundred sources it was chosen
#: mostly by noise (docs/bayes.md, "How many sources the tails need").
DOF_GRID = (2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 20.0, 50.0, np.inf)
#: SNR powers p tried by `fit_calibration`, pivot and clipping range of the SNR.
SNR_POWERS = tuple(np.round(np.arange(-1.0, 0.51, 0.1), 2))
#: Levels of the intervals a catalogue publishes (ZERR, and Z025-Z975): they pick the shape.
PUBLISHED_LEVELS = (0.682689492, 0.954499736)
#: Edges of the SNR bins whose mean objective picks the shape.
SNR_BINS = (1.0, 2.0, 3.0, 5.0, 10.0, np.inf)
_N_COARSE = 4000
_N_FINE = 2001


def _objective(r_sorted: np.ndarray, k: np.ndarray, levels: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    thresholds = np.multiply.outer(temperatures, k)  # (n_T, n_levels)
    cov = np.searchsorted(r_sorted, thresholds, side="right") / r_sorted.size
    return np.mean((cov - levels) ** 2, axis=1)


def temperature_objective(z_pred, zerr, z_true, temperatures, levels=DEFAULT_LEVELS, dof: float = np.inf) -> np.ndarray:
    """Mean over `levels` of (coverage(c; T zerr) - c)^2 for each T in `temperatures`."""
    levels = np.asarray(levels, dtype=np.float64)
    r = np.sort(normalised_residuals(z_pred, zerr, z_true))
    return _objective(r, half_width(levels, dof), levels, np.atleast_1d(np.asarray(temperatures, dtype=np.float64)))


def fit_temperature(z_pred, zerr, z_true, levels=DEFAULT_LEVELS, dof: float = np.inf) -> float:
    """The temperature T that best calibrates ``T * zerr`` on this sample.

    A log-spaced grid of 4000 temperatures over [0.05, 20] finds the best flat run; a
    linear grid of 2001 points from the coarse point before that run to the one after
    refines it. The objective is flat between breakpoints, so the result is the midpoint
    of the run of fine-grid points at the minimum (the lowest-T run if several tie).

    Parameters
    ----------
    z_pred, zerr, z_true : array_like
        Predicted redshift, its uncertainty ZERR (> 0; the 68.27% half-width, `slitcli.io.redshift`) and the true redshift.
    levels : array_like
        Confidence levels in (0, 1); default 0.10, 0.11, ..., 0.99.
    dof : float
        Shape of the predictive distribution (`slitcli.io.redshift.half_width`); inf: Gaussian.

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
    k = half_width(levels, dof)
    coarse = np.geomspace(*T_RANGE, _N_COARSE)
    first, last = _first_run_at_min(_objective(r, k, levels, coarse))
    fine = np.linspace(coarse[max(first - 1, 0)], coarse[min(last + 1, _N_COARSE - 1)], _N_FINE)
    first, last = _first_run_at_min(_objective(r, k, levels, fine))
    return float(0.5 * (fine[first] + fine[last]))


@dataclass(frozen=True)
class Calibration:
    """Fitted calibration: zerr -> temperature * snr_scale(snr, snr_power) * zerr, Student t tails of `dof` (inf: Gaussian)."""

    temperature: float
    dof: float = np.inf
    snr_power: float = 0.0


def binned_objective(z_pred, zerr, z_true, snr, dof: float = np.inf, levels=DEFAULT_LEVELS) -> float:
    """Mean over the SNR bins holding at least `MIN_SOURCES` sources of the calibration objective."""
    scores = []
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        b = (snr >= lo) & (snr < hi)
        if b.sum() >= MIN_SOURCES:
            scores.append(temperature_objective(z_pred[b], zerr[b], z_true[b], 1.0, levels, dof)[0])
    return float(np.mean(scores)) if scores else float(temperature_objective(z_pred, zerr, z_true, 1.0, levels, dof)[0])


def fit_calibration(z_pred, zerr, z_true, snr=None, levels=DEFAULT_LEVELS, dofs=DOF_GRID, powers=SNR_POWERS, shape_levels=PUBLISHED_LEVELS) -> Calibration:
    """The calibration (T, dof, SNR power) that best calibrates the sample; see the module docstring.

    T minimises the objective at `levels` for each shape; the shape minimises the objective at
    `shape_levels`, averaged over SNR bins (pooled without `snr`, and then the power is 0).

    Raises
    ------
    InputError
        Fewer than `MIN_TAIL_SOURCES` sources (use `fit_temperature` for a Gaussian), or a bad zerr.
    """
    z_pred, zerr, z_true = (np.asarray(a, dtype=np.float64) for a in (z_pred, zerr, z_true))
    if zerr.size < MIN_TAIL_SOURCES:
        msg = f"fitting the tails needs at least {MIN_TAIL_SOURCES} sources, got {zerr.size}"
        raise InputError(msg)
    best = None
    for power in powers if snr is not None else (0.0,):
        scaled = zerr * (snr_scale(snr, power) if snr is not None else 1.0)
        for dof in dofs:
            t = fit_temperature(z_pred, scaled, z_true, levels, dof)
            if snr is None:
                score = float(temperature_objective(z_pred, scaled, z_true, t, shape_levels, dof)[0])
            else:
                score = binned_objective(z_pred, t * scaled, z_true, np.asarray(snr, dtype=np.float64), dof, shape_levels)
            if best is None or score < best[0] - 1e-12:
                best = (score, Calibration(t, float(dof), float(power)))
    return best[1]


def _first_run_at_min(values: np.ndarray) -> tuple[int, int]:
    """First and last index of the first contiguous run of `values` equal to their minimum."""
    at_min = values == values.min()
    first = int(np.argmax(at_min))
    run = at_min[first:]
    return first, first + (run.size if run.all() else int(np.argmin(run))) - 1


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of `calibrate_model`: the temperature, the tail's degrees of freedom (inf:
    Gaussian), the SNR power and the calibration error (RMS of coverage minus confidence) before (Gaussian,
    T = 1) and after, on `n` held-out sources."""

    temperature: float
    dof: float
    snr_power: float
    error_before: float
    error_after: float
    n: int
    sample: str


def _check_tail_sample(n: int, sample_path, min_snr: float) -> None:
    if n < MIN_TAIL_SOURCES:
        msg = f"{sample_path}: fitting the tails needs at least {MIN_TAIL_SOURCES} sources with SNR_GI >= {min_snr:g}, got {n}; use a larger sample or --gaussian"
        raise InputError(msg)


def calibrate_model(bundle, sample_path, predict_config, *, min_snr: float | None = None, tails: bool = True, progress=None) -> CalibrationResult:
    """Fit the temperature (and, if `tails`, the tail shape and SNR power) of `bundle` on a held-out sample file and store them in its card.

    A model with a p(z) head is calibrated by `slitcli.nn.pdf_calibration.calibrate_pdf_model`
    instead (a temperature on its logits and an SNR power, then, if `tails`, a PIT map).

    Predicts every source with the raw uncertainties (temperature 1), keeps sources with
    SNR_GI >= `min_snr` of the truth (default: the model's training cut), and fits T
    against the sample's Z_TRUE. `bundle.card["calibration"]` is updated in place.

    Raises
    ------
    InputError
        With `tails`, fewer than `MIN_TAIL_SOURCES` kept sources (naming the sample file);
        without, fewer than `MIN_SOURCES`. Before any prediction: a truth with masked,
        NaN or infinite Z_TRUE or SNR_GI (`slitcli.io.truth.read_truth`).
    """
    if min_snr is None:
        min_snr = float(bundle.card.get("training", {}).get("config", {}).get("min_snr", 1.0))
    if isinstance(getattr(getattr(bundle, "model", None), "head", None), PDFHead):
        from slitcli.nn.pdf_calibration import calibrate_pdf_model

        return calibrate_pdf_model(bundle, sample_path, predict_config, min_snr=min_snr, remap=tails, progress=progress)
    truth = read_truth(sample_path)
    if tails and "SNR_GI" in truth.colnames:  # refuse before the prediction, not after
        _check_tail_sample(int(np.count_nonzero(np.asarray(truth["SNR_GI"]) >= min_snr)), sample_path, min_snr)
    kept, joined = predict_held_out(bundle, sample_path, truth, predict_config, min_snr, progress)
    z, zerr, z_true, snr = (np.asarray(joined[c], float) for c in ("Z", "ZERR", "Z_TRUE", "SNR_DATA"))
    if tails:
        _check_tail_sample(z.size, sample_path, min_snr)
    cal = fit_calibration(z, zerr, z_true, snr) if tails else Calibration(fit_temperature(z, zerr, z_true))
    calibrated = cal.temperature * snr_scale(snr, cal.snr_power) * zerr
    result = CalibrationResult(cal.temperature, cal.dof, cal.snr_power, calibration_error(z, zerr, z_true), calibration_error(z, calibrated, z_true, dof=cal.dof), len(z), Path(sample_path).name)
    bundle.card["calibration"] = card_calibration(kept, result, min_snr, predict_config)
    return result


def predict_held_out(bundle, sample_path, truth, predict_config, min_snr: float, progress=None):
    """Predict a held-out sample file with the raw uncertainties and join it to its `truth`.

    `bundle`'s calibration is reset to none first. Returns the template route's keys of the
    card, which are kept (they do not depend on the network; the hybrid's do, and are
    dropped to be fitted again), and the joined rows with SNR_GI >= `min_snr`, each with
    ``ROW`` (its row in the prediction) and ``SNR_DATA`` (the SNR measured from the data,
    as predict sees it; the join takes the truth's SNR_GI).
    """
    kept = {k: v for k, v in bundle.card.get("calibration", {}).items() if k.startswith("template_")}
    bundle.card["calibration"] = {"temperature": 1.0, "tail_dof": None, "snr_power": 0.0}
    pred = predict_file(bundle, sample_path, predict_config, progress=progress)
    pred["ROW"] = np.arange(len(pred))
    pred["SNR_DATA"] = pred["SNR_GI"]
    try:
        joined = join_truth(pred, truth)
    except ValueError as err:
        raise InputError(f"{sample_path}: {err}") from None
    if "SNR_GI" in joined.colnames:
        joined = joined[np.asarray(joined["SNR_GI"]) >= min_snr]
    return kept, joined


def card_calibration(kept: dict, result: CalibrationResult, min_snr: float, predict_config, **fitted) -> dict:
    """The card's ``calibration`` of `result`: the `kept` template keys, the fit, `fitted` (more of it) and its provenance."""
    return {
        **kept,
        "temperature": result.temperature,
        # JSON has no infinity: null means Gaussian (and a p(z) head has no tails to fit).
        "tail_dof": result.dof if np.isfinite(result.dof) else None,
        "snr_power": result.snr_power,
        "snr_pivot": SNR_PIVOT,
        "snr_clip": list(SNR_CLIP),
        **fitted,
        "fitted_on": result.sample,
        "n": result.n,
        "min_snr": min_snr,
        "calibration_error_before": result.error_before,
        "calibration_error_after": result.error_after,
        "n_mc": predict_config.n_mc,
        "seed": predict_config.seed,
    }
