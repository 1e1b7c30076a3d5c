"""`slitcli cutout`: each catalogue source's cutouts from full-frame slitless exposures, into a sample file."""

from __future__ import annotations

from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, log, progress_bar


def cutout(
    exposures: list[Path] = typer.Argument(
        ..., metavar="EXPOSURE... | FIELD_DIR...", show_default=False,
        help="Slitless exposures (FITS with SCI/ERR/DQ, a celestial WCS, FILTER and INSTHASH; from slitcli simulate --field); "
        "or field directories (exposure_*.fits, catalog.fits, direct.fits if present), each cut into -o DIR/<field name>.fits.",
    ),
    catalog: Path = typer.Option(None, "--catalog", "-c", help="Source catalogue of the exposures: FITS table (HDU SOURCES) with SOURCE_ID, RA, DEC [deg]; its columns pass through. Not with field directories.", metavar="FILE", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Output sample file (FITS); with field directories, the directory of their sample files.", metavar="FILE|DIR", show_default=False),
    direct: Path = typer.Option(None, "--direct", help="Direct image with SEGMENTATION and PHOTFLAM: the DIRECT stamps (the template route needs them) and the <BAND>_CONTAM model of the neighbours' light. [default: none]", metavar="FILE", show_default=False),
    refine: bool = typer.Option(False, "--refine", help="With --direct: a second pass that fits the spectrum (a quadratic in wavelength) of every neighbour brighter than --refine-mag to the exposures, instead of the first pass's flat f_lambda."),
    refine_mag: float = typer.Option(22.0, "--refine-mag", help="AB magnitude in the direct image below which --refine refits a source's spectrum.", metavar="MAG"),
    instrument: Path = typer.Option(None, "--instrument", help="Instrument YAML file instead of the exposures' INSTFILE (its hash must equal their INSTHASH).", metavar="YAML", show_default=False),
    workers: int = typer.Option(None, "--workers", "-j", help="With field directories: cut them on a local Dask cluster of N processes. [default: here, one after another]", metavar="N", min=1, show_default=False),
    scheduler: str = typer.Option(None, "--scheduler", help="With field directories: cut them on this Dask scheduler (tcp://host:port). [default: $DASK_SCHEDULER_ADDRESS]", metavar="ADDRESS", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file (with field directories: redo every field)."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Cut every catalogue source's 2D spectra from full-frame exposures and combine them (docs/fields.md).

    Writes the sample-file layout that predict, train, calibrate and evaluate read, plus
    <BAND>_NEXP (exposures per pixel) and, with --direct, <BAND>_CONTAM (the other
    sources' light: flat-f_lambda first pass, --refine for a fitted second pass); the sources'
    sub-pixel offsets go to SOURCES.

    Examples:

      slitcli cutout field/exposure_*.fits --catalog field/catalog.fits --direct field/direct.fits -o sample.fits

      slitcli cutout fields/field_* --workers 2 -o samples/

    A field directory's sample file records TASKID (a digest of its inputs and options): a
    re-run skips the fields already cut.
    """
    if workers is not None and scheduler is not None:
        raise typer.BadParameter("give --workers (a local cluster) or --scheduler (an existing one), not both", param_hint="'--workers' / '--scheduler'")
    fields = [p for p in exposures if p.is_dir()]
    if fields and len(fields) < len(exposures):
        raise typer.BadParameter("give exposures (files) or field directories, not both", param_hint="'EXPOSURE... | FIELD_DIR...'")
    if fields and (catalog is not None or direct is not None):
        raise typer.BadParameter("a field directory holds its own catalog.fits and direct.fits", param_hint="'--catalog' / '--direct'")
    if not fields and catalog is None:
        raise typer.BadParameter("the exposures' source catalogue is needed (or give field directories)", param_hint="'--catalog'")
    if not fields and (workers is not None or scheduler is not None):
        raise typer.BadParameter("runs one field per task: give field directories", param_hint="'--workers' / '--scheduler'")
    if refine and direct is None and not fields:
        raise typer.BadParameter("the second pass refines the contamination model, which needs --direct", param_hint="--refine")
    with command(quiet, verbose):
        from slitcli.fields.cutout_file import write_cutouts, write_field_cutouts

        if fields:
            from slitcli.parallel import Executor, scheduler_address

            with progress_bar(quiet) as bar, Executor(workers, scheduler_address(scheduler)) as executor:
                task = bar.add_task("cutting fields", total=len(fields))
                paths = write_field_cutouts(fields, output, executor=executor, instrument_path=instrument, refine_mag=refine_mag if refine else None, overwrite=overwrite, progress=lambda d, k: bar.update(task, completed=d, total=k))
            log.info("wrote the cutouts of %d fields to %s", len(paths), output)
            return

        with progress_bar(quiet) as bar:
            task = bar.add_task("cutting", total=None)
            summary = write_cutouts(exposures, catalog, output, direct_path=direct, instrument_path=instrument, refine_mag=refine_mag if refine else None, overwrite=overwrite, progress=lambda done, total: bar.update(task, completed=done, total=total))
        if summary.n_skipped:
            log.info("%d catalogue sources lie on no exposure: left out", summary.n_skipped)
        for band, k in summary.partial.items():
            if k:
                log.info("%s: %d sources only partly covered (COVER_%s < 1; uncovered pixels DO_NOT_USE)", band, k, band)
        log.info("wrote %d sources to %s (bands %s)", summary.n, summary.path, ", ".join(summary.bands))
