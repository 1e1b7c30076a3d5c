"""`slitcli calibrate`: temperature scaling of a model's uncertainties on held-out data."""

from __future__ import annotations

from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, progress_bar


def calibrate(
    samples: list[Path] = typer.Argument(..., help="Held-out sample file with true redshifts (the validation sample; never the test sample); with --template or --hybrid, several files of one kind are calibrated on together (for example the cutouts of several fields).", metavar="SAMPLE...", show_default=False),
    model: list[Path] = typer.Option(None, "--model", "-m", help="Model directory to calibrate; repeat for a deep ensemble, calibrated as one model and written to -o as an ensemble model directory. [default: the shipped model]", metavar="DIR", show_default=False),
    output: Path = typer.Option(None, "-o", "--output", help="New model directory for the calibrated model.", metavar="DIR", show_default=False),
    in_place: bool = typer.Option(False, "--in-place", help="Write the temperature into the model directory itself."),
    n_mc: int = typer.Option(100, "--n-mc", help="Monte Carlo dropout passes (>= 2).", metavar="N", min=2),
    seed: int = typer.Option(0, "--seed", help="Seed of the dropout masks.", metavar="N"),
    gaussian: bool = typer.Option(False, "--gaussian", help="Fit T only, keeping a Gaussian predictive distribution (the paper's method); for a p(z) head: the temperature only, no PIT map."),
    template: bool = typer.Option(False, "--template", help="Instead, fit the n(z) prior (BPZ's form, to the sample's true redshifts), the offset (the templates' redshift bias, from the sources with SNR_GI >= 5), temperature and error floor of the template route's PDF (predict --method template -m MODEL reads them from the model card), on the sources with SNR_GI >= 1, holding the 68% and 95% coverage at SNR_GI >= 1, 3 and 5. On cutouts with a contamination model (from slitcli cutout --direct), only a second temperature and floor for such field cutouts, keeping the prior and offset."),
    hybrid: bool = typer.Option(False, "--hybrid", help="Instead, fit the hybrid route's (predict --method hybrid): first the templates' offset and the thresholds of its out-of-distribution flag (ZWARN UNLIKE_TRAINING: about 8% of the sources with SNR_GI >= 3), then, with the flagged sources widened as predict widens them, the temperature and error floor of its template likelihood, on the sources with SNR_GI >= 1, so that its 68% and 95% intervals cover as claimed (two passes over the sample); calibrate the CNN first. On cutouts with a contamination model, only a second temperature and floor for such field cutouts, with a factor on the CNN prior's width (one pass per width tried)."),
    max_widen_ood: float = typer.Option(None, "--max-widen-ood", help="With --hybrid: the cap of the widening of sources flagged unlike the training data (1: none), fitted with and kept in the card. [default: the card's, else 10]", metavar="K", min=1.0, show_default=False),
    device: str = typer.Option("auto", "--device", help="auto (GPU if available), cpu or cuda.", metavar="DEVICE"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model in OUTPUT."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Fit the temperature T that scales every uncertainty so that coverage matches confidence.

    T minimises the mean squared difference between the fraction of sources within
    the central c-interval and c, for c from 0.10 to 0.99 (the paper's method). By
    default the shape of the interval is fitted too: a Student t whose degrees of
    freedom (2.5 to 50, or Gaussian) best match the residuals' tails, so that the 68%
    and the 95% intervals both hold, and a power p of the measured SNR_GI that the
    scale follows, T (SNR_GI/3)^p, so that they hold at every SNR; this needs at least
    400 sources above the SNR cut (docs/bayes.md). --gaussian keeps the paper's single
    T and Gaussian (10 sources suffice). A model with a p(z) head (train with head: pdf)
    gets a temperature on its logits and an SNR power instead, fitted by the PIT (at
    least 400 sources), then a PIT map per SNR_GI bin that makes the PIT uniform on the
    sample (--gaussian: none; aim for 150+ sources per bin, e.g. simulate -n 12000), and
    the card records whether its median or mode is Z.

    Example:

      slitcli calibrate val.fits -m models/my-model -o models/my-model-cal

      slitcli calibrate val.fits -m models/my-model-cal --hybrid --in-place

      slitcli calibrate val.fits -m models/my-model-cal --template --in-place

      slitcli calibrate fieldA.fits fieldB.fits -m models/my-model-cal --hybrid --in-place

      slitcli calibrate val.fits -m models/a -m models/b -m models/c -o models/abc-ensemble
    """
    with command(quiet, verbose):
        from slitcli.errors import ConfigError
        from slitcli.io.files import check_output_path
        from slitcli.nn.calibration import calibrate_model
        from slitcli.nn.modelfile import load_model, save_model
        from slitcli.nn.predict import PredictConfig, check_inputs

        if in_place == (output is not None):
            raise ConfigError("give exactly one of -o/--output (a new model directory) and --in-place")
        cfg = PredictConfig(n_mc=n_mc, seed=seed, device=device)
        models = list(model or [None])
        if len(models) > 1:
            from slitcli.nn.ensemble import make_ensemble

            if in_place or template or hybrid:
                raise ConfigError("an ensemble (several -m) is calibrated into a new directory (-o DIR); then --template or --hybrid with -m DIR")
            bundle = make_ensemble([load_model(m) for m in models])
        else:
            bundle = load_model(models[0])
        if len(samples) > 1 and not (template or hybrid):
            raise ConfigError(f"the CNN's calibration reads one sample file, got {len(samples)}; several are for --template and --hybrid")
        sample = samples[0]
        # Files of several fields often share a name (field1/cut.fits, field2/cut.fits): then the paths as given.
        names = ", ".join(s.name if len({p.name for p in samples}) == len(samples) else str(s) for s in samples)
        check_inputs(bundle, samples)
        target = bundle.path if in_place else output
        if not in_place:
            check_output_path(target, overwrite, inputs=(*samples, *(m for m in models if m is not None)), directory=True, files=("model.safetensors", "model.json"))
        if template and hybrid:
            raise ConfigError("give --template or --hybrid, not both")
        if template or hybrid:
            from slitcli.classic.template_fit import check_template_inputs
            from slitcli.io.samplefile import SampleChain
            from slitcli.routes import calibrate_route

            kind = "template" if template else "hybrid"
            check_template_inputs(samples)
            bands, shape = (("GV", "GI"), None) if template else (bundle.bands, bundle.shape)
            with progress_bar(quiet) as bar, SampleChain(samples, bands, shape, contamination="subtract") as reader:
                task = bar.add_task(f"{kind}{' (field cutouts)' if reader.contamination_model != 'NONE' else ''}: {names}", total=None)
                cal, keys, field = calibrate_route(bundle, reader, kind, cfg, progress=lambda d, n: bar.update(task, completed=d, total=n), max_widen_ood=max_widen_ood)
            fit = cal if template else cal.temperature
            bundle.card.setdefault("calibration", {}).update(keys)
            save_model(bundle, target, overwrite=overwrite or in_place)
            what = ("template route" if template else "hybrid likelihood") + (" for field cutouts" if field else "")
            if field:
                more = ("" if template else f"; CNN prior width x{cal.prior_width:g}") + "; the card's n(z) prior, offset and thresholds kept"
            elif template:
                more = f"; n(z) prior alpha {fit.nz_prior[0]:.3g}, z0 {fit.nz_prior[1]:.3g}"
            else:
                more = f"; out-of-distribution thresholds {cal.ood_disagreement:.3g} (disagreement) and {cal.ood_epistemic:.3g} (epistemic) on {cal.n_ood} sources with SNR_GI >= 3; Z read from the posterior at temperature " + ", ".join("calibrated" if t is None else f"{t:g}" for t in cal.point_temperature) + " by SNR_GI bin"
            log.info(
                f"{what}: {fit.describe()}; template offset {fit.offset:+.5f} in ln(1+z), on {fit.n} sources of {names} (SNR_GI >= 1): "
                f"68%/95% coverage {fit.coverage_before[0]:.3f}/{fit.coverage_before[1]:.3f} -> {fit.coverage_after[0]:.3f}/{fit.coverage_after[1]:.3f}{more}; wrote {target}"
            )
            return
        with progress_bar(quiet) as bar:
            task = bar.add_task(f"predicting {sample.name}", total=None)
            result = calibrate_model(bundle, sample, cfg, tails=not gaussian, progress=lambda d, n: bar.update(task, completed=d, total=n))
        save_model(bundle, target, overwrite=overwrite or in_place)
        cal = bundle.card["calibration"]
        if "pdf_point" in cal:
            log.info(
                f"p(z) head: logit temperature T = {result.temperature:.3f} x (SNR_GI/3)^{result.snr_power + 0.0:g} on {result.n} sources of {result.sample}; "
                f"calibration error {result.error_before:.4f} -> {result.error_after:.4f}, PIT KS distance {cal['pit_ks_before']:.3f} -> {_ks_steps(cal)}; Z is the PDF's {cal['pdf_point']}; wrote {target}"
            )
            return
        log.info(
            f"temperature T = {result.temperature:.3f} x (SNR_GI/3)^{result.snr_power + 0.0:g}, tails {'Gaussian' if result.dof == float('inf') else f'Student t, dof = {result.dof:g}'}, "
            f"on {result.n} sources of {result.sample}; "
            f"calibration error {result.error_before:.4f} -> {result.error_after:.4f}; wrote {target}"
        )


def _ks_steps(cal: dict) -> str:
    """The PIT's KS distance after the temperature and, where one was fitted, after the PIT map."""
    if "pit_ks_temperature" in cal:
        return f"{cal['pit_ks_temperature']:.3f} (temperature) -> {cal['pit_ks_after']:.3f} (PIT map by SNR_GI bin)"
    return f"{cal['pit_ks_after']:.3f}"
