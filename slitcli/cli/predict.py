"""`slitcli predict`: redshifts and calibrated uncertainties from sample files."""

from __future__ import annotations

from pathlib import Path

import typer

from slitcli.cli._common import console, progress_bar, user_errors


def predict(
    inputs: list[Path] = typer.Argument(..., help="Sample files (FITS with <BAND>_SCI/_ERR/_DQ cubes).", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Catalogue to write: .ecsv or .fits.", show_default=False),
    model: Path = typer.Option(None, "--model", "-m", help="Model directory. Default: the model shipped in models/.", show_default=False),
    n_mc: int = typer.Option(100, "--n-mc", help="Monte Carlo dropout passes (>= 2)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Sources per batch."),
    seed: int = typer.Option(0, "--seed", help="Seed of the dropout masks."),
    device: str = typer.Option("auto", "--device", help="auto (GPU if available), cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
):
    """Predict redshifts (Z, ZERR, ZERR_EPI, ZERR_ALE, quantiles, ZWARN) for every source.

    Example:

      slitcli predict exposures/*.fits -o z.ecsv
    """
    from astropy.table import vstack

    from slitcli.catalog import catalog_format, write_catalog
    from slitcli.modelfile import load_model
    from slitcli.predict import PredictConfig, check_inputs, predict_file, resolve_device
    from slitcli.samplefile import check_output_path

    with user_errors():
        catalog_format(output)
        check_output_path(output, overwrite)
        cfg = PredictConfig(n_mc=n_mc, batch_size=batch_size, seed=seed, device=device)
        bundle = load_model(model)
        check_inputs(bundle, inputs)
        tables = []
        with progress_bar(quiet) as bar:
            for path in inputs:
                task = bar.add_task(f"predicting {path.name}", total=None)
                tables.append(predict_file(bundle, path, cfg, progress=lambda d, n, t=task: bar.update(t, completed=d, total=n)))
        table = vstack(tables)
        table.meta.update(
            {
                # Keys of at most 8 characters, so FITS output keeps them as plain cards.
                "MODEL": bundle.name,
                "MODELSHA": bundle.weights_sha256,
                "N_MC": n_mc,
                "SEED": seed,
                "TEMPERAT": bundle.temperature,
                "DEVICE": str(resolve_device(device)),
                "INPUTS": ",".join(p.name for p in inputs),
            }
        )
        write_catalog(table, output, overwrite=overwrite)
        if not quiet:
            console.print(f"wrote {len(table)} redshifts to {output} (model {bundle.name}, {n_mc} Monte Carlo passes)")
