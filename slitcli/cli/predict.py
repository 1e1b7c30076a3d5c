"""`slitcli predict`: redshifts and uncertainties from sample files, by the CNN or by template fitting."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, log_bad_pixels, progress_bar


class Method(str, Enum):
    cnn = "cnn"
    template = "template"


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
    pdf: bool = typer.Option(False, "--pdf", help="Also write each source's p(z) on a grid uniform in ln(1+z) (step 0.0004, z = 0-2) as the ZGRID and ZPDF HDUs of a FITS catalogue (qp's interp ensemble; docs/formats.md)."),
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
    """
    with command(quiet, verbose):
        import numpy as np

        from slitcli.io.catalog import catalog_format, write_catalog
        from slitcli.io.files import check_output_path
        from slitcli.io.sourceid import check_unique_source_ids, input_names, stack_inputs

        if catalog_format(output) != "fits" and pdf:
            raise typer.BadParameter("redshift PDFs go to a FITS catalogue (-o z.fits); ECSV keeps the point columns", param_hint="--pdf")
        if catalog is None and (direct is not None or instrument is not None or refine):
            raise typer.BadParameter("--direct, --refine and --instrument go with --catalog (exposures as inputs)", param_hint="--direct/--refine/--instrument")
        if refine and direct is None:
            raise typer.BadParameter("the second pass refines the contamination model, which needs --direct", param_hint="--refine")
        if catalog is not None and method is Method.template and direct is None:
            raise typer.BadParameter("the template route needs the sources' direct stamps: give --direct with --catalog", param_hint="--direct")
        field_inputs = [] if catalog is None else [catalog, *(p for p in (direct, instrument) if p is not None)]
        check_output_path(output, overwrite, inputs=[*inputs, *field_inputs])
        if method is Method.template:
            from slitcli.classic.template_fit import TemplateFitConfig, check_template_inputs, fit_sample
            from slitcli.classic.template_fit import catalog_meta as template_meta

            fit_cfg = TemplateFitConfig()
            if catalog is None:
                check_template_inputs(inputs)
            meta = template_meta(fit_cfg)
            bands, shape = ("GV", "GI"), None

            def run(sample, progress):
                return fit_sample(sample, fit_cfg, bands, batch_size=min(batch_size, 16), pdf=pdf, progress=progress)
        else:
            from slitcli.nn.modelfile import load_model
            from slitcli.nn.predict import PredictConfig, catalog_meta, check_inputs, predict_sample

            cfg = PredictConfig(n_mc=n_mc, batch_size=batch_size, seed=seed, device=device, pdf=pdf)
            bundle = load_model(model)
            if catalog is None:
                check_inputs(bundle, inputs)
            meta = catalog_meta(bundle, cfg)
            bands, shape = bundle.bands, bundle.shape
            log.debug("model %s (%s), device %s", bundle.name, bundle.path, meta["DEVICE"])

            def run(sample, progress):
                return predict_sample(bundle, sample, cfg, progress=progress)

        from slitcli.io.samplefile import SampleReader

        tables = []
        with progress_bar(quiet) as bar:
            if catalog is not None:
                from slitcli.fields.field_sample import FieldSample

                task = bar.add_task(f"{method.value}: {catalog.name}", total=None)
                with FieldSample(inputs, catalog, direct_path=direct, instrument_path=instrument, refine_mag=refine_mag if refine else None, bands=bands, shape=shape, contamination=contam.value) as sample:
                    if sample.n_skipped:
                        log.info("%d catalogue sources lie on no exposure: left out", sample.n_skipped)
                    tables.append(run(sample, lambda d, n: bar.update(task, completed=d, total=n)))
                    tables[0].meta.update({"CONTMODL": sample.contamination_model, "NSKIPPED": sample.n_skipped})
                table_paths = [catalog]
            else:
                if not allow_duplicate_ids:
                    check_unique_source_ids(inputs)
                for path in inputs:
                    task = bar.add_task(f"{method.value}: {path.name}", total=None)
                    with SampleReader(path, bands, shape, contamination=contam.value) as sample:
                        tables.append(run(sample, lambda d, n, t=task: bar.update(t, completed=d, total=n)))
                        tables[-1].meta["CONTMODL"] = sample.contamination_model
                table_paths = inputs
        bad_pixels = sum(t.meta.pop("NBADPIX", 0) for t in tables)  # summed here, not merged by vstack
        models = sorted({t.meta.pop("CONTMODL") for t in tables})
        table = stack_inputs(tables, table_paths)  # with INPUT_FILE: the input each row came from
        table.meta.update({**meta, "INPUTS": ",".join(input_names(inputs)), "NBADPIX": bad_pixels})
        # CONTMODL: the inputs' contamination model(s); CONTAM: what was done with it.
        table.meta.update({"CONTMODL": ",".join(models), "CONTAM": contam.value.upper() if models != ["NONE"] else "NONE"})
        if catalog is not None:
            table.meta.update({"CATALOG": catalog.name, "DIRECTIM": direct.name if direct else "", "NSKIPPED": tables[0].meta.get("NSKIPPED", 0)})
        log_bad_pixels(bad_pixels)
        grid = None
        if pdf:
            from slitcli.io.zpdf import z_grid

            grid = np.expm1(fit_cfg.grid()) if method is Method.template else z_grid()
        write_catalog(table, output, overwrite=overwrite, pdf_grid=grid)
        log.info("wrote %d redshifts to %s (%s; contamination: %s)", len(table), output, method.value, table.meta["CONTAM"].lower())
