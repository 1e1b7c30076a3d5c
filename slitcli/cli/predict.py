"""`slitcli predict`: redshifts and uncertainties from sample files, by the CNN or by template fitting."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, log_bad_pixels, progress_bar


class Method(str, Enum):
    cnn = "cnn"
    template = "template"


def predict(
    inputs: list[Path] = typer.Argument(..., help="Sample files (FITS with <BAND>_SCI/_ERR/_DQ cubes, from slitcli simulate).", metavar="SAMPLE", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Catalogue to write: .ecsv or .fits.", metavar="CATALOG", show_default=False),
    method: Method = typer.Option(
        Method.cnn, "--method",
        help="cnn: the Bayesian CNN on the 2D cutouts. template: the classic route, optimal 1D extraction and a "
        "chi-square fit of CWW+Kinney and emission-line templates (needs the files' DIRECT stamps).",
    ),
    model: Path = typer.Option(None, "--model", "-m", help="Model directory (cnn). [default: the model shipped in models/]", metavar="DIR", show_default=False),
    n_mc: int = typer.Option(100, "--n-mc", help="Monte Carlo dropout passes (cnn, >= 2).", metavar="N", min=2),
    batch_size: int = typer.Option(256, "--batch-size", help="Sources per batch.", metavar="N", min=1),
    seed: int = typer.Option(0, "--seed", help="Seed of the dropout masks (cnn).", metavar="N"),
    device: str = typer.Option("auto", "--device", help="auto (GPU if available), cpu or cuda (cnn).", metavar="DEVICE"),
    allow_duplicate_ids: bool = typer.Option(False, "--allow-duplicate-ids", help="Accept inputs that share SOURCE_IDs (refused by default); rows are then told apart by INPUT_FILE and SOURCE_ID."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Predict redshifts (Z, ZERR, ZERR_EPI, ZERR_ALE, quantiles, ZWARN) for every source.

    Examples:

      slitcli predict exposures/*.fits -o z.ecsv

      slitcli predict exposures/*.fits --method template -o z_template.ecsv
    """
    with command(quiet, verbose):
        from slitcli.io.catalog import catalog_format, write_catalog
        from slitcli.io.files import check_output_path
        from slitcli.io.sourceid import check_unique_source_ids, input_names, stack_inputs

        catalog_format(output)
        check_output_path(output, overwrite, inputs=inputs)
        if method is Method.template:
            from slitcli.classic.template_fit import TemplateFitConfig, check_template_inputs, fit_file
            from slitcli.classic.template_fit import catalog_meta as template_meta

            fit_cfg = TemplateFitConfig()
            check_template_inputs(inputs)
            meta = template_meta(fit_cfg)

            def run(path, progress):
                return fit_file(path, fit_cfg, batch_size=min(batch_size, 16), progress=progress)
        else:
            from slitcli.nn.modelfile import load_model
            from slitcli.nn.predict import PredictConfig, catalog_meta, check_inputs, predict_file

            cfg = PredictConfig(n_mc=n_mc, batch_size=batch_size, seed=seed, device=device)
            bundle = load_model(model)
            check_inputs(bundle, inputs)
            meta = catalog_meta(bundle, cfg)
            log.debug("model %s (%s), device %s", bundle.name, bundle.path, meta["DEVICE"])

            def run(path, progress):
                return predict_file(bundle, path, cfg, progress=progress)

        if not allow_duplicate_ids:
            check_unique_source_ids(inputs)
        tables = []
        with progress_bar(quiet) as bar:
            for path in inputs:
                task = bar.add_task(f"{method.value}: {path.name}", total=None)
                tables.append(run(path, lambda d, n, t=task: bar.update(t, completed=d, total=n)))
        bad_pixels = sum(t.meta.pop("NBADPIX", 0) for t in tables)  # summed here, not merged by vstack
        table = stack_inputs(tables, inputs)  # with INPUT_FILE: the input each row came from
        table.meta.update({**meta, "INPUTS": ",".join(input_names(inputs)), "NBADPIX": bad_pixels})
        log_bad_pixels(bad_pixels)
        write_catalog(table, output, overwrite=overwrite)
        log.info("wrote %d redshifts to %s (%s)", len(table), output, method.value)
