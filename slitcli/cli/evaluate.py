"""`slitcli evaluate`: metrics and plots of predicted redshifts against the true ones."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from slitcli.cli._common import QUIET, VERBOSE, command, console, log

SNR_COLUMN = "SNR_GI"

# (metrics column, header, format) of the table printed on stderr.
# Two-line headers keep the table within 80 columns.
_SHOWN = (
    ("n", "\nn", "d"),
    ("sigma_nmad", "sigma\nNMAD", ".4f"),
    ("outlier_frac_002", "outlier\n>0.02", ".3f"),
    ("outlier_frac_015", "outlier\n>0.15", ".3f"),
    ("bias_median", "bias\nmedian", "+.4f"),
    ("mean_zerr", "ZERR\n/(1+z)", ".4f"),
    ("coverage_68", "cover\n68%", ".3f"),
    ("coverage_95", "cover\n95%", ".3f"),
    ("calibration_error", "calib\nerror", ".3f"),
)


def _parse_cuts(text: str) -> tuple[float, ...]:
    try:
        cuts = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        cuts = ()
    if not cuts or not all(math.isfinite(c) for c in cuts):
        raise typer.BadParameter(f"must be comma-separated numbers such as 1,3,5,10; got {text!r}", param_hint="'--snr-cuts'")
    return tuple(sorted(set(cuts)))


def _rich_table(metrics):
    from rich.table import Table as RichTable
    from rich.text import Text

    table = RichTable(box=None, pad_edge=False, header_style="bold")
    table.add_column("\nsample")
    for _, header, _ in _SHOWN:
        table.add_column(header, justify="right")
    for row in metrics:
        cells = ["-" if isinstance(row[k], float) and math.isnan(row[k]) else format(row[k], fmt) for k, _, fmt in _SHOWN]
        table.add_row(Text(str(row["sample"])), *cells)  # Text: a class name is not markup
    return table


def _print_summary(metrics, *, has_snr: bool, truth_name: str) -> None:
    console.print(_rich_table(metrics))
    n_pred, n_matched = metrics.meta["N_PRED"], metrics.meta["N_MATCHED"]
    log.info(f"matched {n_matched} of {n_pred} predictions to {metrics.meta['N_TRUTH']} true redshifts")
    if n_matched < n_pred:
        log.info(f"note: {n_pred - n_matched} predictions have no SOURCE_ID in {truth_name} and are left out")
    n_zwarn = int(metrics["n_zwarn"][0])  # row "all"
    if n_zwarn:
        log.info(f"note: {n_zwarn} sources have ZWARN != 0; kept in every sample (n_zwarn)")
    if not has_snr:
        log.info(f"note: no {SNR_COLUMN} column in either file: no SNR samples, no residual_vs_snr.png")


def evaluate(
    predictions: Path = typer.Argument(..., help="Prediction catalogue (ECSV or FITS) with SOURCE_ID, Z and ZERR; ZWARN and SNR_GI are used if present.", metavar="CATALOG", show_default=False),
    truth: Path = typer.Option(..., "--truth", help="True redshifts: a sample file from `slitcli simulate` (its SOURCES HDU), or any ECSV/FITS catalogue with SOURCE_ID and Z_TRUE (SNR_GI and CLASS optional).", metavar="FILE", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Report directory; created if missing.", metavar="DIR", show_default=False),
    snr_cuts: str = typer.Option("1,3,5,10", "--snr-cuts", help="Comma-separated SNR_GI thresholds: one sample (and one plot panel) per cut.", metavar="LIST"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace report files already in the directory."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
):
    """Compare predicted redshifts with the truth: a metrics table and four plots.

    Joins the predictions to the truth on SOURCE_ID and computes, for all sources, for
    each SNR_GI cut and for each CLASS: sigma_NMAD, outlier fractions |dz|/(1+z) > 0.02
    and > 0.15, bias, mean ZERR/(1+z), 68% and 95% coverage, the RMS calibration error
    and the PIT KS distance; for a FITS catalogue with ZPDF (predict --pdf), also the mean
    CRPS and the PIT KS distance of the PDFs. Sources with ZWARN != 0 are kept and counted (n_zwarn).

    Writes into the directory: metrics.ecsv, z_pred_vs_true.png, calibration.png,
    residual_vs_snr.png and pit.png; prints the table on stderr.

    Examples:

      slitcli evaluate z.ecsv --truth sample.fits -o report/

      slitcli evaluate z.fits --truth truth.ecsv -o rep/ --snr-cuts 2,5
    """
    cuts = _parse_cuts(snr_cuts)
    with command(quiet, verbose):
        from slitcli import __version__
        from slitcli.errors import InputError, SlitcliError
        from slitcli.evaluation.evaluate import join_truth, metrics_table, read_predictions, read_truth
        from slitcli.evaluation.report import check_report_dir, write_report

        check_report_dir(output, overwrite, inputs=(predictions, truth))
        pred, pdf_grid = read_predictions(predictions)
        true = read_truth(truth)
        try:
            joined = join_truth(pred, true, SNR_COLUMN)
            metrics = metrics_table(joined, cuts, SNR_COLUMN, pdf_grid)
        except SlitcliError:
            raise
        except ValueError as err:  # the library's report on the tables' contents
            msg = f"{predictions} against {truth}: {err}"
            raise InputError(msg) from None
        metrics.meta.update(PREDFILE=predictions.name, TRUTHFILE=truth.name, SWVERS=__version__)
        written = write_report(output, joined, metrics, snr_cuts=cuts, snr_column=SNR_COLUMN, overwrite=overwrite, pdf_grid=pdf_grid)
        if not quiet:
            _print_summary(metrics, has_snr=SNR_COLUMN in joined.colnames, truth_name=truth.name)
        log.info(f"wrote {', '.join(p.name for p in written)} to {output}")
