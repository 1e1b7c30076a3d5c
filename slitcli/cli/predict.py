"""`slitcli predict`: redshifts and uncertainties from sample files, by the CNN or by template fitting."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, log_bad_pixels, progress_bar


class Method(str, Enum):
    cnn = "cnn"
    template = "template"
    hybrid = "hybrid"


class Contamination(str, Enum):
    subtract = "subtract"
    ignore = "ignore"


def predict(
    inputs: list[Path] = typer.Argument(
        ..., show_default=False, metavar="SAMPLE... | EXPOSURE...",
        help="Sample files (FITS with <BAND>_SCI/_ERR/_DQ cubes, from slitcli simulate or slitcli cutout); "
        "with --catalog, full-frame slitless exposures (from slitcli simulate --field), cut on the fly.",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Catalogue to write: .ecsv or .fits.", metavar="CATALOG", show_default=False),
    catalog: Path = typer.Option(
        None, "--catalog", "-c", show_default=False, metavar="FILE",
        help="Source catalogue (FITS table SOURCES with SOURCE_ID, RA, DEC [deg]): the inputs are exposures, and every "
        "source on them is cut and predicted in one pass, with no sample file on disk (as slitcli cutout, docs/fields.md).",
    ),
    direct: Path = typer.Option(
        None, "--direct", show_default=False, metavar="FILE",
        help="With --catalog: the direct image with SEGMENTATION and PHOTFLAM, for the contamination model and the "
        "DIRECT stamps (the template route needs it).",
    ),
    refine: bool = typer.Option(False, "--refine", help="With --catalog and --direct: the contamination model's second pass (as slitcli cutout --refine)."),
    refine_mag: float = typer.Option(22.0, "--refine-mag", help="AB magnitude in the direct image below which --refine refits a neighbour's spectrum.", metavar="MAG"),
    instrument: Path = typer.Option(None, "--instrument", help="With --catalog: instrument YAML instead of the exposures' INSTFILE.", metavar="YAML", show_default=False),
    contam: Contamination = typer.Option(
        Contamination.subtract, "--contam",
        help="What to do with modelled contamination (<BAND>_CONTAM of slitcli cutout --direct, or --direct here): "
        "subtract it from SCI and add (0.2 CONTAM)^2 to the variance, as grizli does (both routes), or ignore it. "
        "Inputs without a model are read as they are; the catalogue records both (CONTAM, CONTMODL).",
    ),
    sky_offset: bool = typer.Option(
        False, "--sky-offset",
        help="Template and hybrid routes: also fit a constant per band, of either sign, so that a sky level left in the cutouts "
        "(imperfect sky subtraction) is not taken for continuum (catalogue key SKYOFFS).",
    ),
    method: Method = typer.Option(
        Method.cnn, "--method",
        help="cnn: the Bayesian CNN on the 2D cutouts. template: the classic route, optimal 1D extraction and a "
        "chi-square fit of CWW+Kinney and emission-line templates (needs the files' DIRECT stamps). "
        "hybrid: the CNN's p(z) as the prior times the template likelihood, searched where the prior has mass "
        "(needs DIRECT stamps; calibrate --hybrid fits its temperature; docs/template.md).",
    ),
    model: list[Path] = typer.Option(None, "--model", "-m", help="Model directory: the CNN (cnn, hybrid) and the calibrated temperatures of the template and hybrid routes (its card). Repeat for a deep ensemble (cnn, hybrid): the members' distributions pooled, uncalibrated; calibrate -m A -m B -o DIR makes a calibrated ensemble. [default: the model shipped in models/]", metavar="DIR", show_default=False),
    n_mc: int = typer.Option(100, "--n-mc", help="Monte Carlo dropout passes (cnn, >= 2).", metavar="N", min=2),
    batch_size: int = typer.Option(256, "--batch-size", help="Sources per batch.", metavar="N", min=1),
    seed: int = typer.Option(0, "--seed", help="Seed of the dropout masks (cnn).", metavar="N"),
    device: str = typer.Option("auto", "--device", help="auto (GPU if available), cpu or cuda (cnn).", metavar="DEVICE"),
    pdf: bool = typer.Option(False, "--pdf", help="Also write each source's p(z) on a grid uniform in ln(1+z) (step 0.0004, z = 0-2) as the ZGRID and ZPDF HDUs of a FITS catalogue (qp's interp ensemble; docs/formats.md)."),
    workers: int = typer.Option(None, "--workers", "-j", help="Predict the sample files on a local Dask cluster of N processes, one file per task (rows still in input order). [default: here, one after another]", metavar="N", min=1, show_default=False),
    scheduler: str = typer.Option(None, "--scheduler", help="Predict the sample files on this Dask scheduler (tcp://host:port). [default: $DASK_SCHEDULER_ADDRESS]", metavar="ADDRESS", show_default=False),
    per_file: Path = typer.Option(None, "--per-file", help="Also keep one catalogue per input in this directory (<input name> with -o's extension, TASKID recorded): a re-run reads those instead of predicting again, so a survey run restarts where it stopped.", metavar="DIR", show_default=False),
    allow_duplicate_ids: bool = typer.Option(False, "--allow-duplicate-ids", help="Accept inputs that share SOURCE_IDs (refused by default); rows are then told apart by INPUT_FILE and SOURCE_ID."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Predict redshifts (Z, ZERR, ZERR_EPI, ZERR_ALE, quantiles, ZWARN) for every source.

    Examples:

      slitcli predict exposures/*.fits -o z.ecsv

      slitcli predict exposures/*.fits --method template -o z_template.ecsv

      slitcli predict field/exposure_*.fits --catalog field/catalog.fits --direct field/direct.fits -o z.ecsv

      slitcli predict samples/*.fits --workers 2 --per-file z/ -o z.ecsv
    """
    if workers is not None and scheduler is not None:
        raise typer.BadParameter("give --workers (a local cluster) or --scheduler (an existing one), not both", param_hint="'--workers' / '--scheduler'")
    if catalog is not None and (workers is not None or scheduler is not None or per_file is not None):
        raise typer.BadParameter("exposures with --catalog are one task: run them here, or give sample files", param_hint="'--workers' / '--scheduler' / '--per-file'")
    with command(quiet, verbose):
        from slitcli.io.catalog import catalog_format, write_catalog
        from slitcli.io.files import check_output_path
        from slitcli.io.sourceid import check_unique_source_ids, input_names
        from slitcli.parallel import Executor, scheduler_address
        from slitcli.routes import Route, catalog_table, predict_files

        if catalog_format(output) != "fits" and pdf:
            raise typer.BadParameter("redshift PDFs go to a FITS catalogue (-o z.fits); ECSV keeps the point columns", param_hint="--pdf")
        if catalog is None and (direct is not None or instrument is not None or refine):
            raise typer.BadParameter("--direct, --refine and --instrument go with --catalog (exposures as inputs)", param_hint="--direct/--refine/--instrument")
        if refine and direct is None:
            raise typer.BadParameter("the second pass refines the contamination model, which needs --direct", param_hint="--refine")
        if catalog is not None and method is not Method.cnn and direct is None:
            raise typer.BadParameter(f"the {method.value} route needs the sources' direct stamps: give --direct with --catalog", param_hint="--direct")
        field_inputs = [] if catalog is None else [catalog, *(p for p in (direct, instrument) if p is not None)]
        check_output_path(output, overwrite, inputs=[*inputs, *field_inputs])
        models = [str(m) for m in model or ()]
        if len(models) > 1 and method is Method.template:
            raise typer.BadParameter("the template route reads one model's card: give one -m", param_hint="--model")
        if len(models) > 1:
            log.info(f"an ensemble of {len(models)} models, uncalibrated (temperature 1): slitcli calibrate VAL {' '.join('-m ' + m for m in models)} -o DIR calibrates it")
        route = Route(method.value, tuple(models) if len(models) > 1 else (models[0] if models else None), n_mc, batch_size, seed, device, pdf, contam.value, sky_offset)
        meta = route.meta()
        log.debug("%s route, device %s", method.value, meta.get("DEVICE", "cpu"))
        with progress_bar(quiet) as bar:
            if catalog is not None:
                from slitcli.fields.field_sample import FieldSample

                task = bar.add_task(f"{method.value}: {catalog.name}", total=None)
                with FieldSample(inputs, catalog, direct_path=direct, instrument_path=instrument, refine_mag=refine_mag if refine else None, bands=route.bands, shape=route.shape, contamination=contam.value) as sample:
                    if sample.n_skipped:
                        log.info("%d catalogue sources lie on no exposure: left out", sample.n_skipped)
                    table = route.predict(sample, lambda d, n: bar.update(task, completed=d, total=n))
                    table.meta["CONTMODL"] = sample.contamination_model
                    extra = {"INPUTS": ",".join(input_names(inputs)), "CATALOG": catalog.name, "DIRECTIM": direct.name if direct else "", "NSKIPPED": sample.n_skipped}
                table = catalog_table([table], [catalog], route, extra)
            else:
                route.check(inputs)
                if not allow_duplicate_ids:
                    check_unique_source_ids(inputs)
                suffix = ".fits" if catalog_format(output) == "fits" else ".ecsv"
                with Executor(workers, scheduler_address(scheduler)) as executor:
                    progress = _file_bar(bar, method.value, len(inputs) if executor.distributed else None)
                    tables = predict_files(route, inputs, executor, per_file=per_file, suffix=suffix, overwrite=overwrite, progress=progress)
                table = catalog_table(tables, inputs, route)
        log_bad_pixels(table.meta["NBADPIX"])
        write_catalog(table, output, overwrite=overwrite, pdf_grid=route.pdf_grid())
        log.info("wrote %d redshifts to %s (%s; contamination: %s)", len(table), output, method.value, table.meta["CONTAM"].lower())


def _file_bar(bar, method: str, n_files: int | None):
    """progress(done, total, path) of `predict_files`: a bar per file here, one bar of `n_files` files on Dask."""
    tasks = {}

    def progress(done, total, path):
        key = path if n_files is None else "files"
        if key not in tasks:
            tasks[key] = bar.add_task(f"{method}: {path.name}" if n_files is None else f"{method}: files", total=n_files)
        bar.update(tasks[key], completed=done, total=total)

    return progress
