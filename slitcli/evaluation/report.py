"""The evaluation report: one directory holding ``metrics.ecsv`` and four PNG plots.

The files are written into a hidden staging directory inside the output directory and
renamed into place only when all are complete, so a failure leaves no partial report
(and a directory this call created is removed again).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from slitcli.errors import OutputError, SlitcliError
from slitcli.evaluation import plots
from slitcli.evaluation.evaluate import predictive_dof
from slitcli.evaluation.metrics import pdf_pit
from slitcli.io.catalog import write_catalog
from slitcli.io.files import check_output_path, output_directory, output_error, publish

__all__ = ["REPORT_FILES", "check_report_dir", "plot_title", "write_report"]

#: Every file a report may hold (residual_vs_snr.png only when there is an SNR column).
REPORT_FILES = ("metrics.ecsv", "z_pred_vs_true.png", "calibration.png", "residual_vs_snr.png", "pit.png")


def check_report_dir(output_dir: str | Path, overwrite: bool, inputs=()) -> Path:
    """Refuse a path that is not a directory, a report file that is one of `inputs`, or one that exists unless `overwrite`."""
    return check_output_path(output_dir, overwrite, inputs, directory=True, files=REPORT_FILES)


def _text(value) -> str:
    return value.decode("ascii", "replace").strip() if isinstance(value, bytes) else str(value).strip()


def plot_title(meta) -> str:
    """The title of every plot: which model or method made the predictions, and which files were compared.

    Line 1 from the prediction catalogue's meta: ``CNN model <MODEL>`` (METHOD ``cnn``),
    ``template fit`` (METHOD ``template``), else the METHOD or ``unknown model``. Line 2
    from the metrics meta: ``predictions <PREDFILE> against truth <TRUTHFILE>``, and the
    sample files predicted on (INPUTS) when they are not the truth file. Parts missing
    from `meta` are left out.
    """
    get = {k: _text(v) for k, v in meta.items() if v is not None and _text(v)}.get
    method, model = get("METHOD", ""), get("MODEL")
    if model and method in ("", "cnn"):
        first = f"CNN model {model}"
    elif method == "template":
        first = "template fit"
    else:
        first = " ".join(p for p in (method, model) if p) or "unknown model"
    files = []
    if get("PREDFILE"):
        files.append(f"predictions {get('PREDFILE')}")
    if get("TRUTHFILE"):
        files.append(f"truth {get('TRUTHFILE')}")
    second = " against ".join(files)
    if get("INPUTS") and get("INPUTS") != get("TRUTHFILE"):
        second += f" (predicted from {get('INPUTS')})" if second else f"predicted from {get('INPUTS')}"
    return f"{first}\n{second}" if second else first


def _stage(stage: Path, joined: Table, metrics: Table, snr_cuts, snr_column: str, pdf_grid=None) -> list[Path]:
    z_pred, zerr, z_true = (np.asarray(joined[c], dtype=np.float64) for c in ("Z", "ZERR", "Z_TRUE"))
    snr = np.asarray(joined[snr_column], dtype=np.float64) if snr_column in joined.colnames else None
    title, dof = plot_title({**joined.meta, **metrics.meta}), predictive_dof(joined.meta)
    files = [
        write_catalog(metrics, stage / "metrics.ecsv"),
        plots.plot_z_pred_vs_true(z_pred, z_true, stage / "z_pred_vs_true.png", snr=snr, snr_cuts=snr_cuts, snr_label=snr_column, title=title),
        plots.plot_calibration(z_pred, zerr, z_true, stage / "calibration.png", dof=dof, snr=snr, snr_cuts=snr_cuts, snr_label=snr_column, title=title),
    ]
    if snr is not None:
        files.append(plots.plot_residual_vs_snr(z_pred, zerr, z_true, snr, stage / "residual_vs_snr.png", snr_label=snr_column, title=title))
    if pdf_grid is not None and "ZPDF" in joined.colnames:  # the catalogue's own PDFs, whatever their shape
        pit = pdf_pit(pdf_grid, np.asarray(joined["ZPDF"], np.float64), z_true)
        files.append(plots.plot_pit(z_pred, zerr, z_true, stage / "pit.png", pit_values=pit, shape="the catalogue's ZPDF", title=title))
    else:
        files.append(plots.plot_pit(z_pred, zerr, z_true, stage / "pit.png", dof=dof, title=title))
    return files


def write_report(output_dir: str | Path, joined: Table, metrics: Table, *, snr_cuts=(1, 3, 5, 10), snr_column: str = "SNR_GI", overwrite: bool = False, pdf_grid=None) -> list[Path]:
    """Write the metrics table and the plots of `joined` into `output_dir`.

    Parameters
    ----------
    output_dir : path
        Created (with its parents) if missing.
    joined : Table
        Predictions joined to the truth (`slitcli.evaluation.evaluate.join_truth`).
    metrics : Table
        Metrics per sample (`slitcli.evaluation.evaluate.metrics_table`), written as metrics.ecsv.
    snr_cuts, snr_column
        The SNR cuts of the predicted-vs-true panels and the SNR column; without that
        column there is one panel and no residual_vs_snr.png.
    pdf_grid : ndarray, optional
        The grid of a ``ZPDF`` column of `joined` (`slitcli.evaluation.evaluate.read_predictions`):
        pit.png then shows the PIT of those PDFs, not of the Gaussian (or t) of Z, ZERR.

    Returns
    -------
    list of Path
        The files written, in `REPORT_FILES` order.
    """
    output_dir = check_report_dir(output_dir, overwrite)
    # The directory (and parents) made only now, and removed again if this call made it and fails.
    with output_directory(output_dir):
        try:
            stage = Path(tempfile.mkdtemp(prefix=".slitcli-report-", dir=output_dir))
        except OSError as err:
            raise output_error(output_dir, err) from None
        written = []
        try:
            staged = _stage(stage, joined, metrics, snr_cuts, snr_column, pdf_grid)
            for path in staged:
                written.append(publish(path, output_dir / path.name, overwrite))
            # A file of an earlier report that this one does not have (residual_vs_snr.png
            # without an SNR column) would describe other predictions: it goes.
            for name in set(REPORT_FILES) - {p.name for p in staged}:
                (output_dir / name).unlink(missing_ok=True)
        except BaseException as err:
            # No half report: take back what this call published.
            for path in written:
                path.unlink(missing_ok=True)
            if isinstance(err, OutputError):  # named in the staging directory: name the report's file
                raise OutputError(output_dir / Path(err.path).name, err.reason) from None
            if isinstance(err, OSError) and not isinstance(err, SlitcliError):
                raise output_error(output_dir, err) from None
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return written
